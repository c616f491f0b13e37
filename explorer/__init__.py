"""The Streamlit side of the explorer: everything between the core package ``iwae`` (mathematics and file formats,
no Streamlit) and the page scripts in ``pages/`` (layout only).

One module a job:
- ``boot``: what runs before the torch import (the page icon, the browser warm-up, handing a legacy run to app.py);
- ``legacy``: the one place that touches Streamlit internals (a fresh server's first deep link);
- ``threads``: torch's threads and denormal flushing for the app's computations;
- ``state``: the view state shared by every page and its URL form (no Streamlit);
- ``results``, ``presets``: what the checkpoints' metadata and the preset file say, as the pages show it (no
  Streamlit);
- ``data``: the checkpoint catalogue and the test set, cached;
- ``sidebar``: the shared sidebar widgets and their callbacks;
- ``frame``: what every run draws around a page (sidebar, notices, or what is missing);
- ``widgets``: small display helpers the pages share;
- ``presenter``: the presenter view (?present=1, the sidebar toggle): stylesheet and figure sizes for a projector;
- ``lesson`` (no Streamlit), ``lesson_ui``: the guided lesson's steps, their images chosen by the preset computation,
  and its page's glue (Back / Next, ?step=N, each step's figures);
- ``estimator``: the Posteriors page's "Inspect the estimator" section (one draw of K log weights taken apart);
- ``downloads``: the per-image numbers of the chosen models as CSV with their protocol;
- ``views``: the cached computations behind the pages (pure functions of small keys around ``iwae``);
- ``parallel``: the two columns' views computed at once, one thread each;
- ``warm``: the default state's views computed once in the background after the server's first run.

``import explorer`` loads no torch: each submodule loads on first use (``explorer.views`` ...), so that a page's first
statement, ``explorer.page_frame()``, can hand a fresh server's first deep link to app.py before torch is imported
(app.py then sends the browser warm-up first; see ``boot``). The pages whose first chart comes at once (latent,
posteriors, resampling) import nothing that loads torch at their top; toy and bounds import torch-using core modules
there, which only costs a first deep link to them the overlap of plotly.js loading with the torch import, hidden behind
the seconds of fitting or curve sampling before their first chart.
"""

from __future__ import annotations

import importlib

SUBMODULES = ("boot", "chart", "data", "downloads", "estimator", "frame", "legacy", "lesson", "lesson_ui", "parallel",
              "presenter", "presets", "results", "sidebar", "state", "threads", "views", "warm", "widgets")


def __getattr__(name: str):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def page_frame():
    """The first statement of every page: (catalog, view state). Hands a legacy run of the page file to app.py
    (``boot.hand_over_legacy_run``, before anything imports torch), then returns the frame app.py drew, or draws it
    when the page file runs on its own. Stops the page when nothing can be shown."""
    from . import boot

    boot.hand_over_legacy_run()
    from . import frame

    return frame.page_frame()
