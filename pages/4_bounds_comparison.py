"""Bounds and comparison: L_K against K, results table, training curves, latent separation of digits."""

from __future__ import annotations

import streamlit as st

from iwae import catalog, figures, latent
from pages import common

cat, state = common.page_frame()
images, labels = common.test_set()
k, seed, index = state.k, state.seed, state.image

st.title("Bounds and comparison")
st.markdown(
    "How tight $\\mathcal{L}_K$ is as $K$ grows, for the chosen image and on average over a test subset, against "
    "the exact $\\log p(x)$ from quadrature; then the evaluation results, the training curves, and how well each "
    "2-D latent space separates the digits."
)
with common.math_expander(state):
    st.markdown("Burda et al. (2016), Theorem 1: the bounds increase with K towards the log likelihood,")
    st.latex(r"\mathrm{ELBO} = \mathcal{L}_1 \le \mathcal{L}_K \le \mathcal{L}_{K+1} \le \log p(x), \qquad "
             r"\mathcal{L}_K \to \log p(x)\ (K\to\infty)")
    st.latex(r"\mathcal{L}_K = \mathbb{E}\Big[\operatorname{logsumexp}_k \log w_k - \log K\Big]")
    st.markdown("Each point averages $\\mathcal{L}_K$ over disjoint blocks of K draws out of one set of draws "
                "per image; the band is ± one standard deviation of a block's value (a repeat's spread).")

# --- L_K against K -----------------------------------------------------------------------------
st.header("L_K against K")
st.session_state.setdefault("bounds_subset", common.DEFAULT_SUBSET)
subset = st.selectbox("Test images in the average (the first n of the test set)", common.SUBSET_CHOICES,
                      key="bounds_subset")
for side, col, name, ckpt in common.columns(cat, state):
    key = common.model_key(ckpt)
    model = ckpt.model
    with col:
        with st.spinner(f"L_K for image #{index} and quadrature log p(x) ({name})…"):
            curve = common.image_curve(model, key, index, seed)
            view = common.posterior_view(model, key, index)
        st.plotly_chart(
            figures.bound_curve_figure(curve.ks, curve.mean, curve.spread, view["log_px"],
                                       title=f"Test image #{index} (digit {labels[index]})"),
            key=f"curve_image_{side}", config=common.PLOTLY_CONFIG,
        )
        st.caption(common.protocol_line(
            1, f"image #{index}; {curve.n_samples:,} draws from q (seed {seed}) split into disjoint blocks of K; "
            f"dashed: quadrature log p(x) = {view['log_px']:.2f} (error {view['log_px_error']:.1e})"))
        with st.spinner(f"L_K and quadrature for the first {subset} test images ({name}); computed once…"):
            sub = common.subset_curve(model, key, subset, seed)
        c = sub["curve"]
        st.plotly_chart(
            figures.bound_curve_figure(c.ks, c.mean, c.spread, sub["log_px"], "mean log p(x), quadrature",
                                       title=f"Average over the first {subset} test images"),
            key=f"curve_subset_{side}", config=common.PLOTLY_CONFIG,
        )
        st.caption(common.protocol_line(
            subset, f"the first {subset}; {c.n_samples:,} draws from q per image (seed {seed}); dashed: mean "
            f"quadrature log p(x) = {sub['log_px']:.2f} (largest per-image error {sub['max_error']:.1e})"))

# --- results --------------------------------------------------------------------------------------
st.header("Results")
common.results_table(cat)

# --- training curves and latent separation --------------------------------------------------------
st.header("Training curves and latent separation")
for side, col, name, ckpt in common.columns(cat, state):
    key = common.model_key(ckpt)
    history = catalog.history_rows(ckpt.metadata)
    with col:
        st.plotly_chart(figures.training_figure(history, title=f"{name}: bound per epoch"),
                        key=f"training_{side}", config=common.PLOTLY_CONFIG)
        last = history[-1] if history else {}
        st.caption(
            f"{len(history)} epochs recorded. Training bound: mean over the epoch's minibatches (dynamic "
            f"binarization); test bound on {last.get('test_images', '?')} test images, objective "
            f"{ckpt.metadata.get('objective', '?')} with k = {ckpt.metadata.get('k', '?')}."
        )
        accuracy = common.knn_accuracy(ckpt.model, key)
        st.metric("5-nearest-neighbour accuracy of the latent means", f"{accuracy:.1%}")
        st.caption(
            f"scikit-learn KNeighborsClassifier({latent.KNN_NEIGHBOURS}) fitted on the encoder means μ(x) of test "
            f"images 0-{latent.KNN_TRAIN - 1}, scored on images {latent.KNN_TRAIN}-{len(labels) - 1} "
            "(binarized test set, fixed seed)."
        )
