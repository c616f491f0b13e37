"""Comparing models honestly: paired differences over the same test images, and seed-to-seed noise.

Pure functions of per-image arrays (the ``<name>.per-image.npz`` files of ``python -m iwae.evaluate``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ESTIMATORS = {"exact": "log_px_quadrature", "is": "is"}  # per-image log p(x) arrays by estimator


@dataclass(frozen=True)
class Paired:
    better: str
    worse: str
    estimator: str
    n_images: int
    mean: float  # mean over images of NLL(worse) - NLL(better), nats; positive when the ordering holds
    se: float  # its standard error over images

    @property
    def z(self) -> float:
        return self.mean / self.se if self.se > 0 else math.inf * np.sign(self.mean)


def paired_difference(log_px_better: np.ndarray, log_px_worse: np.ndarray, better: str = "", worse: str = "",
                      estimator: str = "") -> Paired:
    """NLL(worse) - NLL(better) per image = log p_better(x) - log p_worse(x); its mean and standard error."""
    n = min(len(log_px_better), len(log_px_worse))
    d = np.asarray(log_px_better[:n], dtype=np.float64) - np.asarray(log_px_worse[:n], dtype=np.float64)
    return Paired(better, worse, estimator, n, float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)))


@dataclass(frozen=True)
class SeedNoise:
    model: str
    estimator: str
    n_images: int
    nll_by_seed: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.nll_by_seed))

    @property
    def sd(self) -> float:
        return float(np.std(self.nll_by_seed, ddof=1))


def seed_noise(model: str, estimator: str, log_px_by_seed: list[np.ndarray]) -> SeedNoise:
    """Mean test NLL of each seed's model on the same first n images (n: the fewest any seed has)."""
    n = min(len(a) for a in log_px_by_seed)
    return SeedNoise(model, estimator, n, tuple(float(-np.mean(a[:n])) for a in log_px_by_seed))
