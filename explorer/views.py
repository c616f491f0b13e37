"""The cached computations behind the pages: pure functions of small keys around the core package.

- computed arrays: ``st.cache_data`` with small keys (model key = path@mtime, image reference, K, seed) and
  ``max_entries``; models are passed as ``_``-prefixed arguments, never hashed;
- shared read-only arrays (the global quadrature grid, the shipped views and toy fits): ``st.cache_resource``;
  never a plotly Figure, whose objects are not safe to read from two sessions' threads at once.
No mathematics here: every number comes from iwae.latent / posterior / sir / curves / quadrature / toy, every random
stream from ``iwae.rng.generator`` named by its purpose and keys.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from iwae import catalog, curves, evaluate, figures, image_ref, latent, posterior, precomputed, quadrature, sir, toy
from iwae.checkpoints import weights_digest
from iwae.image_ref import ImageRef
from iwae.rng import generator
from iwae.zoo import DEFAULT_MODELS, EXTRA_MODELS

from .data import checkpoint_path, image_x, test_set
from .state import K_CHOICES

N_SIR_OVERLAY = 100  # SIR draws overlaid on the posterior plots
N_Q_OVERLAY = 100
N_RESAMPLE = 16
SUBSET_CHOICES = precomputed.SUBSET_SIZES
DEFAULT_SUBSET = 50
TOY_PROGRESS_EVERY = 25  # Adam steps between progress-bar updates of a toy fit
DEFAULT_TOY_TARGET = "banana"
DEFAULT_TOY_K = 100  # when the sidebar's K is not one of toy.K_CHOICES
# The per-image caches hold a class: 30 students, each with two models and up to three images in view (the one
# shown, the one before it, another page's) need 180 entries. At 32, the students' image changes evicted each
# other's window grids and pools within the ten seconds between two K changes, and each K change computed them again
# (docs/benchmarks.md, "Night of 2026-12-03: the class's caches"). Full, they hold about 230 MB: per entry, the
# window grid 266 kB, the pool 241 kB, the fixed figure 183 kB, the posterior view 133 kB, the resampled images
# 101 kB, q_IW at one K 66 kB.
CLASS_ENTRIES = 192
PER_K_ENTRIES = 4 * CLASS_ENTRIES  # the views per image and K: a student moves K across its range


def toy_k_for(k: int) -> int:
    """The toy page's starting K: the sidebar's K where the toy offers it."""
    return k if k in toy.K_CHOICES else DEFAULT_TOY_K

# ------------------------------------------------------------------------------------------------
# Trained models (all pure functions of their small keys)


@st.cache_resource(max_entries=16, show_spinner=False)
def shipped(_model, key: str) -> precomputed.ModelViews | None:
    """The model's precomputed views (scripts/precompute_views.py) when they were made from these weights, else None:
    then each view below is computed live by the same function, with the same draws."""
    return precomputed.load_model_views(precomputed.views_path(checkpoint_path(key)), _model, K_CHOICES)


@st.cache_data(max_entries=16, show_spinner=False)
def latent_means(_model, key: str) -> tuple[np.ndarray, np.ndarray]:
    if (views := shipped(_model, key)) is not None:
        return views.latent_mu, views.latent_sd
    images, _ = test_set()
    mu, sd = latent.latent_means(_model, images.float())
    return mu.numpy(), sd.numpy()


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def image_mean(_model, key: str, ref: ImageRef) -> np.ndarray:
    """The encoder mean mu(x) (2,) of the chosen image (test or own)."""
    if not image_ref.is_own_digit(ref):
        return latent_means(_model, key)[0][ref]
    mu, _ = latent.latent_means(_model, image_x(ref)[None])
    return mu[0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def manifold(_model, key: str, n: int, x_range: tuple, y_range: tuple) -> np.ndarray:
    return latent.decoded_manifold(_model, n, x_range, y_range, side=28).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def decode(_model, key: str, z1: float, z2: float) -> np.ndarray:
    return latent.decode_means(_model, torch.tensor([[z1, z2]], dtype=torch.float32))[0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def knn_accuracy(_model, key: str) -> float:
    if (views := shipped(_model, key)) is not None:
        return views.knn_accuracy
    mu, _ = latent_means(_model, key)
    _, labels = test_set()
    return latent.knn_accuracy(mu, labels)


GLOBAL_GRIDS_KEPT = len(DEFAULT_MODELS + EXTRA_MODELS)  # the shipped models' (6): the warm-up builds all


@st.cache_resource(max_entries=GLOBAL_GRIDS_KEPT, show_spinner=False)
def global_grid(_model, key: str) -> quadrature.GlobalGrid:
    """~100 MB per model (the decoder's logits at 25,600 grid and 7,168 probe points), 0.3 s to build: shared by
    every image and session."""
    return quadrature.global_grid(_model)


def evaluated(_model, key: str) -> dict[str, np.ndarray] | None:
    """The per-image numbers of the model's evaluation (``python -m iwae.evaluate --per-image``) when they were
    computed from these weights, else None; read again when the file changes."""
    path = checkpoint_path(key)
    return _evaluated(_model, key, catalog.file_stamp(evaluate.per_image_path(path)))


@st.cache_resource(max_entries=16, show_spinner=False)
def _evaluated(_model, key: str, stamp: int) -> dict[str, np.ndarray] | None:
    return evaluate.load_per_image(checkpoint_path(key), weights_digest(_model))


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def image_log_px(_model, key: str, ref: ImageRef) -> tuple[float, float]:
    """Quadrature log p(x) of one image and its error estimate: the evaluation's numbers for a test image it covered
    (the same ``quadrature.refine``, so the results table's numbers), else computed here."""
    numbers = evaluated(_model, key)
    if numbers is not None and not image_ref.is_own_digit(ref) and ref < len(numbers["log_px_quadrature"]):
        return float(numbers["log_px_quadrature"][ref]), float(numbers["quadrature_error"][ref])
    q = quadrature.refine_image(_model, global_grid(_model, key), image_x(ref))
    return q.log_px, q.error_estimate


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def image_grid(_model, key: str, ref: ImageRef) -> posterior.ImageGrid:
    """The image's window grid, its log p(x) from ``image_log_px``: only the quadrature's first stage (the window)
    is computed here, 44 against 153 ms for the whole quadrature (iwae-k50, median of 25 test images,
    docs/benchmarks.md)."""
    return posterior.image_grid(_model, global_grid(_model, key), image_x(ref), log_px=image_log_px(_model, key, ref))


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def proposal_pool(_model, key: str, ref: ImageRef, seed: int) -> posterior.Pool:
    size = posterior.pool_size_for(max(K_CHOICES))
    return posterior.proposal_pool(_model, image_x(ref), size, generator(seed, "pool", ref))


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def posterior_view(_model, key: str, ref: ImageRef) -> dict:
    """Per image, independent of K: the window, log q and log p(z|x) images, TV and KL of q."""
    g = image_grid(_model, key, ref)
    return {
        "x_axis": g.x_axis.numpy(),
        "y_axis": g.y_axis.numpy(),
        "log_q": g.to_image(g.log_q).astype(np.float32),
        "log_p": g.to_image(g.log_posterior).astype(np.float32),
        "log_px": g.log_px,
        "log_px_error": g.log_px_error,
        "mu": g.mu.numpy(),
        "sigma": g.sigma.numpy(),
        "mass_q": g.mass(g.log_q),
        "mass_p": g.mass(g.log_posterior),
        "tv_q": posterior.total_variation(g.log_posterior, g.log_q, g.log_area),
        "kl_q": posterior.kl_divergence(g.log_posterior, g.log_q, g.log_area),
        "q_resolved": posterior.q_resolved(g),
    }


@st.cache_data(max_entries=PER_K_ENTRIES, show_spinner=False)
def qiw_view(_model, key: str, ref: ImageRef, seed: int, k: int) -> dict:
    """Per K: log q_IW on the image's window (shared pool and grid), its integral, TV and KL to p."""
    g = image_grid(_model, key, ref)
    pool = proposal_pool(_model, key, ref, seed)
    log_qiw, others = posterior.log_q_iw_for_display(g, pool, k, generator(seed, "qiw", ref, k))
    return {
        "others": others,
        "log_qiw": g.to_image(log_qiw).astype(np.float32),
        "mass": g.mass(log_qiw),
        "tv": posterior.total_variation(g.log_posterior, log_qiw, g.log_area),
        "kl": posterior.kl_divergence(g.log_posterior, log_qiw, g.log_area),
    }


@st.cache_data(max_entries=PER_K_ENTRIES, show_spinner=False)
def sir_overlay(_model, key: str, ref: ImageRef, seed: int, k: int) -> dict:
    """SIR draws for the posterior overlay, resampled from the image's pool of q draws (no decoder call)."""
    pool = proposal_pool(_model, key, ref, seed)
    draws = sir.sir_from_pool(pool.z, pool.log_w, k, N_SIR_OVERLAY, generator(seed, "sir-overlay", ref, k))
    return {"z": draws.z.numpy(), "ess": float(draws.ess.double().mean()), "shared": not draws.independent}


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def q_overlay(_model, key: str, ref: ImageRef, seed: int) -> np.ndarray:
    return sir.q_samples(_model, image_x(ref), N_Q_OVERLAY, generator(seed, "q-overlay", ref)).numpy()


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def posterior_fixed_figure(_model, key: str, ref: ImageRef, seed: int) -> dict:
    """The (q | p) figure of the Posteriors page as a plain dict, built once per model, image and seed: a K change
    then builds only the K figure. A dict from st.cache_data, a copy per call: a plotly Figure object shared between
    sessions is not thread-safe (copying one while another session read it raised "Invalid property: Scatter
    'colorbar'" under load, bench/load_sessions.py)."""
    view = posterior_view(_model, key, ref)
    return figures.posterior_fixed_figure(view["x_axis"], view["y_axis"], view["log_q"], view["log_p"],
                                          q_draws=q_overlay(_model, key, ref, seed), mu=view["mu"],
                                          sigma=view["sigma"], q_resolved=view["q_resolved"]).to_dict()


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def image_curve(_model, key: str, ref: ImageRef, seed: int) -> curves.BoundCurve:
    """L_K for every K of the slider, for one image, from disjoint blocks of the image's pool of draws from q (the
    pool behind q_IW and the SIR overlay: no decoder pass of its own)."""
    return curves.curve_from_log_weights(proposal_pool(_model, key, ref, seed).log_w[None], K_CHOICES)


@st.cache_data(max_entries=8, show_spinner=False)
def subset_curve(_model, key: str, n_images: int) -> dict:
    """L_K averaged over the first n test images (fixed draws, precomputed.SUBSET_SEED), and their mean quadrature
    log p(x): shipped for the default models, computed here for others."""
    views = shipped(_model, key)
    if views is not None and n_images in views.subset_curves:
        curve, (log_px, max_error) = views.subset_curves[n_images], views.subset_log_px[n_images]
    else:
        images = test_set()[0][:n_images].float()
        curve = precomputed.subset_curve(_model, images, n_images, K_CHOICES)
        log_px, max_error = precomputed.subset_log_px(_model, images, n_images, global_grid(_model, key))
    return {"curve": curve, "log_px": log_px, "max_error": max_error, "seed": precomputed.SUBSET_SEED,
            "shipped": views is not None}


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def resample(_model, key: str, ref: ImageRef, seed: int, k: int, draw: int) -> dict:
    """Decoded means of N_RESAMPLE plain q draws and of N_RESAMPLE independent SIR draws at K."""
    x = image_x(ref)
    zq = sir.q_samples(_model, x, N_RESAMPLE, generator(seed, "resample-q", ref, draw))
    draws = sir.sir_sample(_model, x, k, N_RESAMPLE, generator(seed, "resample-sir", ref, k, draw))
    return {
        "q_images": latent.decode_means(_model, zq).numpy(),
        "sir_images": latent.decode_means(_model, draws.z).numpy(),
        "ess": float(draws.ess.double().mean()),
        "distinct": int(len(torch.unique(draws.z, dim=0))),
    }


# ------------------------------------------------------------------------------------------------
# Toy targets (no model)


@st.cache_resource(show_spinner=False)
def shipped_toy_fits() -> dict:
    """The toy fits shipped for seeds 0-9 (scripts/precompute_views.py); empty when absent or stale."""
    return precomputed.load_toy_fits(catalog.checkpoint_dir() / precomputed.TOY_FITS_FILE)


def toy_fit(target: str, k: int, seed: int) -> toy.GaussianFit:
    """q fitted by L_K (K = 1: the ELBO): the shipped fit (seeds 0-9), else fitted here."""
    return shipped_toy_fits().get((target, k, seed)) or _fit_live(target, k, seed)


@st.cache_data(max_entries=32, show_spinner=False)
def _fit_live(target: str, k: int, seed: int) -> toy.GaussianFit:
    """q fitted by L_K (K = 1: the ELBO). The progress bar is made in here, so a cache hit replays it
    ending empty (elements made outside a cached function cannot be updated from inside it)."""
    slot = st.empty()
    what = "the ELBO" if k == 1 else f"the IWAE bound L_K, K = {k}"
    label = toy.TARGETS[target].label.lower()
    bar = slot.progress(0.0, text=f"Fitting q to the {label} by {what}…")

    def on_step(step: int, total: int, bound: float) -> None:
        if step % TOY_PROGRESS_EVERY == 0 or step == total:
            bar.progress(step / total, text=f"Fitting q to the {label} by {what}: step {step:,} of {total:,}, "
                                            f"bound {bound:.3f}")

    fit = toy.fit_gaussian(target, k, seed=seed, on_step=on_step)
    slot.empty()
    return fit


def shipped_toy_result(target: str, k: int, seed: int):
    """``toy_result`` from the shipped fits, or None where a fit is not shipped (fitting live draws a progress bar,
    which the background warm-up cannot)."""
    fits = shipped_toy_fits()
    elbo, iwae = fits.get((target, 1, seed)), fits.get((target, k, seed))
    return None if elbo is None or iwae is None else toy_result(target, k, seed, elbo, iwae)


@st.cache_data(max_entries=32, show_spinner=False)
def toy_result(target: str, k: int, seed: int, _elbo_fit: toy.GaussianFit, _iwae_fit: toy.GaussianFit):
    """Densities, distances and bounds on the window; the fits are the cached ones for (target, K, seed)."""
    return toy.compare(target, k, seed, elbo_fit=_elbo_fit, iwae_fit=_iwae_fit)
