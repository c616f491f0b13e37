"""What the checkpoints' metadata says, in the form the pages show it: a one-line description, the training history,
the results table and its protocol, and the commands that make a missing model or its metrics. No Streamlit here."""

from __future__ import annotations

import math
from collections.abc import Mapping

from iwae.checkpoints import Checkpoint

# The training run behind each conventional checkpoint name (and the pattern for any other).
TRAIN_COMMAND = "python -m iwae.train --objective {objective} --k {k}{estimator} --out checkpoints/{name}.safetensors"
EVALUATE_COMMAND = "python -m iwae.evaluate checkpoints/*.safetensors --write"
EXPECTED_CHECKPOINTS = ("vae-k1", "vae-k50", "iwae-k5", "iwae-k50", "iwae-k50-dreg")
NLL_COLUMNS = ("NLL (quadrature)", "NLL (IS, k=5000)", "-ELBO", "-L_5", "-L_50")  # nats, two decimals
ERROR_COLUMN = "max quad. error"


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
