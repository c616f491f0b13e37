"""The per-image numbers of the evaluation (``<checkpoint>.per-image.npz`` beside each checkpoint, written by
``python -m iwae.evaluate --per-image``), read for the lesson's image choice and written as CSV for download with
their protocol in a commented header. No Streamlit here."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from iwae.checkpoints import Checkpoint
from iwae.evaluate import per_image_path

# column in the CSV -> array in the per-image file; nats, natural logarithms
COLUMNS = {
    "log_px_quadrature": "log_px_quadrature",
    "quadrature_error": "quadrature_error",
    "log_px_is5000": "is",
    "elbo": "elbo",
    "l5": "l5",
    "l50": "l50",
}


def per_image_numbers(checkpoint_path: Path | str) -> dict[str, np.ndarray] | None:
    """The per-image arrays of one checkpoint, {CSV column: (N,) float64}; None when the file is absent, unreadable
    or its arrays disagree in length."""
    path = per_image_path(Path(checkpoint_path))
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {col: np.asarray(f[key], dtype=np.float64) for col, key in COLUMNS.items() if key in f.files}
    except (OSError, ValueError, KeyError):
        return None
    if "log_px_quadrature" not in out or len({len(v) for v in out.values()}) != 1:
        return None
    return out


def per_image_csv(checkpoints: Sequence[Checkpoint], labels: np.ndarray, protocol_lines: Sequence[str]) -> str | None:
    """One row per test image: index, digit, then per model its per-image numbers (columns ``<model>:<quantity>``).
    The protocol comes first as ``#`` comment lines. None when no model has per-image numbers."""
    tables = {}
    for ckpt in checkpoints:
        numbers = per_image_numbers(ckpt.path)
        if numbers is not None and ckpt.name not in tables:
            tables[ckpt.name] = numbers
    if not tables:
        return None
    n = min(len(next(iter(t.values()))) for t in tables.values())
    n = min(n, len(labels))
    header = ["image", "digit"] + [f"{name}:{col}" for name, t in tables.items() for col in t]
    out = io.StringIO()
    for line in protocol_lines:
        out.write(f"# {line}\n")
    out.write(",".join(header) + "\n")
    for i in range(n):
        row = [str(i), str(int(labels[i]))] + [f"{t[col][i]:.6f}" for t in tables.values() for col in t]
        out.write(",".join(row) + "\n")
    return out.getvalue()


def protocol_lines(checkpoints: Sequence[Checkpoint], binarization_seed: int) -> list[str]:
    """What the numbers are: units, binarization, estimators, and each model's recorded evaluation protocol."""
    lines = [
        "Per-image numbers of the IWAE visual explorer's models, in nats (natural logarithms).",
        f"Data: the binarized MNIST test set (binarized once with seed {binarization_seed}); image = test-set index.",
        "log_px_quadrature: exact log p(x) by adaptive quadrature over the 2-D latent plane; quadrature_error: its "
        "error estimate. log_px_is5000: importance-sampling estimate with k = 5000 draws from q (Burda et al.'s test "
        "estimate). elbo, l5, l50: the bounds L_1, L_5, L_50 estimated from the same draws.",
    ]
    for ckpt in checkpoints:
        metrics = ckpt.metadata.get("metrics") or {}
        protocol = metrics.get("protocol") if isinstance(metrics, Mapping) else None
        lines.append(f"{ckpt.name}: {protocol or 'no evaluation protocol recorded in the checkpoint metadata'}")
    return lines


def available(checkpoints: Sequence[Checkpoint]) -> bool:
    """Whether any of the checkpoints has a per-image file (a cheap check: the CSV itself is made on a click)."""
    return any(per_image_path(Path(c.path)).is_file() for c in checkpoints)


def csv_maker(checkpoints: Sequence[Checkpoint], labels: np.ndarray, binarization_seed: int):
    """A callable making the CSV (~1.4 MB for two models), for st.download_button's deferred data."""
    return lambda: per_image_csv(checkpoints, labels, protocol_lines(checkpoints, binarization_seed)) or ""
