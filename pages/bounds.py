"""Bounds and comparison: L_K against K, results table, training curves, latent separation of digits, and the
signal-to-noise ratio of the gradient estimators against K."""

from __future__ import annotations

import streamlit as st

import explorer
from iwae import figures, latent, snr, snr_figures

cat, state = explorer.page_frame()
data, views, widgets = explorer.data, explorer.views, explorer.widgets
_, labels = data.test_set()
k, seed, ref = state.k, state.seed, state.image_ref
title = widgets.image_title(ref, labels)

st.title("Bounds and comparison")
st.markdown(
    "How tight $\\mathcal{L}_K$ is as $K$ grows, for the chosen image and on average over a test subset, against "
    "the exact $\\log p(x)$ from quadrature; then the evaluation results, the training curves, and how well each "
    "2-D latent space separates the digits."
)
with widgets.math_expander(state):
    st.markdown("Burda et al. (2016), Theorem 1: the bounds increase with K towards the log likelihood,")
    st.latex(r"\mathrm{ELBO} = \mathcal{L}_1 \le \mathcal{L}_K \le \mathcal{L}_{K+1} \le \log p(x), \qquad "
             r"\mathcal{L}_K \to \log p(x)\ (K\to\infty)")
    st.latex(r"\mathcal{L}_K = \mathbb{E}\Big[\operatorname{logsumexp}_k \log w_k - \log K\Big]")
    st.markdown("Each point averages $\\mathcal{L}_K$ over disjoint blocks of K draws out of one set of draws "
                "per image; the band is ± one standard deviation of a block's value (a repeat's spread).")

# --- L_K against K -----------------------------------------------------------------------------
st.header("L_K against K")
st.session_state.setdefault("bounds_subset", views.DEFAULT_SUBSET)
subset = st.selectbox("Test images in the average (the first n of the test set)", views.SUBSET_CHOICES,
                      key="bounds_subset")


def compute(ckpt) -> tuple:
    model, key = ckpt.model, data.model_key(ckpt)
    return views.image_curve(model, key, ref, seed), views.image_log_px(model, key, ref)


columns = widgets.columns(cat, state)
with st.spinner(f"L_K for {title} and quadrature log p(x), both models…"):
    computed = explorer.parallel.per_model(cat, state, compute)
for side, col, name, ckpt in columns:
    key = data.model_key(ckpt)
    model = ckpt.model
    curve, (log_px, log_px_error) = computed[name]
    with col:
        explorer.chart.plotly_chart(
            figures.bound_curve_figure(curve.ks, curve.mean, curve.spread, log_px,
                                       title=title[0].upper() + title[1:]),
            key=f"curve_image_{side}", config=widgets.PLOTLY_CONFIG,
        )
        st.caption(widgets.protocol_line(
            1, f"{title}; {curve.n_samples:,} draws from q (seed {seed}) split into disjoint blocks of K; "
            f"dashed: quadrature log p(x) = {log_px:.2f} (error {log_px_error:.1e})"))
        with st.spinner(f"L_K and quadrature for the first {subset} test images ({name}); computed once…"):
            sub = views.subset_curve(model, key, subset)
        c = sub["curve"]
        explorer.chart.plotly_chart(
            figures.bound_curve_figure(c.ks, c.mean, c.spread, sub["log_px"], "mean log p(x), quadrature",
                                       title=f"Average over the first {subset} test images"),
            key=f"curve_subset_{side}", config=widgets.PLOTLY_CONFIG,
        )
        st.caption(widgets.protocol_line(
            subset, f"the first {subset}; {c.n_samples:,} draws from q per image (seed {sub['seed']}, fixed: "
            f"{'shipped with the model' if sub['shipped'] else 'computed here'}); dashed: mean quadrature "
            f"log p(x) = {sub['log_px']:.2f} (largest per-image error {sub['max_error']:.1e})"))

# --- results --------------------------------------------------------------------------------------
st.header("Results")
widgets.results_table(cat)
chosen = [cat.checkpoints[n] for n in dict.fromkeys((state.model_a, state.model_b))]
if explorer.downloads.available(chosen):
    st.download_button("Per-image numbers of the two models (CSV)", key="per_image_csv", on_click="ignore",
                       data=explorer.downloads.csv_maker(chosen, labels, widgets.TEST_BINARIZATION_SEED),
                       file_name=f"per-image-{'-'.join(c.name for c in chosen)}.csv", mime="text/csv",
                       icon=":material/download:", help="Exact log p(x), IS estimate, ELBO, L_5, L_50 per test image; "
                                                        "the protocol in the file's # header lines.")

# --- training curves and latent separation --------------------------------------------------------
st.header("Training curves and latent separation")
for side, col, name, ckpt in widgets.columns(cat, state):
    key = data.model_key(ckpt)
    history = explorer.results.history_rows(ckpt.metadata)
    with col:
        explorer.chart.plotly_chart(figures.training_figure(history, title=f"{name}: bound per epoch"),
                                    key=f"training_{side}", config=widgets.PLOTLY_CONFIG)
        last = history[-1] if history else {}
        st.caption(
            f"{len(history)} epochs recorded. Training bound: mean over the epoch's minibatches (dynamic "
            f"binarization); test bound on {last.get('test_images', '?')} test images, objective "
            f"{ckpt.metadata.get('objective', '?')} with k = {ckpt.metadata.get('k', '?')}."
        )
        accuracy = views.knn_accuracy(ckpt.model, key)
        st.metric("5-nearest-neighbour accuracy of the latent means", f"{accuracy:.1%}")
        st.caption(
            f"scikit-learn KNeighborsClassifier({latent.KNN_NEIGHBOURS}) fitted on the encoder means μ(x) of test "
            f"images 0-{latent.KNN_TRAIN - 1}, scored on images {latent.KNN_TRAIN}-{len(labels) - 1} "
            "(binarized test set, fixed seed)."
        )

# --- gradient signal-to-noise ---------------------------------------------------------------------
st.header("Gradient signal-to-noise")
st.markdown(
    "A tighter bound is not a better training signal for the encoder (Rainforth et al. 2018): with the standard "
    "IWAE gradient the encoder's signal-to-noise ratio falls as K grows while the decoder's rises. The DReG "
    "estimator (Tucker et al. 2019) changes only the encoder's gradient. Measured once, offline, on a shipped model."
)
with widgets.math_expander(state):
    st.markdown("For each parameter element, over M gradient draws with fresh $z$ and the same images $x$:")
    st.latex(r"\mathrm{SNR} = \frac{\big|\,\mathbb{E}[\hat g]\,\big|}{\sqrt{\operatorname{Var}[\hat g]}}"
             r"\quad\text{(mean and std over the M draws)}")
    st.markdown("The standard IWAE gradient of $\\mathcal{L}_K$ weights each sample's gradient by its "
                "self-normalized weight:")
    st.latex(r"\nabla \mathcal{L}_K = \sum_{k=1}^K \tilde w_k\, \nabla \log w_k, \qquad "
             r"\tilde w_k = \frac{w_k}{\sum_j w_j}")
    st.markdown("For the decoder this is a weighted average over more samples as K grows: its SNR rises like "
                "$\\sqrt{K}$. For the encoder the self-normalization works against the signal: the weights sum to "
                "one, so as $K\\to\\infty$ the estimate tends to $\\nabla_\\phi \\log p(x) = 0$ ($\\log p(x)$ does "
                "not depend on $\\phi$). The expected encoder gradient shrinks like $1/K$ while its standard "
                "deviation shrinks only like $1/\\sqrt{K}$, so the encoder's SNR falls like $1/\\sqrt{K}$. Much of "
                "that noise is the score-function term $\\partial \\log q_\\phi(z_k|x)/\\partial\\phi$ inside each "
                "$\\nabla_\\phi \\log w_k$, whose expectation is zero. DReG removes it: the encoder's gradient goes "
                "only through the reparameterization $z_k = \\mu_\\phi(x) + \\sigma_\\phi(x)\\,\\epsilon_k$, with "
                "$q$'s parameters stopped inside $\\log q$, and a second reparameterization gives squared weights:")
    st.latex(r"\nabla_\phi^{\mathrm{DReG}} = \sum_{k=1}^K \tilde w_k^{\,2}\, "
             r"\frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi}")
    st.markdown("It has the same expectation as the standard estimator but no score-function term. At $K = 1$ "
                "($\\tilde w_1 = 1$) it is the \"sticking the landing\" gradient of Roeder et al. (2017). Its "
                "decoder gradient is the standard one.")
snr_path = cat.directory / snr.DEFAULT_FILE
if not snr_path.is_file():
    st.info(f"No gradient-SNR measurement in `{cat.directory}` yet. Produce it (about 10 minutes on one core) with:",
            icon=":material/hourglass_top:")
    st.code(snr.SCRIPT_COMMAND, language="bash")
else:
    try:
        snr_data = snr.load_snr(snr_path)
    except snr.SNRFileError as exc:
        st.warning(f"The gradient-SNR file cannot be used: {exc}. Regenerate it with:", icon=":material/warning:")
        st.code(snr.SCRIPT_COMMAND, language="bash")
    else:
        explorer.chart.plotly_chart(snr_figures.snr_figure(snr_data), key="gradient_snr",
                                    config=widgets.PLOTLY_CONFIG)
        st.caption(snr_figures.protocol_caption(snr_data) + " Both estimators use the same draws for each K, so "
                   "their decoder lines coincide (DReG changes only the encoder's gradient). Below the grey line "
                   "an estimate is not resolved from an SNR of 0 by M draws. Computed by "
                   f"`{snr_data['protocol'].get('command') or 'scripts/gradient_snr.py'}`.")
