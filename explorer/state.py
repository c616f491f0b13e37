"""The view state every page shares (two models, test image or own digit, digit filter, K, seed, mathematics
toggle) and its URL form. No Streamlit and no torch here: the sidebar (explorer.sidebar) keeps it in session state,
the benchmarks read its choices, the tests call it directly.

The state round-trips through URL query parameters (``?a=vae-k1&b=iwae-k50&image=3&k=50&seed=0``); an invalid value
falls back to its default with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from iwae import image_ref
from iwae.image_ref import ImageRef

N_TEST_IMAGES = 10_000  # the shipped binarized MNIST test set
K_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # the K slider, log-spaced
DIGIT_CHOICES = ("any",) + tuple(str(d) for d in range(10))
DEFAULT_MODELS = ("vae-k1", "iwae-k50")
DEFAULT_K = 50
DEFAULT_IMAGE = 0
DEFAULT_SEED = 0
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class ViewState:
    model_a: str  # left column
    model_b: str  # right column
    image: int  # test-set index
    digit: str  # "any" or "0".."9": filter for the random / preset image choice
    k: int  # number of importance samples K, one of K_CHOICES
    seed: int  # random seed for every sampled quantity
    show_math: bool  # open the mathematics expanders
    own: str | None = None  # the user's own digit (image_ref code), shown instead of the test image when set

    @property
    def image_ref(self) -> ImageRef:
        """What every page shows: the user's digit when there is one, else the test image."""
        return self.own if self.own is not None else self.image


QUERY_KEYS = {"model_a": "a", "model_b": "b", "image": "image", "digit": "digit", "k": "k", "seed": "seed",
              "show_math": "math", "own": "x"}


def default_models(names: list[str]) -> tuple[str, str]:
    """vae-k1 beside iwae-k50 when both exist; otherwise the closest available pair."""
    if not names:
        return DEFAULT_MODELS
    a = DEFAULT_MODELS[0] if DEFAULT_MODELS[0] in names else names[0]
    if DEFAULT_MODELS[1] in names and DEFAULT_MODELS[1] != a:
        b = DEFAULT_MODELS[1]
    else:
        others = [n for n in names if n != a]
        b = others[-1] if others else a
    return a, b


def default_state(names: list[str]) -> ViewState:
    a, b = default_models(names)
    return ViewState(a, b, DEFAULT_IMAGE, "any", DEFAULT_K, DEFAULT_SEED, False)


def _first(value) -> str:
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value).strip()


def parse_query(params: Mapping, names: list[str], n_images: int = N_TEST_IMAGES) -> tuple[ViewState, list[str]]:
    """View state from URL query parameters; each invalid value falls back to its default, with a
    warning saying so. Never raises."""
    state = default_state(names)
    warnings: list[str] = []
    updates: dict = {}

    def bad(key: str, raw: str, why: str, default) -> None:
        warnings.append(f"URL parameter {key}={raw!r} ignored ({why}); using {default}.")

    for field, key in QUERY_KEYS.items():
        if key not in params:
            continue
        raw = _first(params[key])
        default = getattr(state, field)
        if field in ("model_a", "model_b"):
            if raw in names:
                updates[field] = raw
            else:
                bad(key, raw, "no such loadable checkpoint" if names else "no checkpoints loaded", default)
        elif field == "image":
            if raw.isdigit() and 0 <= int(raw) < n_images:
                updates[field] = int(raw)
            else:
                bad(key, raw, f"a test image index is 0 to {n_images - 1}", default)
        elif field == "digit":
            if raw in DIGIT_CHOICES:
                updates[field] = raw
            else:
                bad(key, raw, "a digit filter is 'any' or 0 to 9", default)
        elif field == "k":
            if raw.isdigit() and int(raw) in K_CHOICES:
                updates[field] = int(raw)
            else:
                bad(key, raw, f"K is one of {', '.join(map(str, K_CHOICES))}", default)
        elif field == "seed":
            if raw.isdigit() and int(raw) <= MAX_SEED:
                updates[field] = int(raw)
            else:
                bad(key, raw, f"a seed is an integer 0 to {MAX_SEED}", default)
        elif field == "show_math":
            if raw.lower() in ("1", "true", "yes", "on"):
                updates[field] = True
            elif raw.lower() in ("0", "false", "no", "off", ""):
                updates[field] = False
            else:
                bad(key, raw, "math is 0 or 1", default)
        elif field == "own":
            try:
                image_ref.decode_digit(raw)
                updates[field] = raw
            except ValueError as exc:
                shown = raw[:12] + "…" if len(raw) > 12 else raw
                bad(key, shown, str(exc), f"test image #{updates.get('image', state.image)}")
    return replace(state, **updates), warnings


def to_query(state: ViewState) -> dict[str, str]:
    """The URL query parameters for a view state (inverse of parse_query)."""
    query = {
        "a": state.model_a,
        "b": state.model_b,
        "image": str(state.image),
        "digit": state.digit,
        "k": str(state.k),
        "seed": str(state.seed),
        "math": "1" if state.show_math else "0",
    }
    if state.own is not None:
        query["x"] = state.own
    return query
