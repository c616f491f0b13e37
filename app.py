"""IWAE visual explorer: ``python -m streamlit run app.py``.

The entrypoint: page config, the browser warm-up, the navigation over the pages in pages/, and the shared frame
(sidebar, notices) around whichever page runs. The pages hold the layout; ``explorer/`` the state, the sidebar and
the caches; ``iwae/`` the mathematics.
"""

from __future__ import annotations

import streamlit as st

import explorer  # imports no torch: its submodules load on first use

# The icon first, before st.navigation: otherwise the browser shows (and fetches from the internet) the page's
# material icon meanwhile (tests/test_browser.py::test_no_request_leaves_the_machine).
st.set_page_config(page_title="IWAE visual explorer", page_icon=explorer.boot.ICON, layout="wide")
warm_up = explorer.boot.warm_up_browser()  # before explorer.frame below imports torch

# url_path equals the name Streamlit's legacy pages/ handling derives from each file name, so that a fresh server's
# first run of a deep link finds the page (no "Page not found") and explorer.boot hands it back to this file.
PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    *(st.Page(f"pages/{key}.py", title=title, icon=icon, url_path=key) for key, title, icon in (
        ("lesson", "Lesson", ":material/school:"),
        ("latent", "Latent space", ":material/scatter_plot:"),
        ("posteriors", "Posteriors", ":material/blur_on:"),
        ("resampling", "Resampling", ":material/casino:"),
        ("bounds", "Bounds and comparison", ":material/show_chart:"),
        ("toy", "Toy targets", ":material/blur_circular:"),
        ("digit", "Your own digit", ":material/draw:"),
    )),
]

page = st.navigation(PAGES)
frame = explorer.frame  # the torch import, once per process: after the warm-up chart has been sent
warm_up.empty()
frame.run_framed(page)  # the sidebar, the notices, then the page inside them
