"""What every run draws around a page: the checkpoints and the test set loaded, the shared sidebar, the notices; or,
when nothing can be shown, what is missing and how to make it. app.py calls ``frame`` before it runs the page;
``page_frame`` (through ``explorer.page_frame``) is the first statement of every page."""

from __future__ import annotations

import os
import time

import streamlit as st

from iwae import catalog, testset
from iwae.catalog import Catalog

from . import presenter, results, sidebar, threads, warm
from .boot import FRAME_FLAG
from .data import load_catalog, test_set
from .state import ViewState

ENTRYPOINT_PAGE = "_entrypoint_page"  # title of the page app.py framed in its latest run (the tests read it)
RUN_LOG_ENV = "IWAE_RUN_LOG"
RUN_LOG = os.environ.get(RUN_LOG_ENV)


def frame() -> tuple[Catalog, ViewState] | None:
    """Load checkpoints and the test set, draw the shared sidebar and the notices: (catalog, state), or
    None after explaining what is missing (then the caller shows nothing else)."""
    threads.start_script_run()
    cat = load_catalog()
    try:
        _, labels = test_set()
    except testset.TestSetError as exc:
        st.title("IWAE visual explorer")
        st.error(f"The binarized test set cannot be loaded: {exc}", icon=":material/error:")
        return None
    if not cat.checkpoints:
        show_missing(cat)
        return None
    state = sidebar.sidebar(cat, labels)
    presenter.apply()
    show_notices(cat)
    return cat, state


def run_framed(page) -> None:
    """app.py's run: the frame, then ``page`` (an ``st.navigation`` result) inside it. With ``$IWAE_RUN_LOG`` set, each
    run's duration is appended to that file (bench/page_latency.py: the server's share of a wait)."""
    started = time.perf_counter()
    try:
        _run_framed(page)
    finally:
        if RUN_LOG:
            with open(RUN_LOG, "a") as log:
                log.write(f"{time.perf_counter() - started:.4f}\t{page.title}\n")


def _run_framed(page) -> None:
    framed = frame()
    if framed is None:
        return
    st.session_state[FRAME_FLAG] = True
    st.session_state[ENTRYPOINT_PAGE] = page.title
    try:
        page.run()
    finally:
        st.session_state[FRAME_FLAG] = False
    presenter.run_completed()  # not reached when the page stops for a rerun
    if warm.ENABLED:
        warm.start_once(framed[0])  # after the first page is drawn: its run goes first


def page_frame() -> tuple[Catalog, ViewState]:
    """The frame app.py drew, or the same frame drawn here when the page file runs on its own. Stops the page when
    nothing can be shown."""
    if st.session_state.get(FRAME_FLAG):
        return load_catalog(), sidebar.view_state()
    result = frame()
    if result is None:
        st.stop()
    return result


def show_notices(cat: Catalog) -> None:
    """Warnings every page shows: URL values that were ignored (once) and checkpoints that failed."""
    for w in st.session_state.pop("_query_warnings", []) or []:
        st.warning(w, icon=":material/warning:")
    for name, error in cat.errors.items():
        st.warning(f"Checkpoint **{name}** could not be loaded and is left out: {error}", icon=":material/warning:")


def show_missing(cat: Catalog) -> None:
    """No usable checkpoint: say what is missing and how to make it."""
    st.title("IWAE visual explorer")
    st.error(f"No usable model checkpoint in `{cat.directory}`.", icon=":material/error:")
    for name, error in cat.errors.items():
        st.warning(f"Checkpoint **{name}** could not be loaded: {error}", icon=":material/warning:")
    st.markdown(
        "The explorer compares trained 2-D-latent VAE and IWAE models, stored as `*.safetensors` files in "
        f"`{cat.directory}` (set `{catalog.CHECKPOINT_DIR_ENV}` to use another folder). Train them with:"
    )
    st.code("\n".join(results.train_command(n) for n in results.EXPECTED_CHECKPOINTS), language="bash")
    st.markdown("then evaluate them (fills the results table) with:")
    st.code(results.EVALUATE_COMMAND, language="bash")
