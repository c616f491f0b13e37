"""What the checkpoints' metadata says, in the form the pages show it: a one-line description, the training history,
the results table and its protocol, and the commands that make a missing model or its metrics. No Streamlit here."""

from __future__ import annotations

import math
from collections.abc import Mapping

from iwae import zoo
from iwae.checkpoints import Checkpoint
from iwae.comparison import ESTIMATORS, SeedNoise, largest_seed_sd

EVALUATE_COMMAND = "python -m iwae.evaluate checkpoints/*.safetensors --write --per-image"
EXPECTED_CHECKPOINTS = tuple(m.name for m in zoo.DEFAULT_MODELS)
NLL_COLUMNS = ("NLL (quadrature)", "NLL (IS, k=5000)", "-ELBO", "-L_5", "-L_50")  # nats, two decimals
ERROR_COLUMN = "max quad. error"


def train_command(name: str) -> str:
    """The training command that writes checkpoints/<name>.safetensors with the zoo's protocol (iwae/zoo.py); for a
    name outside the zoo, the command of the default IWAE."""
    model = zoo.ALL_MODELS.get(name) or zoo.ALL_MODELS["iwae-k50"]
    return "python -m iwae.train " + " ".join(model.train_args(f"checkpoints/{model.name}.safetensors"))


def budget(name: str, metadata: Mapping) -> str:
    """Whether a model belongs to the equal-budget set that compares objectives (iwae/zoo.py)."""
    model = zoo.ALL_MODELS.get(name)
    if model is not None and model.equal_budget and metadata.get("epochs") == zoo.PROTOCOL["epochs"]:
        return f"equal ({zoo.PROTOCOL['epochs']} epochs)"
    return f"outside ({metadata.get('epochs', '?')} epochs)"


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
                "budget": budget(name, ckpt.metadata),
                "NLL (quadrature)": _num(m.get("nll_quadrature")),
                ERROR_COLUMN: _num(m.get("nll_quadrature_max_error")),
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
    """The evaluation protocols recorded with the metrics: one, or each with the models it applies to."""
    by_protocol: dict[str, list[str]] = {}
    for name, ckpt in checkpoints.items():
        m = ckpt.metadata.get("metrics") or {}
        if isinstance(m, Mapping) and m.get("protocol"):
            by_protocol.setdefault(str(m["protocol"]), []).append(name)
    if len(by_protocol) <= 1:
        return next(iter(by_protocol), None)
    return " ".join(f"{', '.join(names)}: {protocol}." for protocol, names in by_protocol.items())


def history_rows(metadata: Mapping) -> list[dict]:
    """The per-epoch training history, keeping only entries with an epoch number."""
    hist = metadata.get("history") or []
    return [h for h in hist if isinstance(h, Mapping) and _num(h.get("epoch")) is not None]


def seed_noise_note(noise: Mapping[tuple[str, str], SeedNoise]) -> str | None:
    """The seed-to-seed noise under the results table (iwae.comparison.zoo_seed_noise), and the rule it sets: a
    difference between models is a finding only beyond twice the larger seed sd. None when not measured."""
    if not noise:
        return None
    labels = {"exact": "quadrature", "is": "IS"}
    models = dict.fromkeys(m for m, _ in noise)
    per_model = "; ".join(
        f"{m}: {', '.join(f'{noise[(m, e)].sd:.2f} ({labels[e]})' for e in ESTIMATORS if (m, e) in noise)}"
        for m in models)
    n = min(s.n_images for s in noise.values())
    limits = ", ".join(f"{2 * largest_seed_sd(noise, e):.2f} nats by {labels[e]}" for e in ESTIMATORS)
    return (f"Seed noise (seeds {', '.join(map(str, zoo.NOISE_SEEDS))}, same protocol, first {n:,} test images), "
            f"sd of the NLL in nats: {per_model}. A difference between two models is a finding only beyond twice "
            f"the larger sd ({limits}).")
