"""The shared sidebar: the two models, the test image (index, digit filter, previous / next / random, presets, a
scatter click), K, the seed and the mathematics toggle. Drawn once per run by the entrypoint, so its values persist
across pages; filled from the URL on a session's first run and mirrored back into it on every run."""

from __future__ import annotations

import numpy as np
import streamlit as st

from iwae import image_ref
from iwae.catalog import Catalog
from iwae.rng import stable_seed

from . import presenter, presets, results
from . import state as state_mod
from .state import ViewState

PENDING = "_pending_view"  # widget values a page asked for on the next run (the lesson's steps), set before the widgets
PAGE_QUERY_KEYS = ("step",)  # URL parameters a page owns (explorer.lesson_ui), kept when the state is mirrored


def _sanitize(cat: Catalog, n_images: int) -> None:
    """Before the widgets exist: fill session state from the URL once, and repair values that became
    invalid (a checkpoint that vanished)."""
    ss = st.session_state
    names = cat.names
    presenter.init()
    if "_view_init" not in ss:
        state, warnings = state_mod.parse_query(st.query_params.to_dict(), names, n_images)
        ss["_query_warnings"] = warnings
        ss["_view_init"] = True
        ss["model_a"], ss["model_b"] = state.model_a, state.model_b
        ss["image"], ss["digit"], ss["K"] = state.image, state.digit, state.k
        ss["seed"], ss["show_math"] = state.seed, state.show_math
        ss["own"] = state.own
    for key, value in (ss.pop(PENDING, None) or {}).items():
        ss[key] = value
    default = state_mod.default_state(names)
    for key in ("model_a", "model_b"):
        if ss.get(key) not in names:
            ss[key] = getattr(default, key)
    if ss.get("K") not in state_mod.K_CHOICES:
        ss["K"] = default.k
    if ss.get("digit") not in state_mod.DIGIT_CHOICES:
        ss["digit"] = "any"
    if not isinstance(ss.get("image"), int) or not 0 <= ss["image"] < n_images:
        ss["image"] = default.image
    if not isinstance(ss.get("seed"), int) or not 0 <= ss["seed"] <= state_mod.MAX_SEED:
        ss["seed"] = default.seed
    ss.setdefault("show_math", False)
    if ss.get("own") is not None:
        try:
            image_ref.decode_digit(ss["own"])
        except ValueError:
            ss["own"] = None
    ss.setdefault("own", None)
    ss.setdefault("draw", 0)


def _matching(labels: np.ndarray, digit: str) -> np.ndarray:
    return np.arange(len(labels)) if digit == "any" else np.flatnonzero(labels == int(digit))


def _back_to_test_image() -> None:
    st.session_state["own"] = None


def _on_digit(labels: np.ndarray) -> None:
    """Digit filter changed: move to the first image of that digit after the current one."""
    ss = st.session_state
    ss["own"] = None
    if ss["digit"] != "any" and labels[ss["image"]] != int(ss["digit"]):
        _step_image(labels, +1)


def _step_image(labels: np.ndarray, step: int) -> None:
    ss = st.session_state
    ss["own"] = None
    idx = _matching(labels, ss["digit"])
    if len(idx) == 0:
        return
    if step > 0:
        later = idx[idx > ss["image"]]
        ss["image"] = int(later[0] if len(later) else idx[0])
    else:
        earlier = idx[idx < ss["image"]]
        ss["image"] = int(earlier[-1] if len(earlier) else idx[-1])


def _random_image(labels: np.ndarray) -> None:
    ss = st.session_state
    ss["own"] = None
    idx = _matching(labels, ss["digit"])
    ss["_random_count"] = ss.get("_random_count", 0) + 1
    rng = np.random.default_rng(stable_seed("random-image", ss["seed"], ss["_random_count"]))
    ss["image"] = int(rng.choice(idx))


def _on_preset() -> None:
    ss = st.session_state
    choice = ss.get("preset")
    if choice:
        ss["image"] = int(choice.split(":")[1])
        ss["digit"] = "any"
        ss["own"] = None
    ss["preset"] = None


def set_image(index: int, labels: np.ndarray) -> None:
    """Choose a test image from a callback (scatter click); clears a digit filter it contradicts."""
    ss = st.session_state
    ss["image"] = int(index)
    ss["own"] = None
    if ss.get("digit", "any") != "any" and labels[index] != int(ss["digit"]):
        ss["digit"] = "any"


def sidebar(cat: Catalog, labels: np.ndarray) -> ViewState:
    """The shared sidebar; returns the view state and mirrors it into the URL."""
    _sanitize(cat, len(labels))
    names = cat.names
    sb = st.sidebar
    sb.subheader("Models")
    sb.selectbox("Left column", names, key="model_a", format_func=lambda n: _model_label(cat, n))
    sb.selectbox("Right column", names, key="model_b", format_func=lambda n: _model_label(cat, n))
    sb.subheader("Test image")
    sb.selectbox("Digit filter", state_mod.DIGIT_CHOICES, key="digit", on_change=_on_digit, args=(labels,),
                 format_func=lambda d: "any digit" if d == "any" else f"only {d}s",
                 help="Restricts previous / next / random to this digit.")
    sb.number_input("Image index (0-9999)", min_value=0, max_value=len(labels) - 1, step=1, key="image",
                    on_change=_back_to_test_image,
                    help="Index into the binarized MNIST test set. Clicking a point in the latent scatter sets it too.")
    c1, c2, c3 = sb.columns(3)
    c1.button(":material/chevron_left:", key="prev_image", on_click=_step_image, args=(labels, -1),
              help="Previous image (matching the filter)", width="stretch")
    c2.button(":material/chevron_right:", key="next_image", on_click=_step_image, args=(labels, +1),
              help="Next image (matching the filter)", width="stretch")
    c3.button(":material/casino:", key="random_image", on_click=_random_image, args=(labels,),
              help="A random image (matching the filter)", width="stretch")
    choices = presets.load_instructive(cat.directory, len(labels))
    if choices:
        options = [f"{group}:{i}" for group, idx in choices.items() for i in idx]
        sb.selectbox(
            "Instructive images", options, key="preset", index=None, placeholder="choose a preset…",
            on_change=_on_preset,
            format_func=lambda o: f"{presets.INSTRUCTIVE_GROUPS[o.split(':')[0]]}: #{o.split(':')[1]} "
                                  f"(digit {labels[int(o.split(':')[1])]})",
            help=presets.instructive_protocol(cat.directory) or "Images picked by scripts for teaching.",
        )
    ss = st.session_state
    if ss["own"] is not None:
        sb.info("Every page shows **your own digit**.", icon=":material/draw:")
        sb.button(f"Back to test image #{ss['image']}", key="back_to_test", on_click=_back_to_test_image,
                  icon=":material/undo:")
    else:
        sb.caption(f"Image #{ss['image']}: digit {labels[ss['image']]}")
    sb.subheader("Sampling")
    sb.select_slider("K (importance samples)", options=state_mod.K_CHOICES, key="K",
                     help="Log-spaced from 1 (q itself) to 5000 (the paper's test estimate).")
    sb.number_input("Random seed", min_value=0, max_value=state_mod.MAX_SEED, step=1, key="seed",
                    help="Every sampled quantity (q_IW estimate, SIR draws, bounds) is reproducible from this.")
    sb.toggle("Show the mathematics", key="show_math")
    presenter.toggle(sb)
    state = view_state()
    # Page parameters (the lesson's step) stay; the presenter view is carried while it is on.
    kept = {key: value for key, value in st.query_params.to_dict().items() if key in PAGE_QUERY_KEYS}
    query = state_mod.to_query(state) | presenter.query() | kept
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    sb.caption("The URL holds this state: share it to open the same models, image and K.")
    return state


def _model_label(cat: Catalog, name: str) -> str:
    ckpt = cat.checkpoints.get(name)
    return f"{name} ({results.describe(ckpt.metadata)})" if ckpt else name


def view_state() -> ViewState:
    """The sidebar's current values (set by app.py before the page runs)."""
    ss = st.session_state
    return ViewState(ss["model_a"], ss["model_b"], int(ss["image"]), ss["digit"], int(ss["K"]), int(ss["seed"]),
                     bool(ss["show_math"]), ss.get("own"))


def set_own_digit(x) -> None:
    """Make a user's binarized digit (784,) the image of every page (keeps the test index to go back to)."""
    st.session_state["own"] = image_ref.encode_digit(x)
