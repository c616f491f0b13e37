"""The explorer's catalogue: which checkpoints exist, which load, the view state and its URL form.

No Streamlit here: the app caches what these functions return, and the tests call them directly.

- Checkpoints are ``<dir>/*.safetensors`` except ``*.resume.safetensors`` (training state) and hidden
  temporary files; ``<dir>`` is ``$IWAE_CHECKPOINT_DIR`` or ``checkpoints/`` beside the package.
- Every checkpoint is loaded on its own; a broken one gives an error message, the others still load.
- The view state (two models, test image, digit filter, K, seed, mathematics toggle) round-trips
  through URL query parameters; an invalid value falls back to its default with a warning.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from . import image_ref
from .checkpoints import Checkpoint, CheckpointError, load_checkpoint
from .image_ref import ImageRef

CHECKPOINT_DIR_ENV = "IWAE_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
INSTRUCTIVE_FILE = "instructive-images.json"
INSTRUCTIVE_GROUPS = {
    "multimodal": "posterior with several modes",
    "largest_gap": "largest gap between log p(x) and the ELBO",
    "vae_iwae_disagree": "VAE and IWAE disagree most",
}

IMAGE_DIM = 784  # the explorer works on 28 x 28 MNIST images
LATENT_DIM = 2  # and needs a 2-D latent (quadrature, pictures)
N_TEST_IMAGES = 10_000

K_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
DIGIT_CHOICES = ("any",) + tuple(str(d) for d in range(10))
DEFAULT_MODELS = ("vae-k1", "iwae-k50")
DEFAULT_K = 50
DEFAULT_IMAGE = 0
DEFAULT_SEED = 0
MAX_SEED = 2**31 - 1

# The training run behind each conventional checkpoint name (and the pattern for any other).
TRAIN_COMMAND = "python -m iwae.train --objective {objective} --k {k}{estimator} --out checkpoints/{name}.safetensors"
EVALUATE_COMMAND = "python -m iwae.evaluate checkpoints/*.safetensors --write"
EXPECTED_CHECKPOINTS = ("vae-k1", "vae-k50", "iwae-k5", "iwae-k50", "iwae-k50-dreg")


def checkpoint_dir() -> Path:
    """``$IWAE_CHECKPOINT_DIR`` when set (tests use it), else ``checkpoints/`` in the repository."""
    env = os.environ.get(CHECKPOINT_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_CHECKPOINT_DIR


def discover(directory: Path | str) -> list[Path]:
    """Model checkpoints in a folder, sorted by name: no training-state files, no temporary files."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.glob("*.safetensors")
        if not p.name.endswith(".resume.safetensors") and not p.name.startswith(".") and p.is_file()
    )


def checkpoint_name(path: Path | str) -> str:
    return Path(path).name.removesuffix(".safetensors")


def file_stamp(path: Path | str) -> int:
    """Modification time in ns (0 if the file vanished): part of every cache key, so a retrained
    checkpoint is reloaded."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


def load_for_explorer(path: Path | str) -> Checkpoint:
    """load_checkpoint plus the explorer's own requirement: a 2-D latent over 784-pixel images."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.model.config
    if cfg.input_dim != IMAGE_DIM:
        raise CheckpointError(
            f"{path}: models {cfg.input_dim}-pixel images; the explorer shows 28 x 28 MNIST ({IMAGE_DIM} pixels)"
        )
    if cfg.latent_dim != LATENT_DIM:
        raise CheckpointError(
            f"{path}: has a {cfg.latent_dim}-D latent; the explorer needs a 2-D latent (quadrature and pictures)"
        )
    return ckpt


@dataclass
class Catalog:
    directory: Path
    checkpoints: dict[str, Checkpoint]  # name -> loaded checkpoint, in name order
    errors: dict[str, str]  # name -> why it could not be loaded

    @property
    def names(self) -> list[str]:
        return list(self.checkpoints)


def try_load(path: Path | str, loader=load_for_explorer) -> tuple[Checkpoint | None, str | None]:
    """(checkpoint, None) or (None, the reason it cannot be used); never raises."""
    try:
        return loader(path), None
    except CheckpointError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any unexpected failure still leaves the others usable
        return None, f"{path}: could not be loaded ({type(exc).__name__}: {exc})"


def load_all(directory: Path | str, loader=load_for_explorer) -> Catalog:
    """Load every checkpoint in ``directory``; a failure is recorded and the others still load."""
    directory = Path(directory)
    loaded, errors = {}, {}
    for path in discover(directory):
        ckpt, error = try_load(path, loader)
        if ckpt is not None:
            loaded[checkpoint_name(path)] = ckpt
        else:
            errors[checkpoint_name(path)] = error
    return Catalog(directory, loaded, errors)


def train_command(name: str) -> str:
    """The training command that writes checkpoints/<name>.safetensors (``vae-k1``, ``iwae-k50``, ...)."""
    objective, _, k = name.partition("-k")
    k, _, estimator = k.partition("-")
    if objective not in ("vae", "iwae") or not k.isdigit() or estimator not in ("", "dreg") or (
            estimator and objective != "iwae"):
        objective, k, estimator = "iwae", "50", ""
        name = "iwae-k50"
    return TRAIN_COMMAND.format(objective=objective, k=k, name=name,
                                estimator=f" --estimator {estimator}" if estimator else "")


def describe(metadata: Mapping) -> str:
    """One line: objective, k, estimator and epochs, e.g. ``IWAE k=50 (standard), 60 epochs``."""
    objective = str(metadata.get("objective", "?")).upper()
    estimator = metadata.get("estimator", "standard")
    est = "" if estimator == "standard" else f" ({estimator})"
    return f"{objective} k={metadata.get('k', '?')}{est}, {metadata.get('epochs', '?')} epochs"


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def results_rows(checkpoints: Mapping[str, Checkpoint]) -> list[dict]:
    """The results table, one row per checkpoint with evaluation metrics (others are omitted).

    Columns: test NLL by quadrature (with its largest per-image error), the paper's IS estimate with
    k = 5000, and the bounds ELBO, L_5, L_50 (as negative log likelihoods, the paper's convention).
    """
    rows = []
    for name, ckpt in checkpoints.items():
        m = ckpt.metadata.get("metrics") or {}
        if not isinstance(m, Mapping) or _num(m.get("nll_quadrature")) is None:
            continue
        neg = {key: (-v if (v := _num(m.get(key))) is not None else None) for key in ("elbo", "l5", "l50")}
        rows.append(
            {
                "model": name,
                "trained as": describe(ckpt.metadata),
                "NLL (quadrature)": _num(m.get("nll_quadrature")),
                "max quad. error": _num(m.get("nll_quadrature_max_error")),
                "NLL (IS, k=5000)": _num(m.get("nll_is5000")),
                "-ELBO": neg["elbo"],
                "-L_5": neg["l5"],
                "-L_50": neg["l50"],
                "active units": m.get("active_units"),
                "test images": m.get("n_images"),
            }
        )
    return rows


def results_protocol(checkpoints: Mapping[str, Checkpoint]) -> str | None:
    """The evaluation protocol recorded with the metrics (the first one found)."""
    for ckpt in checkpoints.values():
        m = ckpt.metadata.get("metrics") or {}
        if isinstance(m, Mapping) and m.get("protocol"):
            return str(m["protocol"])
    return None


def history_rows(metadata: Mapping) -> list[dict]:
    """The per-epoch training history, keeping only entries with an epoch number."""
    hist = metadata.get("history") or []
    return [h for h in hist if isinstance(h, Mapping) and _num(h.get("epoch")) is not None]


def load_instructive(directory: Path | str, n_images: int = N_TEST_IMAGES) -> dict[str, list[int]]:
    """Preset images from ``<dir>/instructive-images.json``: {group: [indices]}; {} when absent or
    unreadable. Indices outside the test set and unknown groups are dropped."""
    path = Path(directory) / INSTRUCTIVE_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for group in INSTRUCTIVE_GROUPS:
        values = raw.get(group)
        if not isinstance(values, list):
            continue
        good = [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_images]
        if good:
            out[group] = good
    return out


def instructive_protocol(directory: Path | str) -> str | None:
    try:
        raw = json.loads((Path(directory) / INSTRUCTIVE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(raw["protocol"]) if isinstance(raw, Mapping) and raw.get("protocol") else None


# ---------------------------------------------------------------------------------------------
# The view state and its URL form


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


def stable_seed(*parts) -> int:
    """A reproducible 63-bit seed from any parts (strings, ints): the same parts give the same draws
    in every process (Python's own hash of a string is salted per process)."""
    text = "|".join(map(str, parts)).encode()
    return (zlib.crc32(text) << 31) ^ zlib.crc32(text[::-1]) ^ zlib.adler32(text)
