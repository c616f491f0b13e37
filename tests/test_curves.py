"""The bound curve L_K (curves.bound_curve, Burda et al. 2016 Theorem 1): every L_K below the quadrature log p(x)
beyond Monte Carlo error, rising with K, exact identities of the block estimator, and extreme inputs.

Models: a small VAE trained in-process on binarized sklearn digits, and (marked slow) copies of the shipped MNIST
checkpoints vae-k1 and iwae-k50 with images of the shipped binarized test set.
"""

from __future__ import annotations

import math

import pytest
import torch
from posterior_setup import (
    Setup,
    _gen,
)

from explorer.state import K_CHOICES as KS  # the app's K slider
from iwae import quadrature as quad
from iwae.bounds import sample_log_weights
from iwae.curves import bound_curve

# --- helpers --------------------------------------------------------------------------------------------------------

N_SAMPLES = 20_000  # bound_curve's default; every K of KS divides it


def _log_px(s: Setup, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return quad.log_px_batch(s.model, s.grid, x)


def _se(curve, j: int) -> float:
    """Standard error of the mean of L_K over its blocks. With a single block (spread 0) there is no spread to use:
    take the sd of one block at the previous K, which is larger (L_K's spread falls with K)."""
    if curve.blocks[j] == 1:
        return curve.spread[j - 1]
    return curve.spread[j] / math.sqrt(curve.blocks[j])


# --- the curve ------------------------------------------------------------------------------------------------------


def test_bound_curve_below_log_px_and_rising(subject):
    """On the first 8 (digits) or 4 (MNIST) test images, all of them, with 20,000 draws per image:
    - every image-averaged L_K (K = 1 ... 5000) lies below the averaged quadrature log p(x) up to Monte Carlo error:
      mean - 3 spread / sqrt(blocks) < log p(x) + (largest quadrature error estimate + 0.01). (Not mean + 3 se: L_K
      tends to log p(x), so for large K a correct estimate sits within its standard error of log p(x), on either
      side; seen on digits, L_500 = log p(x) - 0.003 +- 0.007. Missing the - log K, say, puts L_K nats above.);
    - L_K rises with K: exactly (Jensen) from K to any multiple of K, since its blocks are unions of K-blocks of the
      same draws; between K's that do not divide (2 -> 5, 20 -> 50, ...) by no less than -3 combined standard errors;
      and from K = 1 to 5000 by more than 10 standard errors of L_1;
    - L_1 is exactly the mean of all 20,000 log weights (the same draws, regenerated from the seed)."""
    n = 8 if subject.name == "digits" else 4
    x = subject.x[:n]
    curve = bound_curve(subject.model, x, KS, N_SAMPLES, _gen(1))
    assert curve.ks == list(KS) and curve.blocks == [N_SAMPLES // k for k in KS]
    log_px, err = _log_px(subject, x)
    target = log_px.mean().item() + err.max().item() + 0.01
    for j, k in enumerate(curve.ks):
        assert math.isfinite(curve.mean[j]) and math.isfinite(curve.spread[j])
        assert curve.mean[j] - 3 * _se(curve, j) < target, (
            f"{subject.name}: L_{k} = {curve.mean[j]:.4f} +- {_se(curve, j):.4f} above log p(x) + tol = {target:.4f}"
        )
    for a, ka in enumerate(curve.ks):
        for b in range(a + 1, len(curve.ks)):
            kb = curve.ks[b]
            if kb % ka == 0:
                assert curve.mean[b] >= curve.mean[a] - 1e-9, (subject.name, ka, kb, curve.mean[a], curve.mean[b])
            elif b == a + 1:
                slack = 3 * math.hypot(_se(curve, a), _se(curve, b))
                assert curve.mean[b] > curve.mean[a] - slack, (subject.name, ka, kb, curve.mean[a], curve.mean[b])
    assert curve.mean[-1] - curve.mean[0] > 10 * _se(curve, 0), (subject.name, curve.mean)
    log_w = sample_log_weights(subject.model, x, N_SAMPLES, _gen(1)).double()
    assert curve.mean[0] == pytest.approx(log_w.mean().item(), abs=1e-9)


@pytest.mark.parametrize("subject", ["digits", pytest.param("vae-k1", marks=pytest.mark.slow)], indirect=True)
def test_bound_curve_at_k_100000_and_on_extreme_images(subject):
    """K up to 100,000 on a test image (100,000 draws: one block, spread 0), and K up to 1000 on all-black and
    all-white images (10,000 draws): every L_K finite, below the quadrature log p(x) up to Monte Carlo error, and
    non-decreasing along K = 1, 10, 100, ... (each K divides the next, so this holds exactly)."""
    d = subject.x.shape[1]
    cases = [
        (subject.x[0], (1, 10, 100, 1000, 10_000, 100_000), 100_000),
        (torch.zeros(d), (1, 10, 100, 1000), 10_000),
        (torch.ones(d), (1, 10, 100, 1000), 10_000),
    ]
    for row, (x, ks, n) in enumerate(cases):
        curve = bound_curve(subject.model, x[None], ks, n, _gen(row))
        assert curve.ks == list(ks) and curve.blocks == [n // k for k in ks]
        assert curve.blocks[-1] > 1 or curve.spread[-1] == 0.0
        log_px, err = _log_px(subject, x[None])
        for j in range(len(ks)):
            assert math.isfinite(curve.mean[j]) and math.isfinite(curve.spread[j])
            assert curve.mean[j] - 3 * _se(curve, j) < log_px.item() + err.item() + 0.01, (subject.name, row, ks[j])
        assert all(b >= a - 1e-9 for a, b in zip(curve.mean, curve.mean[1:], strict=False)), (subject.name, row, curve)
