"""Views that are pure functions of a trained model and the shipped test set, computed once and shipped beside the
checkpoint as ``<name>.views.npz`` (``scripts/precompute_views.py``), so that nobody waits for them:

- the encoder means and standard deviations of all test images (the latent scatter),
- the 5-nearest-neighbour accuracy of those means,
- L_K against K averaged over the first n test images, for each n of SUBSET_SIZES, with the mean quadrature
  log p(x) of those images.

A file belongs to exactly the weights it was computed from (their sha256, ``weights_digest``) and to the K list it
was asked for; ``load_model_views`` returns None for any other model, and the caller computes the view live with the
same functions, the same draws and the same numbers.

The toy targets' fits at the default seed (``toy-fits.npz``, every target and K) are shipped the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import curves, latent, quadrature, toy
from .checkpoints import weights_digest
from .curves import BoundCurve
from .model import VAE
from .rng import generator

SUBSET_SIZES = (10, 20, 50, 100)  # the first n test images behind an averaged L_K curve
SUBSET_SAMPLES = 5_000  # draws from q per image behind it
SUBSET_SEED = 0  # its draws: generator(SUBSET_SEED, "subset", n), whatever seed the viewer chose elsewhere
VIEWS_SUFFIX = ".views.npz"
TOY_FITS_FILE = "toy-fits.npz"
TOY_SEEDS = tuple(range(10))  # the shipped toy fits: the explorer's default seed, 0, and the next nine, which a teacher
# steps through to show how the fits vary (36 fits per seed, about 15 s on one core)


def views_path(checkpoint: Path | str) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + VIEWS_SUFFIX)


def subset_curve(model: VAE, images: torch.Tensor, n: int, ks) -> BoundCurve:
    """L_K for each K of ``ks``, averaged over the first n images, from SUBSET_SAMPLES draws per image."""
    return curves.bound_curve(model, images[:n], ks, SUBSET_SAMPLES, generator(SUBSET_SEED, "subset", n))


def subset_log_px(model: VAE, images: torch.Tensor, n: int, grid: quadrature.GlobalGrid | None = None
                  ) -> tuple[float, float]:
    """Mean quadrature log p(x) of the first n images and the largest per-image error estimate."""
    log_px, err = quadrature.log_px_batch(model, grid or quadrature.global_grid(model), images[:n])
    return float(log_px.mean()), float(err.max())


@dataclass
class ModelViews:
    digest: str
    latent_mu: np.ndarray  # (N, 2) float32, encoder means of the test images
    latent_sd: np.ndarray  # (N, 2) float32
    knn_accuracy: float
    ks: tuple[int, ...]
    subset_curves: dict[int, BoundCurve]  # n -> L_K curve averaged over the first n images
    subset_log_px: dict[int, tuple[float, float]]  # n -> (mean quadrature log p(x), largest error estimate)


def compute_model_views(model: VAE, images: torch.Tensor, labels, ks, progress=None) -> ModelViews:
    """Every view of the file, computed with the functions the explorer calls live. ``progress(what)`` is called
    before each step."""
    step = progress or (lambda what: None)
    step("latent means")
    mu, sd = latent.latent_means(model, images)
    mu, sd = mu.numpy(), sd.numpy()
    accuracy = latent.knn_accuracy(mu, labels)
    grid = quadrature.global_grid(model)
    curve_of, log_px_of = {}, {}
    for n in SUBSET_SIZES:
        step(f"L_K and quadrature for the first {n} images")
        curve_of[n] = subset_curve(model, images, n, ks)
        log_px_of[n] = subset_log_px(model, images, n, grid)
    return ModelViews(weights_digest(model), mu, sd, accuracy, tuple(ks), curve_of, log_px_of)


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def save_model_views(path: Path | str, views: ModelViews) -> None:
    curves_meta = {str(n): {"ks": c.ks, "mean": c.mean, "spread": c.spread, "blocks": c.blocks,
                            "n_images": c.n_images, "n_samples": c.n_samples} for n, c in views.subset_curves.items()}
    meta = {"digest": views.digest, "knn_accuracy": views.knn_accuracy, "ks": list(views.ks),
            "subset_curves": curves_meta, "subset_log_px": {str(n): v for n, v in views.subset_log_px.items()},
            "subset_protocol": {"samples": SUBSET_SAMPLES, "seed": SUBSET_SEED}}
    _atomic_savez(Path(path), meta=np.array(json.dumps(meta)), latent_mu=views.latent_mu, latent_sd=views.latent_sd)


def load_model_views(path: Path | str, model: VAE, ks) -> ModelViews | None:
    """The shipped views of ``model`` when the file exists and was made from these weights, for this K list and this
    subset protocol; None otherwise (the caller computes live)."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        if (meta.get("digest") != weights_digest(model) or meta.get("ks") != list(ks)
                or meta.get("subset_protocol") != {"samples": SUBSET_SAMPLES, "seed": SUBSET_SEED}):
            return None
        mu, sd = f["latent_mu"], f["latent_sd"]
    subset_curves = {int(n): BoundCurve(**c) for n, c in meta["subset_curves"].items()}
    log_px = {int(n): tuple(v) for n, v in meta["subset_log_px"].items()}
    return ModelViews(meta["digest"], mu, sd, float(meta["knn_accuracy"]), tuple(meta["ks"]), subset_curves, log_px)


# ------------------------------------------------------------------------------------------------
# Toy fits


def toy_fit_keys(seeds=TOY_SEEDS) -> list[tuple[str, int, int]]:
    """(target, K, seed) of every fit the toy page shows at these seeds: every target, by the ELBO and by L_K for
    every K of toy.K_CHOICES."""
    return [(target, k, seed) for seed in seeds for target in toy.TARGETS for k in toy.K_CHOICES]


def compute_toy_fits(keys, progress=None) -> list[toy.GaussianFit]:
    """The fits named by ``keys`` ((target, K, seed), as from ``toy_fit_keys``)."""
    fits = []
    for target, k, seed in keys:
        if progress is not None:
            progress(f"{target}, K = {k}, seed {seed}")
        fits.append(toy.fit_gaussian(target, k, seed=seed))
    return fits


def _toy_settings() -> dict:
    return {"steps": toy.STEPS, "draws_per_step": toy.DRAWS_PER_STEP, "min_sets": toy.MIN_SETS,
            "learning_rate": toy.LEARNING_RATE, "final_lr_factor": toy.FINAL_LR_FACTOR,
            "adam_betas": list(toy.ADAM_BETAS)}


def save_toy_fits(path: Path | str, fits: list[toy.GaussianFit]) -> None:
    rows = [{"target": f.target, "k": f.k, "seed": f.seed, "steps": f.steps, "sets": f.sets,
             "estimator": f.estimator, "mu": f.mu.tolist(), "sigma": f.sigma.tolist()} for f in fits]
    meta = {"settings": _toy_settings(), "fits": rows}
    _atomic_savez(Path(path), meta=np.array(json.dumps(meta)), traces=np.stack([f.trace for f in fits]))


def load_toy_fits(path: Path | str) -> dict[tuple[str, int, int], toy.GaussianFit]:
    """(target, K, seed) -> fit, from a file made with today's fitting settings; empty when absent or stale."""
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        traces = f["traces"]
    if meta.get("settings") != _toy_settings():
        return {}
    fits = {}
    for row, trace in zip(meta["fits"], traces, strict=True):
        fit = toy.GaussianFit(row["target"], row["k"], row["seed"], row["steps"], row["sets"], row["estimator"],
                              torch.tensor(row["mu"], dtype=torch.float32),
                              torch.tensor(row["sigma"], dtype=torch.float32), trace.astype(np.float32))
        fits[(fit.target, fit.k, fit.seed)] = fit
    return fits
