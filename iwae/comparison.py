"""Comparing models honestly: paired differences over the same test images, and seed-to-seed noise.

Pure functions of per-image arrays (the ``<name>.per-image.npz`` files of ``python -m iwae.evaluate``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iwae.evaluate import per_image_path
from iwae.zoo import DEFAULT_SEED, NOISE_SEEDS, SEED_NOISE_MODELS

ESTIMATORS = {"exact": "log_px_quadrature", "is": "is"}  # per-image log p(x) arrays by estimator
SEEDS_FOLDER = "seeds"  # the seed-2/3 models of the zoo, beside the default models: <checkpoints>/seeds/


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


def read_per_image(folder: Path, name: str) -> dict[str, np.ndarray] | None:
    """The per-image file of checkpoint ``<folder>/<name>`` (python -m iwae.evaluate --per-image) as arrays; None
    when absent."""
    path = per_image_path(Path(folder) / f"{name}.safetensors")
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}


def _seed_runs(checkpoints: Path, model: str) -> list[tuple[Path, str]]:
    """(folder, checkpoint name) of each seed of a seed-noise model: seed 1 beside the default models, the others in
    the seeds folder."""
    return [(checkpoints, model) if s == DEFAULT_SEED else (checkpoints / SEEDS_FOLDER, f"{model}-seed{s}")
            for s in NOISE_SEEDS]


def seed_noise_files(checkpoints: Path) -> list[Path]:
    """The per-image files zoo_seed_noise reads (present or not): what its result depends on."""
    return [per_image_path(folder / f"{name}.safetensors")
            for model in SEED_NOISE_MODELS for folder, name in _seed_runs(Path(checkpoints), model)]


def zoo_seed_noise(checkpoints: Path) -> dict[tuple[str, str], SeedNoise]:
    """The zoo's seed noise by (model, estimator): seed 1 from ``checkpoints``, the others from its seeds folder.
    A model with a seed's per-image file missing is left out."""
    noise = {}
    for model in SEED_NOISE_MODELS:
        runs = [read_per_image(folder, name) for folder, name in _seed_runs(Path(checkpoints), model)]
        if any(r is None for r in runs):
            continue
        for est, key in ESTIMATORS.items():
            noise[(model, est)] = seed_noise(model, est, [r[key] for r in runs])
    return noise


def largest_seed_sd(noise: dict[tuple[str, str], SeedNoise], estimator: str) -> float:
    """The largest seed sd of one estimator over the zoo's seed-noise models (nan when none is measured):
    a difference is called a finding only beyond twice this."""
    return max((s.sd for (_, e), s in noise.items() if e == estimator), default=float("nan"))
