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

from pages import boot  # noqa: E402  (imports no torch)

_warm_up = boot.warm_up_browser()  # before the torch import below

from iwae import catalog, testset  # noqa: E402
from pages import common  # noqa: E402

if _warm_up is not None:
    _warm_up.empty()

# url_path equals the name Streamlit's legacy pages/ handling derives from each file name, so that a fresh
# server's first run of a deep link finds the page (no "Page not found") and boot.leave_legacy_run reruns it here.
PAGES = {
    key: st.Page(path, title=title, icon=icon, url_path=key)
    for key, path, title, icon in (
        ("latent", "pages/latent.py", "Latent space", ":material/scatter_plot:"),
        ("posteriors", "pages/posteriors.py", "Posteriors", ":material/blur_on:"),
        ("resampling", "pages/resampling.py", "Resampling", ":material/casino:"),
        ("bounds", "pages/bounds.py", "Bounds and comparison", ":material/show_chart:"),
        ("toy", "pages/toy.py", "Toy targets", ":material/blur_circular:"),
        ("digit", "pages/digit.py", "Your own digit", ":material/draw:"),
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
