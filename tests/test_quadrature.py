"""Quadrature log p(x) (quadrature.py) as the ground truth: against importance sampling at very large k, against the
k = 5000 estimate, on posteriors with several modes (against a broad-proposal IS estimate, and against a window
around q's mean that misses them), under refinement of the global grid, and on extreme images.

Models: a small VAE trained in-process on binarized sklearn digits, and (marked slow) copies of the shipped MNIST
checkpoints vae-k1 and iwae-k50 with images of the shipped binarized test set.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from posterior_setup import (
    Setup,
    _covering,
    _gen,
    _load_mnist,
    _memo,
    far_mode_model,
)

from iwae import quadrature as quad
from iwae import testset
from iwae.bounds import sample_log_weights
from iwae.checkpoints import load_checkpoint
from iwae.model import VAE

# --- helpers --------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _quadrature(s: Setup, i: int) -> quad.Quadrature:
    key = ("quadrature", i)
    if key not in s.cache:
        s.cache[key] = quad.refine(s.model, s.grid, s.x[i], quad.coarse_log_joint(s.grid, s.x[i][None])[0])
    return s.cache[key]


def _is_estimate(model: VAE, x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IS estimate of log p(x) from k draws of q, and its standard error by the delta method (sd of the weights over
    their mean, / sqrt(k)), for images x (B, D).  -> (B,), (B,)"""
    log_w = sample_log_weights(model, x, k, _gen(seed)).double()
    return _log_mean_exp_and_se(log_w)


def _log_mean_exp_and_se(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = log_w.shape[1]
    w = torch.exp(log_w - log_w.max(1, keepdim=True).values)
    return torch.logsumexp(log_w, 1) - math.log(k), w.std(1) / w.mean(1) / math.sqrt(k)


def _log_likelihood(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for images x (B, D) at points z (P, 2), straight from the decoder.  -> (B, P)"""
    logits = model.decode_logits(z)
    return x @ logits.T - F.softplus(logits).sum(-1)


def _prior_is(model: VAE, x: torch.Tensor, n: int, seed: int, chunk: int = 20_000):
    """A broad-proposal IS estimate: n draws from the prior N(0, I), shared by the images (weight = p(x|z)); its
    delta-method standard error from running sums of w and w^2.  -> (B,), (B,)"""
    gen = _gen(seed)
    log_s1 = torch.full((len(x),), -math.inf, dtype=torch.float64)
    log_s2 = log_s1.clone()
    for start in range(0, n, chunk):
        z = torch.randn(min(chunk, n - start), 2, generator=gen)
        ll = _log_likelihood(model, x, z).double()
        log_s1 = torch.logaddexp(log_s1, torch.logsumexp(ll, 1))
        log_s2 = torch.logaddexp(log_s2, torch.logsumexp(2 * ll, 1))
    log_px = log_s1 - math.log(n)
    rel_var = torch.exp(log_s2 - math.log(n) - 2 * log_px) - 1  # E[w^2] / E[w]^2 - 1
    return log_px, rel_var.clamp(min=0).sqrt() / math.sqrt(n)


def _window_log_px(model: VAE, x: torch.Tensor, n: int = 200, width: float = 4.0) -> float:
    """The wrong quadrature: a midpoint grid over q's mean +- 4 sd only, for one image x (D,)."""
    mu, logvar = model.encode(x[None])
    lo, hi = mu[0] - width * torch.exp(0.5 * logvar[0]), mu[0] + width * torch.exp(0.5 * logvar[0])
    h = (hi - lo) / n
    axes = [lo[d] + h[d] * (torch.arange(n) + 0.5) for d in range(2)]
    z = torch.cartesian_prod(*axes)
    log_joint = _log_likelihood(model, x[None], z)[0].double() - 0.5 * (z.double() ** 2).sum(-1) - math.log(2 * math.pi)
    return (torch.logsumexp(log_joint, 0) + torch.log(h[0] * h[1]).double()).item()


# --- against importance sampling --------------------------------------------------------------------------------------


def test_quadrature_matches_importance_sampling_at_k_100000(subject):
    """Where q covers p (first 3 digits images / first MNIST image with ESS >= 1% of 10,000 draws), IS with k =
    100,000 draws from q agrees with quadrature within 0.05 nats (on MNIST: or 4 standard errors of the IS estimate
    if larger; IS at 1e5 was seen 0.08 above the quadrature on vae-k1 image 0), plus the quadrature's error
    estimate."""
    images = _covering(subject, 3 if subject.name == "digits" else 1)
    log_px_is, se = _is_estimate(subject.model, subject.x[images], 100_000, seed=1)
    for j, i in enumerate(images):
        q = _quadrature(subject, i)
        tol = max(0.05, 4 * se[j].item()) + q.error_estimate
        assert abs(q.log_px - log_px_is[j].item()) < tol, (
            f"{subject.name} image {i}: quadrature {q.log_px:.4f}, IS(1e5) {log_px_is[j]:.4f} +- {se[j]:.4f}"
        )


def test_quadrature_never_below_k5000_estimate(subject):
    """On the first 30 (digits) or 20 (MNIST) test images, all of them, quadrature log p(x) is not below the k = 5000
    IS estimate beyond 4 of its standard errors plus the quadrature's error estimate (IS from q is unbiased for
    p(x), so its log sits below log p(x) on average; heavy-tailed weights make it overshoot now and then: on 200
    images of each MNIST model 3 of 400 estimates were 3-3.5 delta-method standard errors above, none 4). On MNIST
    the same check shows the k = 5000 estimate falling far below on some images (the gap is asserted in
    test_multimodal_posteriors_need_the_global_search)."""
    n = 30 if subject.name == "digits" else 20
    log_px_is, se = _is_estimate(subject.model, subject.x[:n], 5000, seed=2)
    for i in range(n):
        q = _quadrature(subject, i)
        assert q.log_px >= log_px_is[i].item() - 4 * se[i].item() - q.error_estimate - 0.01, (
            f"{subject.name} image {i}: quadrature {q.log_px:.4f} < IS(5000) {log_px_is[i]:.4f} +- {se[i]:.4f}"
        )


@pytest.mark.slow
def test_multimodal_posteriors_need_the_global_search(tmp_path_factory, request):
    """vae-k1: the first 3 test images (file order, among the first 200) where quadrature exceeds the k = 5000 IS
    estimate by more than 1 nat, i.e. where q misses posterior mass. There, quadrature is not below a broad IS
    estimate (200,000 draws from the prior N(0, I), shared by the images) beyond 3 of its standard errors, while a
    quadrature over a window of q's mean +- 4 sd only is clearly lower (by more than 0.5 nats beyond those 3
    standard errors): the grid must search the whole plane."""
    s = _memo(request, "vae-k1", lambda: _load_mnist("vae-k1", tmp_path_factory.mktemp("ckpt")))
    found = []
    for start in range(0, 200, 25):
        chunk = torch.arange(start, min(start + 25, len(s.x)))
        log_px_is, _ = _is_estimate(s.model, s.x[chunk], 5000, seed=3)
        found += [int(i) for j, i in enumerate(chunk) if _quadrature(s, int(i)).log_px - log_px_is[j].item() > 1.0]
        if len(found) >= 3:
            break
    assert len(found) >= 3, f"only {found} among the first 200 test images have a gap > 1 nat"
    found = found[:3]
    broad, se = _prior_is(s.model, s.x[found], 200_000, seed=4)
    for j, i in enumerate(found):
        q = _quadrature(s, i)
        window = _window_log_px(s.model, s.x[i])
        floor = broad[j].item() - 3 * se[j].item()
        assert q.log_px >= floor - q.error_estimate - 0.01, (
            f"image {i}: quadrature {q.log_px:.3f} below prior-IS {broad[j]:.3f} +- {se[j]:.3f}"
        )
        assert window < floor - 0.5, (
            f"image {i}: window quadrature {window:.3f}, prior-IS {broad[j]:.3f} +- {se[j]:.3f}"
        )


# --- refinement and extremes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["digits", pytest.param("vae-k1", marks=pytest.mark.slow)], indirect=True)
def test_quadrature_converged_under_a_finer_global_grid(subject):
    """Halving the global grid's spacing (and refining from there) moves log p(x) by less than the error estimate +
    0.01 nats, on the first 5 test images: the answer has stopped moving."""
    fine = quad.global_grid(subject.model, spacing=quad.COARSE_SPACING / 2)
    x = subject.x[:5]
    coarse_joint = quad.coarse_log_joint(fine, x)
    for i in range(5):
        q = _quadrature(subject, i)
        q_fine = quad.refine(subject.model, fine, x[i], coarse_joint[i])
        assert abs(q_fine.log_px - q.log_px) < q.error_estimate + 0.01, (subject.name, i, q.log_px, q_fine.log_px)


@pytest.mark.parametrize("pixel", [0.0, 1.0], ids=["all-black", "all-white"])
def test_quadrature_on_extreme_images(subject, pixel):
    """All-black / all-white: finite log p(x) < 0 and error estimate, log_px_batch equal to refine, and not below the
    k = 5000 IS estimate beyond 4 standard errors plus the error estimate."""
    x = torch.full((1, subject.x.shape[1]), pixel)
    q = quad.refine(subject.model, subject.grid, x[0], quad.coarse_log_joint(subject.grid, x)[0])
    assert math.isfinite(q.log_px) and q.log_px < 0 and math.isfinite(q.error_estimate) and q.error_estimate >= 0
    assert q.outside_nats <= quad.OUTSIDE_NATS_TARGET, (q.half_width, q.outside_nats)
    assert torch.isfinite(q.log_joint).all()
    log_px, err = quad.log_px_batch(subject.model, subject.grid, x)
    assert log_px[0].item() == pytest.approx(q.log_px, abs=1e-9) and err[0].item() == pytest.approx(q.error_estimate)
    log_px_is, se = _is_estimate(subject.model, x, 5000, seed=5)
    assert q.log_px >= log_px_is[0].item() - 4 * se[0].item() - q.error_estimate - 0.01


def test_quadrature_region_grows_to_a_mode_outside_the_old_square(monkeypatch):
    """A decoder built so that log p(x|z) of an all-ones image jumps by ~120 nats at z_2 = 7: the posterior sits
    beyond z_2 = 7, outside [-6, 6]^2. With the region fixed at [-6, 6]^2 the answer is far too low (and the bound
    on the mass outside says so); the growing region matches the exact value (a 1-D integral, since the decoder
    ignores z_1) within its error estimate, and its outside bound is below the target."""
    model = far_mode_model()
    x = torch.ones(16)
    z2 = torch.linspace(-40, 40, 800_001, dtype=torch.float64)
    z = torch.stack([torch.zeros_like(z2), z2], -1)
    logits = model.double().decode_logits(z)
    exact = torch.logsumexp(x.double() @ logits.T - F.softplus(logits).sum(-1) - 0.5 * z2**2, 0).item() + math.log(
        (z2[1] - z2[0]).item() / math.sqrt(2 * math.pi))
    model.float()

    grid = quad.global_grid(model)
    j = quad.coarse_log_joint(grid, x[None])[0]
    grown = quad.refine(model, grid, x, j)
    assert grown.half_width > 7.5
    assert grown.outside_nats <= quad.OUTSIDE_NATS_TARGET
    assert abs(grown.log_px - exact) <= grown.error_estimate + 1e-3, (grown.log_px, exact, grown.error_estimate)

    monkeypatch.setattr(quad, "GROWTH", (quad.HALF_WIDTH,))  # the old fixed region
    fixed = quad.refine(model, grid, x, j)
    assert fixed.half_width == quad.HALF_WIDTH
    assert fixed.log_px < exact - 5, (fixed.log_px, exact)
    assert fixed.outside_nats > 1.0  # the bound knows the answer is incomplete


@pytest.mark.parametrize("subject", ["digits", pytest.param("iwae-k50", marks=pytest.mark.slow)], indirect=True)
def test_error_estimate_bounds_the_error_of_a_much_finer_pass(subject):
    """On the first 8 test images, a pass with a 4x finer global grid and 2x finer refinement (16-64x more points)
    differs from the quadrature by no more than its error estimate (+ 1e-4 nats of float32 rounding): the estimate
    is never below the real error."""
    fine_grid = quad.global_grid(subject.model, spacing=quad.COARSE_SPACING / 4)
    x = subject.x[:8]
    joint = quad.coarse_log_joint(fine_grid, x)
    for i in range(len(x)):
        q = _quadrature(subject, i)
        reference = quad.refine(subject.model, fine_grid, x[i], joint[i], oversample=2)
        assert abs(q.log_px - reference.log_px) <= q.error_estimate + 1e-4, (
            subject.name, i, q.log_px, reference.log_px, q.error_estimate)


@pytest.mark.slow
def test_a_narrow_peak_across_a_cell_edge_is_integrated_in_both_cells(monkeypatch):
    """Shipped iwae-k50, test image 6172: its posterior peak (near z = (0.008, 0.104)) is narrower than the coarse
    spacing and lies 0.008 from a cell edge, so half of it falls in the neighbouring cell, whose centre, corners and
    curvature all miss it. With every cell kept at least half as fine as its neighbours the quadrature agrees with a
    3x finer global grid within its error estimate; without that rule it was 0.086 nats low, far beyond its
    estimate (3.9e-3), so the estimate could not see the miss."""
    model = load_checkpoint(ROOT / "checkpoints" / "iwae-k50.safetensors").model
    x = testset.load()[0][6172]
    grid, fine = quad.global_grid(model), quad.global_grid(model, spacing=quad.COARSE_SPACING / 3)
    reference = quad.refine(model, fine, x, quad.coarse_log_joint(fine, x[None])[0])
    j = quad.coarse_log_joint(grid, x[None])[0]
    balanced = quad.refine(model, grid, x, j)
    assert abs(balanced.log_px - reference.log_px) <= balanced.error_estimate + reference.error_estimate + 1e-3
    monkeypatch.setattr(quad, "_balanced", lambda s: s)
    unbalanced = quad.refine(model, grid, x, j)
    assert reference.log_px - unbalanced.log_px > 0.05 > unbalanced.error_estimate


@pytest.mark.slow
def test_cells_stay_balanced_through_the_resolution_passes(monkeypatch):
    """Shipped iwae-k50, test image 8072: the resolution passes refine three of the four cells around its peak to
    16 x 16 while the fourth, holding a third of the mass, stays at 4 x 4, where the two rules agree by chance (the
    midpoint 1e-3 of p(x) from the trapezoid, 3.8e-3 from the truth). Kept balanced after every pass, the quadrature
    agrees with a deeper reference (3x finer global grid, 2x finer subdivision, 16x smaller target) within its
    error estimate; unbalanced it was 4e-3 nats low under an estimate of 2e-3."""
    model = load_checkpoint(ROOT / "checkpoints" / "iwae-k50.safetensors").model
    x = testset.load()[0][8072]
    grid, fine = quad.global_grid(model), quad.global_grid(model, spacing=quad.COARSE_SPACING / 3)
    reference = quad.refine(model, fine, x, quad.coarse_log_joint(fine, x[None])[0], oversample=2)
    j = quad.coarse_log_joint(grid, x[None])[0]
    balanced = quad.refine(model, grid, x, j)
    assert abs(balanced.log_px - reference.log_px) <= balanced.error_estimate
    monkeypatch.setattr(quad._Cells, "balance", lambda self: None)
    unbalanced = quad.refine(model, grid, x, j)
    assert reference.log_px - unbalanced.log_px > 3e-3 > unbalanced.error_estimate + reference.error_estimate


@pytest.mark.slow
def test_the_error_estimate_allows_for_cancellation_between_cells(monkeypatch):
    """Shipped iwae-k50, test image 8998: the cells' signed midpoint - trapezoid differences cancel (their absolute
    values add up to 39 times their sum), so |sum| alone was 12% below the real error measured against a deeper
    reference. With the allowance for cancellation the estimate covers that error."""
    model = load_checkpoint(ROOT / "checkpoints" / "iwae-k50.safetensors").model
    x = testset.load()[0][8998]
    grid, fine = quad.global_grid(model), quad.global_grid(model, spacing=quad.COARSE_SPACING / 3)
    reference = quad.refine(model, fine, x, quad.coarse_log_joint(fine, x[None])[0], oversample=2)
    j = quad.coarse_log_joint(grid, x[None])[0]
    q = quad.refine(model, grid, x, j)
    error = abs(q.log_px - reference.log_px)
    assert q.error_estimate >= error + reference.error_estimate
    monkeypatch.setattr(quad, "CANCELLATION_ALLOWANCE", 0.0)
    without = quad.refine(model, grid, x, j)
    assert without.error_estimate < error - reference.error_estimate
