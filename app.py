"""IWAE visual explorer: ``python -m streamlit run app.py``.

The entrypoint: page config, the shared sidebar (models, test image, K, seed, mathematics toggle; also
kept in the URL), navigation over the pages in pages/, and the home page.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="IWAE visual explorer", page_icon=":material/search:", layout="wide")

# A session's first run: send an empty, 10-pixel (plotly's least) WebGL chart before importing torch (~1.4 s), so
# that the browser fetches and compiles plotly.js and sets up WebGL while the server imports, instead of after the
# first real chart arrives (the first chart of a cold start then appears ~1.7 s sooner: bench/app_latency.py).
# Removed once the imports are done.
_warm_up = st.empty() if "_browser_warmed" not in st.session_state else None
if _warm_up is not None:
    st.session_state["_browser_warmed"] = True
    _warm_up.plotly_chart({"data": [{"type": "scattergl", "x": [], "y": []}],
                           "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
                                      "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                                      "xaxis": {"visible": False}, "yaxis": {"visible": False}}},
                          config={"staticPlot": True, "displayModeBar": False}, key="_browser_warm_up")

from iwae import catalog, testset  # noqa: E402
from pages import common  # noqa: E402

if _warm_up is not None:
    _warm_up.empty()

# url_path differs from the name Streamlit's legacy pages/ handling derives from each file name (see
# common.page_frame): a deep link then always runs through this entrypoint, sidebar included.
PAGES = {
    key: st.Page(path, title=title, icon=icon, url_path=key)
    for key, path, title, icon in (
        ("latent", "pages/1_latent_space.py", "Latent space", ":material/scatter_plot:"),
        ("posteriors", "pages/2_posterior_densities.py", "Posteriors", ":material/blur_on:"),
        ("resampling", "pages/3_sir_resampling.py", "Resampling", ":material/casino:"),
        ("bounds", "pages/4_bounds_comparison.py", "Bounds and comparison", ":material/show_chart:"),
        ("toy", "pages/5_toy_targets.py", "Toy targets", ":material/blur_circular:"),
        ("digit", "pages/6_your_digit.py", "Your own digit", ":material/draw:"),
    )
}


def home() -> None:
    cat = common.load_catalog()
    st.title("IWAE visual explorer")
    st.markdown(
        "Importance weighted autoencoders (Burda et al. 2016) train on the bound "
        "$\\mathcal{L}_K = \\mathbb{E}\\big[\\log \\tfrac1K \\sum_k w_k\\big]$, which tightens towards "
        "$\\log p(x)$ as $K$ grows. Sampling-importance-resampling from the encoder $q(z|x)$ defines an "
        "implicit posterior $q_{IW}(z|x)$ (Cremer et al. 2017) that moves from $q$ towards the true "
        "posterior $p(z|x)$. With a **2-D latent** both the true posterior and the exact $\\log p(x)$ can be "
        "computed by quadrature, so this explorer shows all three, side by side for two trained models "
        "(pick them, the test image and $K$ in the sidebar)."
    )
    st.subheader("Pages")
    c1, c2 = st.columns(2)
    c1.page_link(PAGES["latent"], label="Latent space: the test set's encodings, the decoded manifold")
    c1.page_link(PAGES["posteriors"], label="Posteriors: q(z|x), q_IW(z|x) at K and p(z|x) for one image")
    c2.page_link(PAGES["resampling"], label="Resampling: reconstructions from q draws beside SIR draws")
    c2.page_link(PAGES["bounds"], label="Bounds and comparison: L_K against K, results, training curves")
    c1.page_link(PAGES["toy"], label="Toy targets: fit q by the ELBO and by IWAE to 2-D densities, live")
    c2.page_link(PAGES["digit"], label="Your own digit: draw or upload one and explore it on every page")
    st.subheader("Results")
    common.results_table(cat)
    st.subheader("Checkpoints")
    st.dataframe(
        [
            {
                "model": name,
                "trained as": catalog.describe(ck.metadata),
                "epochs so far": len(catalog.history_rows(ck.metadata)),
                "last test bound": (catalog.history_rows(ck.metadata) or [{}])[-1].get("test_bound"),
                "file": str(ck.path),
            }
            for name, ck in cat.checkpoints.items()
        ],
        hide_index=True, width="stretch",
        column_config={"last test bound": st.column_config.NumberColumn(format="%.2f")},
    )
    missing = [n for n in catalog.EXPECTED_CHECKPOINTS if n not in cat.checkpoints and n not in cat.errors]
    if missing:
        st.caption(f"Not present yet: {', '.join(missing)}. Train with:")
        st.code("\n".join(catalog.train_command(n) for n in missing), language="bash")
    st.caption(
        "Every number is labelled with its protocol: the MNIST test set binarized once with a fixed seed "
        f"({testset.data.TEST_BINARIZATION_SEED}); the estimator (quadrature, importance sampling with k draws); "
        "K; the number of test images."
    )


def main() -> None:
    nav = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True), *PAGES.values()])
    if common.frame() is None:
        return
    st.session_state[common.FRAME_FLAG] = True
    st.session_state[common.ENTRYPOINT_PAGE] = nav.title  # which page this entrypoint run framed (tests read it)
    try:
        nav.run()
    finally:
        st.session_state[common.FRAME_FLAG] = False


main()
