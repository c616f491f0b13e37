"""Toy targets: a Gaussian q fitted to a known 2-D density by the ELBO and by the IWAE bound, and the
implicit posterior q_IW of each (Cremer, Morris & Duvenaud 2017, Figure 1). No models needed."""

from __future__ import annotations

import streamlit as st

import explorer
from iwae import toy, toy_figures

cat, state = explorer.page_frame()
views, widgets = explorer.views, explorer.widgets
seed = state.seed


st.title("Toy targets")
st.markdown(
    "A known 2-D density stands in for the posterior, so everything is exact up to a grid. A Gaussian "
    "$q(z) = \\mathcal{N}(\\mu, \\operatorname{diag}\\sigma^2)$ (diagonal, like the encoder) is fitted to it "
    "twice: by the **ELBO** and by the **IWAE bound** $\\mathcal{L}_K$. The ELBO fit sits inside one part of the "
    "target; the IWAE fit is broader, and its sampling-importance-resampling posterior $q_{IW}$ covers the "
    "target (Cremer, Morris & Duvenaud 2017, Figure 1). The sidebar's seed applies here; its model, image "
    "and K do not."
)

st.session_state.setdefault("toy_target", views.DEFAULT_TOY_TARGET)
st.session_state.setdefault("toy_k", views.toy_k_for(state.k))
c1, c2 = st.columns([1, 2])
target = c1.selectbox("Target", list(toy.TARGETS), key="toy_target", format_func=lambda n: toy.TARGETS[n].label)
k = c2.select_slider("K (importance samples) for the IWAE fit and for q_IW", options=toy.K_CHOICES, key="toy_k",
                     help="The IWAE fit maximizes L_K at this K; both fits' q_IW are shown at this K.")
t = toy.TARGETS[target]
st.caption(f"{t.label}: {t.description}.")

with widgets.math_expander(state):
    st.markdown("With an unnormalized target $\\tilde p(z) = Z\\,p(z)$ and weights $w(z) = \\tilde p(z)/q(z)$:")
    st.latex(r"\mathrm{ELBO} = \mathbb{E}_{q}[\log w(z)] = \log Z - \mathrm{KL}(q\,\|\,p), \qquad "
             r"\mathcal{L}_K = \mathbb{E}_{z_1..z_K \sim q}\Big[\log \frac1K \sum_{k=1}^K w(z_k)\Big] \le \log Z")
    st.markdown(
        "The ELBO pays $\\mathbb{E}_q[\\log q/p]$: any mass $q$ puts where $p$ is small costs much, so the fit "
        "shrinks into one region of $p$ (one mode of the mixture, one arc of the ring, the bend of the banana). "
        "$\\mathcal{L}_K$ only needs **some** of the $K$ draws to land where $p$ is large: a draw that misses "
        "gets a small weight and costs little, while a $q$ too narrow to reach all of $p$ keeps the average "
        "weight, and so the bound, low. So the IWAE-fitted $q$ is **broader** and covers the target. "
        "Sampling-importance-resampling from it (draw $K$ from $q$, keep $z_j$ with probability "
        "$w_j/\\sum_k w_k$) has the density"
    )
    st.latex(r"q_{IW}(z) = q(z)\ \mathbb{E}_{z_2..z_K\sim q}\left[\frac{K\,w(z)}{w(z) + \sum_{j=2}^K w(z_j)}\right]"
             r"\ \xrightarrow[K\to\infty]{}\ p(z)")
    st.markdown(
        "wherever $q > 0$; with $K = 1$ it is $q$. $q_{IW}$ can only move mass that $q$ reaches: the ELBO fit's "
        "$q_{IW}$ stays near its one mode however large $K$ is, while the broad IWAE fit's $q_{IW}$ matches the "
        "target. Cremer et al. read $\\mathcal{L}_K$ as an ELBO of $q_{IW}$; maximizing it fits $q_{IW}$, "
        "not $q$, to $p$. Distances on the grid:"
    )
    st.latex(r"\mathrm{TV}(q, p) = \tfrac12 \int |q - p|\,dz, \qquad "
             r"\mathrm{KL}(p\,\|\,q) = \int p \log \tfrac{p}{q}\,dz")

fits = st.container()
with fits:
    elbo_fit = views.toy_fit(target, 1, seed)
    iwae_fit = views.toy_fit(target, k, seed)
    with st.spinner("q and q_IW on the grid…"):
        result = views.toy_result(target, k, seed, elbo_fit, iwae_fit)

explorer.chart.plotly_chart(toy_figures.toy_figure(result), key="toy_figure", config=widgets.PLOTLY_CONFIG)
st.caption(
    f"Colour: log density on one scale for all five panels, clipped to {toy_figures.DENSITY_SPAN:.0f} nats below "
    f"the highest maximum. White, edged in black: each q's 2-sd ellipse; dotted: the target's contour "
    f"{toy_figures.TARGET_CONTOUR_NATS:.0f} nats below its maximum."
)


def pair(a: float, b: float, fmt: str = "{:.3f}") -> str:
    return f"({fmt.format(a)}, {fmt.format(b)})"


def with_se(value: tuple[float, float]) -> str:
    return f"{value[0]:.3f} ± {value[1]:.3f}"


left, right = st.columns([3, 2], gap="medium")
e, i = result.elbo_fit, result.iwae_fit
rows = [
    ("maximized", "ELBO (= L₁)", f"L_K, K = {k}", "by Adam on reparameterized draws"),
    ("mean μ", pair(*e.fit.mu.tolist()), pair(*i.fit.mu.tolist()), ""),
    ("standard deviations σ", pair(*e.fit.sigma.tolist()), pair(*i.fit.sigma.tolist()), "diagonal covariance"),
    ("det Σ = (σ₁σ₂)²", f"{float(e.fit.sigma.prod()) ** 2:.4f}", f"{float(i.fit.sigma.prod()) ** 2:.4f}",
     "how spread q is"),
    ("ELBO of q", with_se(e.elbo), with_se(i.elbo), f"nats, ≤ log Z = {result.log_z_exact:.3f}"),
    (f"L_K of q, K = {k}", with_se(e.l_k), with_se(i.l_k), f"nats, ≤ log Z = {result.log_z_exact:.3f}"),
    ("TV(q, p)", f"{e.tv_q:.4f}", f"{i.tv_q:.4f}", "½∫|q − p| on the grid"),
    (f"TV(q_IW, p), K = {k}", f"{e.tv_qiw:.4f}", f"{i.tv_qiw:.4f}", "the same for q_IW"),
    ("KL(p ‖ q)", f"{e.kl_q:.4f}", f"{i.kl_q:.4f}", "nats, on the grid"),
    (f"KL(p ‖ q_IW), K = {k}", f"{e.kl_qiw:.4f}", f"{i.kl_qiw:.4f}", "nats, on the grid"),
    ("∫ q dz over the window", f"{e.mass_q:.4f}", f"{i.mass_q:.4f}", "a broad q reaches past the window"),
    ("∫ q_IW dz over the window", f"{e.mass_qiw:.4f}", f"{i.mass_qiw:.4f}",
     "self-check, not renormalized: ≈ 1 up to Monte Carlo error (= ∫ q at K = 1)"),
]
left.markdown(widgets.numbers_markdown(rows, header=("quantity", "ELBO fit", "IWAE fit", "note")))
with right:
    explorer.chart.plotly_chart(toy_figures.fit_trace_figure(result), key="toy_trace",
                                config=widgets.PLOTLY_CONFIG)
    st.caption("The minibatch bound at every step of both fits; dashed: the exact log Z.")
if max(abs(e.mass_qiw - 1), abs(i.mass_qiw - 1)) > 0.1:
    st.warning("An integral of q_IW is more than 10% from 1: its Monte Carlo estimate (the other K − 1 weights "
               "from one pool of draws from q) is off for this target and K. TV and KL renormalize on the grid.",
               icon=":material/warning:")

(x0, x1), (y0, y1) = t.window()
h = t.side / result.resolution
estimator = "DReG" if i.fit.estimator == "dreg" else "standard"
st.caption(
    f"Protocol: grid {result.resolution} × {result.resolution} over [{x0:g}, {x1:g}] × [{y0:g}, {y1:g}] (spacing "
    f"{h:.3f}); the target normalized by quadrature on it (log Z = {result.log_z:.4f}, exact "
    f"{result.log_z_exact:.4f}). q_IW at K = {k}: a pool of {result.pool_size:,} draws from each q, "
    f"M = {result.n_s_draws} draws of the K − 1 other weights shared by all grid points. Fits: Adam (lr "
    f"{toy.LEARNING_RATE:g} decayed to {toy.LEARNING_RATE * toy.FINAL_LR_FACTOR:g}), {e.fit.steps:,} steps of "
    f"{e.fit.sets} × 1 (ELBO) and {i.fit.sets} × {k} (IWAE) draws, {estimator} gradients; seed {seed}. Bounds: "
    f"mean ± standard error over {toy.EVAL_DRAWS:,} draws in disjoint K-sets. TV and KL renormalize q and q_IW "
    "on the grid."
)
