"""Posteriors: q(z|x), q_IW(z|x) at K and the true p(z|x) for the chosen image, with SIR draws."""

from __future__ import annotations

import streamlit as st

import explorer
from iwae import figures

cat, state = explorer.page_frame()
data, views, widgets = explorer.data, explorer.views, explorer.widgets
_, labels = data.test_set()
k, seed, ref = state.k, state.seed, state.image_ref
title = widgets.image_title(ref, labels)

st.title("Posteriors")
st.markdown(
    f"For {title}: the encoder's $q(z|x)$, the implicit posterior "
    f"$q_{{IW}}(z|x)$ of sampling-importance-resampling with **K = {k}**, and the true posterior $p(z|x)$, on "
    "one window per model. **Move K in the sidebar**: at K = 1, $q_{IW} = q$; as K grows it moves towards "
    "$p(z|x)$ and the distances below fall."
)
with widgets.math_expander(state):
    st.markdown("Importance weights and the bound:")
    st.latex(r"w(z) = \frac{p(x|z)\,p(z)}{q(z|x)}, \qquad "
             r"\mathcal{L}_K = \mathbb{E}_{z_{1..K}\sim q}\Big[\log \frac1K \sum_{k=1}^K w(z_k)\Big] \le \log p(x)")
    st.markdown("SIR draws $z_1..z_K \\sim q$ and returns $z_j$ with probability $w_j / \\sum_k w_k$; the density "
                "of what it returns (Cremer et al. 2017) is")
    st.latex(r"q_{IW}(z|x) = q(z|x)\ \mathbb{E}_{z_2..z_K\sim q}"
             r"\left[\frac{K\,w(z)}{w(z) + \sum_{j=2}^K w(z_j)}\right]")
    st.markdown("It equals $q$ at $K = 1$, integrates to 1 for every $K$ (the self-check below), and tends to the "
                "true posterior, computed here by quadrature because $z$ is two-dimensional:")
    st.latex(r"p(z|x) = \frac{p(x|z)\,p(z)}{p(x)}, \qquad "
             r"\log p(x) \approx \operatorname{logsumexp}_g\big[\log p(x|z_g) + \log p(z_g)\big] + \log \Delta_g")
    st.latex(r"\mathrm{TV}(q, p) = \tfrac12 \int |q - p|\,dz, \qquad "
             r"\mathrm{KL}(p\,\|\,q) = \int p \log \tfrac{p}{q}\,dz \quad\text{(on the window's grid)}")


def compute(ckpt) -> tuple:
    model, key = ckpt.model, data.model_key(ckpt)
    return (views.posterior_view(model, key, ref), views.qiw_view(model, key, ref, seed, k),
            views.sir_overlay(model, key, ref, seed, k), views.image_curve(model, key, ref, seed),
            views.posterior_fixed_figure(model, key, ref, seed))


columns = widgets.columns(cat, state)
with st.spinner("Quadrature for both models (first time for this image: about a second)…"):
    computed = explorer.parallel.per_model(cat, state, compute)
for side, col, name, _ckpt in columns:
    view, qiw, sir_draws, curve, fixed = computed[name]
    with col:
        moving = figures.posterior_k_figure(view["x_axis"], view["y_axis"], view["log_q"], qiw["log_qiw"],
                                            view["log_p"], k, sir_draws=sir_draws["z"], mu=view["mu"],
                                            sigma=view["sigma"], q_resolved=view["q_resolved"])
        explorer.chart.plotly_chart(fixed, key=f"posterior_{side}", config=widgets.PLOTLY_CONFIG)
        explorer.chart.plotly_chart(moving, key=f"posterior_k_{side}", config=widgets.PLOTLY_CONFIG)
        if not view["q_resolved"]:
            st.info(f"q(z|x) is narrower (σ = {view['sigma'].min():.3f}) than the display grid resolves "
                    f"(spacing {view['x_axis'][1] - view['x_axis'][0]:.3f}): its exact 2-sd ellipse is drawn.",
                    icon=":material/info:")
        st.caption(
            f"Colour: log density, one scale per model for the three heatmaps, from the highest value of q and p down "
            f"{figures.DENSITY_SPAN:.0f} nats (fixed across K). White dots: {views.N_Q_OVERLAY} draws from q; "
            f"red dots: {views.N_SIR_OVERLAY} SIR draws at K = {k} ("
            + ("K-sets taken as random windows of one pool of q draws: each draw is exactly q_IW, the draws are "
               "dependent" if sir_draws["shared"] else "disjoint K-sets from one pool of q draws: independent draws")
            + ")."
        )
        ki = curve.ks.index(k)
        rows = [
            ("log p(x)", f"{view['log_px']:.3f} ± {view['log_px_error']:.1e}",
             "adaptive quadrature over the latent plane (error estimate)"),
            ("ELBO = L₁", f"{curve.mean[0]:.3f}", f"mean of {curve.n_samples:,} log weights"),
            (f"L_K, K = {k}", f"{curve.mean[ki]:.3f}" + (f" ± {curve.spread[ki]:.3f}" if curve.blocks[ki] > 1 else ""),
             f"mean over {curve.blocks[ki]:,} disjoint block{'s' if curve.blocks[ki] > 1 else ''} of K draws"
             + (" (± sd of one block: a single estimate's spread)" if curve.blocks[ki] > 1 else "")),
            ("log p(x) − L_K", f"{view['log_px'] - curve.mean[ki]:.3f}", "the gap the bound leaves"),
            ("ESS of K weights", f"{sir_draws['ess']:.1f} of {k}",
             "1 / Σ w̃², mean over the SIR draws' K-sets"),
            ("TV(q_IW, p)", f"{qiw['tv']:.4f}", "½∫|q_IW − p| on the window grid"),
            ("TV(q, p)", f"{view['tv_q']:.4f}", "the same for the encoder alone"),
            ("KL(p ‖ q_IW)", f"{qiw['kl']:.4f}", "nats, on the window grid"),
            ("KL(p ‖ q)", f"{view['kl_q']:.4f}", "nats, for comparison"),
            ("∫ q_IW dz", f"{qiw['mass']:.4f}",
             f"self-check, not renormalized: ≈ 1 up to Monte Carlo error ({widgets.others_drawn_text(qiw['others'])})"),
            ("∫ p(z|x) dz", f"{view['mass_p']:.4f}", "share of the true posterior inside the window"),
        ]
        st.markdown(widgets.numbers_markdown(rows))
        if abs(qiw["mass"] - 1) > 0.05:
            st.warning(
                f"The integral of q_IW is {qiw['mass']:.3f}, not ≈ 1: its Monte Carlo estimate "
                f"({widgets.others_drawn_text(qiw['others'])}) is "
                "off for this image and K. TV and KL renormalize on the grid.", icon=":material/warning:")
        st.caption(widgets.protocol_line(
            1, f"{title}; sampling seed {seed}; {explorer.state.N_TEST_IMAGES:,}-image test set; "
            f"window grid {len(view['x_axis'])} × {len(view['y_axis'])}"))


explorer.estimator.section(cat, state, title)
