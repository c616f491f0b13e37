"""The one module of the product that touches Streamlit internals (checked on Streamlit 1.67;
``tests/test_app.py::test_the_streamlit_internals_of_the_deep_link_hand_over`` fails the day an upgrade changes them).

Why: a folder named ``pages/`` beside the entrypoint makes ``PagesManager`` switch the whole server to the legacy
multipage mode when the first session starts (``uses_pages_directory``, decided from the folder's mere existence).
Until some run calls ``st.navigation`` (which switches it off), a deep link such as ``/latent`` runs
``pages/latent.py`` alone, without app.py. There is no supported way to keep the folder's name and avoid this
(Streamlit's advice is to rename the folder; streamlit/streamlit#9624, #10276), so ``explorer.boot`` detects that
run and hands it to app.py with the two functions below.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx


def main_script() -> Path | None:
    """The script this run was started for (app.py in a legacy run of a page file), or None outside a run."""
    ctx = get_script_run_ctx()
    return None if ctx is None else Path(ctx.main_script_path).resolve()


def leave_legacy_mode() -> None:
    """Switch the server out of the legacy pages/ handling, as ``st.navigation`` does."""
    PagesManager.uses_pages_directory = False
