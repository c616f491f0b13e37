"""Home: what the explorer shows, links to every page, the results table and the checkpoints found."""

from __future__ import annotations

import streamlit as st

import explorer

cat, state = explorer.page_frame()
results, widgets = explorer.results, explorer.widgets

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
c1.page_link("pages/latent.py", label="Latent space: the test set's encodings, the decoded manifold")
c1.page_link("pages/posteriors.py", label="Posteriors: q(z|x), q_IW(z|x) at K and p(z|x) for one image")
c2.page_link("pages/resampling.py", label="Resampling: reconstructions from q draws beside SIR draws")
c2.page_link("pages/bounds.py", label="Bounds and comparison: L_K against K, results, training curves")
c1.page_link("pages/toy.py", label="Toy targets: fit q by the ELBO and by IWAE to 2-D densities, live")
c2.page_link("pages/digit.py", label="Your own digit: draw or upload one and explore it on every page")

st.subheader("Results")
widgets.results_table(cat)

st.subheader("Checkpoints")
st.markdown(widgets.records_markdown(
    [
        {
            "model": name,
            "trained as": results.describe(ck.metadata),
            "epochs so far": len(results.history_rows(ck.metadata)),
            "last test bound": (results.history_rows(ck.metadata) or [{}])[-1].get("test_bound"),
            "file": f"`{ck.path}`",
        }
        for name, ck in cat.checkpoints.items()
    ],
    {"last test bound": ".2f"},
))
missing = [n for n in results.EXPECTED_CHECKPOINTS if n not in cat.checkpoints and n not in cat.errors]
if missing:
    st.caption(f"Not present yet: {', '.join(missing)}. Train with:")
    st.code("\n".join(results.train_command(n) for n in missing), language="bash")
st.caption(
    "Every number is labelled with its protocol: the MNIST test set binarized once with a fixed seed "
    f"({widgets.TEST_BINARIZATION_SEED}); the estimator (quadrature, importance sampling with k draws); "
    "K; the number of test images."
)
