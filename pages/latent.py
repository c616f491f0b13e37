"""Latent space: the test set's encoder means, the chosen image, the decoded manifold, decode any z."""

from __future__ import annotations

import streamlit as st

import explorer
from iwae import figures

cat, state = explorer.page_frame()
data, views, widgets = explorer.data, explorer.views, explorer.widgets
_, labels = data.test_set()
ref = state.image_ref
own = state.own is not None
chosen = None if own else state.image

st.title("Latent space")
st.markdown(
    "Each dot is the mean of $q(z|x)$ for one of the 10,000 binarized test images, coloured by its digit. "
    "**Click a dot** (or box-select with the selection tool) to choose that image for every page. "
    f"Shown now: **{widgets.image_title(ref, labels)}**" + (" (the gold star)." if own else " (the black ring).")
)
with widgets.math_expander(state):
    st.markdown("The encoder maps an image to a Gaussian over the 2-D latent; the dots are its means:")
    st.latex(r"q(z|x) = \mathcal{N}\big(z;\ \mu(x),\ \mathrm{diag}\,\sigma(x)^2\big), \qquad z \in \mathbb{R}^2")
    st.markdown("The decoder maps any $z$ to 784 Bernoulli means; the manifold tiles them over a grid of $z$:")
    st.latex(r"p(x|z) = \prod_{d=1}^{784} \mathrm{Bern}\big(x_d;\ \mathrm{sigmoid}(f_d(z))\big), "
             r"\qquad p(z) = \mathcal{N}(0, I)")

top = st.columns([1, 4])
with top[0]:
    widgets.show_image(st, figures.digit_image(data.image_x(ref), 5), widgets.image_title(ref, labels))
with top[1]:
    st.caption("Decode any latent point z (shown as × on both scatters):")
    z_cols = st.columns(2)
    for widget_key, default in (("z1", 0.0), ("z2", 0.0), ("manifold_overlay", False), ("manifold_n", 15)):
        st.session_state.setdefault(widget_key, default)
    z1 = z_cols[0].number_input("z₁", min_value=-10.0, max_value=10.0, step=0.1, key="z1", format="%.2f")
    z2 = z_cols[1].number_input("z₂", min_value=-10.0, max_value=10.0, step=0.1, key="z2", format="%.2f")
    opts = st.columns(2)
    overlay = opts[0].toggle("Overlay the test means on the decoded manifold", key="manifold_overlay")
    n_tiles = opts[1].slider("Manifold tiles per side", 5, 30, key="manifold_n")

for side, col, _name, ckpt in widgets.columns(cat, state):
    key = data.model_key(ckpt)
    mu, _ = views.latent_means(ckpt.model, key)
    window = figures.latent_window(mu)
    mu_x = views.image_mean(ckpt.model, key, ref)
    fig = figures.latent_scatter(mu, labels, chosen=chosen, z_point=(z1, z2), window=window,
                                 own_point=mu_x if own else None)
    chart_key = f"scatter_{side}"

    def on_select(fig=fig, chart_key=chart_key) -> None:
        index = figures.selection_to_index(fig, explorer.chart.selection(chart_key))
        if index is not None:
            explorer.sidebar.set_image(index, labels)

    with col:
        explorer.chart.plotly_chart(fig, key=chart_key, on_select=on_select, config=widgets.PLOTLY_CONFIG)
        a, b = st.columns(2)
        m1, m2 = float(mu_x[0]), float(mu_x[1])
        widgets.show_image(a, figures.digit_image(views.decode(ckpt.model, key, m1, m2), 4),
                          f"decoder mean at μ(x) = ({m1:.2f}, {m2:.2f})")
        widgets.show_image(b, figures.digit_image(views.decode(ckpt.model, key, float(z1), float(z2)), 4),
                          f"decoder mean at z = ({z1:.2f}, {z2:.2f})")
        picture = views.manifold(ckpt.model, key, n_tiles, window[0], window[1])
        explorer.chart.plotly_chart(
            figures.manifold_figure(picture, n_tiles, window[0], window[1], mu=mu if overlay else None,
                                    labels=labels if overlay else None,
                                    title=f"Decoded manifold, {n_tiles} × {n_tiles} tiles"),
            key=f"manifold_{side}", config=widgets.PLOTLY_CONFIG,
        )
        st.caption(widgets.protocol_line(len(labels), "dots: encoder means μ(x); tiles: decoder means sigmoid(f(z))"))
