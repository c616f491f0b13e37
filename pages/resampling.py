"""Resampling: reconstructions from plain q draws beside reconstructions from SIR draws at K."""

from __future__ import annotations

import streamlit as st

import explorer
from iwae import figures

cat, state = explorer.page_frame()
data, views, widgets = explorer.data, explorer.views, explorer.widgets
_, labels = data.test_set()
k, seed, ref = state.k, state.seed, state.image_ref
title = widgets.image_title(ref, labels)


def new_draws() -> None:
    st.session_state["draw"] = st.session_state.get("draw", 0) + 1


st.title("Resampling")
st.markdown(
    f"{views.N_RESAMPLE} latent draws for {title}, each decoded to its Bernoulli means: on the "
    f"left of each model, plain draws from $q(z|x)$; on the right, SIR draws at **K = {k}** (each from its own "
    "K proposals). Where $q$ reaches regions the decoder turns into other digits, SIR weights them away."
)
with widgets.math_expander(state):
    st.markdown("Sampling-importance-resampling (Cremer et al. 2017, Algorithm 1), repeated independently per draw:")
    st.latex(r"z_1,\dots,z_K \sim q(z|x), \quad \tilde w_k = \frac{w(z_k)}{\sum_j w(z_j)}, \quad "
             r"j \sim \mathrm{Categorical}(\tilde w), \quad \text{return } z_j \sim q_{IW}(z|x)")
    st.markdown("Each picture is the decoder's mean image at one draw; the mean image averages the 16:")
    st.latex(r"\hat x(z) = \mathrm{sigmoid}(f(z)), \qquad \bar x = \frac{1}{16}\sum_{r=1}^{16} \hat x(z^{(r)})")

top = st.columns([1, 3])
widgets.show_image(top[0], figures.digit_image(data.image_x(ref), 5), f"input: {title}")
with top[1]:
    st.button("New draws", icon=":material/casino:", on_click=new_draws, key="new_draws",
              help="Fresh draws (a draw counter enters the seed); the sidebar seed makes them reproducible.")
    st.caption(f"Draw set {st.session_state.get('draw', 0)} with seed {seed}. The largest K takes longest: "
               f"{views.N_RESAMPLE} × K decoder passes per model (under a second at K = 5000 on two cores).")

columns = widgets.columns(cat, state)
with st.spinner(f"Drawing {views.N_RESAMPLE} × {k} proposals for each model…"):
    computed = explorer.parallel.per_model(cat, state, lambda ckpt: views.resample(
        ckpt.model, data.model_key(ckpt), ref, seed, k, st.session_state.get("draw", 0)))
for _side, col, name, _ckpt in columns:
    out = computed[name]
    with col:
        a, b = st.columns(2)
        widgets.show_image(a, figures.tile_images(out["q_images"], cols=4, scale=2),
                          f"{views.N_RESAMPLE} draws from q(z|x)")
        widgets.show_image(b, figures.tile_images(out["sir_images"], cols=4, scale=2),
                          f"{views.N_RESAMPLE} SIR draws at K = {k}")
        c, d = st.columns(2)
        widgets.show_image(c, figures.digit_image(figures.mean_image(out["q_images"]), 4), "mean image, q draws")
        widgets.show_image(d, figures.digit_image(figures.mean_image(out["sir_images"]), 4),
                          f"mean image, SIR at K = {k}")
        st.markdown(
            f"Effective sample size of the K weights: **{out['ess']:.1f}** of {k} (mean over the "
            f"{views.N_RESAMPLE} batches); distinct SIR draws: {out['distinct']} of {views.N_RESAMPLE}."
        )
        st.caption(widgets.protocol_line(1, f"{title}; seed {seed}, draw set "
                                           f"{st.session_state.get('draw', 0)}; K = {k}"))
