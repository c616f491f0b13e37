"""The bound curve L_K (curves.bound_curve, Burda et al. 2016 Theorem 1): every L_K below the quadrature log p(x)
beyond Monte Carlo error, rising with K, exact identities of the block estimator, and extreme inputs.

Models: a small VAE trained in-process on binarized sklearn digits, and (marked slow) copies of the shipped MNIST
checkpoints vae-k1 and iwae-k50 with images of the shipped binarized test set.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from iwae import posterior as post
from iwae import quadrature as quad
from iwae import testset
from iwae.bounds import sample_log_weights, training_loss
from iwae.checkpoints import load_checkpoint
from iwae.curves import DEFAULT_KS, bound_curve
from iwae.data import binarize, load_digits
from iwae.model import VAE, ModelConfig

# --- fixtures: the same block in test_posterior / test_quadrature / test_sir / test_curves ------------------------
# Memoized on the pytest session so the small model is trained once and each checkpoint copied and gridded once,
# whichever of the four files runs first.

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SMALL_TRAIN_STEPS = 300  # Adam steps of the VAE (k=1) objective, minibatch 100: ~3 s on a loaded core


@dataclass
class Setup:
    name: str
    model: VAE
    grid: quad.GlobalGrid
    x: torch.Tensor  # binarized test images
    cache: dict = field(default_factory=dict)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _memo(request, key: str, make):
    memo = request.config.__dict__.setdefault("_iwae_explorer_test_memo", {})
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _train_small() -> Setup:
    torch.manual_seed(0)
    train = load_digits("train").images
    model = VAE(ModelConfig(input_dim=64))
    model.init_output_bias(train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-4)
    gen = _gen(0)
    for _ in range(SMALL_TRAIN_STEPS):
        xb = binarize(train[torch.randint(len(train), (100,), generator=gen)], gen)
        loss, _ = training_loss(model, xb, "vae", 1, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    x = torch.bernoulli(load_digits("test").images, generator=_gen(7))
    return Setup("digits", model, quad.global_grid(model), x)


def _load_mnist(name: str, tmp_dir: Path) -> Setup:
    src = CHECKPOINTS / f"{name}.safetensors"
    if not src.is_file():
        pytest.skip(f"{src} is not there (train it first)")
    dst = tmp_dir / src.name  # training rewrites the shipped file every epoch: load a private copy
    shutil.copyfile(src, dst)
    model = load_checkpoint(dst).model
    x, _ = testset.load()
    return Setup(name, model, quad.global_grid(model), x[:200])


@pytest.fixture(scope="module")
def small(request) -> Setup:
    return _memo(request, "small", _train_small)


@pytest.fixture(
    scope="module",
    params=["digits", pytest.param("vae-k1", marks=pytest.mark.slow), pytest.param("iwae-k50", marks=pytest.mark.slow)],
)
def subject(request, tmp_path_factory) -> Setup:
    if request.param == "digits":
        return _memo(request, "small", _train_small)
    return _memo(request, request.param, lambda: _load_mnist(request.param, tmp_path_factory.mktemp("ckpt")))


COVER_ESS = 0.01  # "q covers p": the effective sample size of 10,000 draws from q is at least 1% of them


def _resolution(s: Setup) -> int:
    # digits posteriors are wide (sd 0.2-0.5): 64 points per side resolve them; MNIST ones need the app's 128
    return 64 if s.name == "digits" else post.RESOLUTION


def _grid(s: Setup, i: int) -> post.ImageGrid:
    key = ("grid", i)
    if key not in s.cache:
        s.cache[key] = post.image_grid(s.model, s.grid, s.x[i], _resolution(s))
    return s.cache[key]


def _pool(s: Setup, i: int) -> post.Pool:
    key = ("pool", i)
    if key not in s.cache:
        s.cache[key] = post.proposal_pool(s.model, s.x[i], post.POOL_SIZE, _gen(100 + i))
    return s.cache[key]


def _ess_fraction(pool: post.Pool) -> float:
    w = torch.softmax(pool.log_w.double(), 0)
    return 1.0 / (w**2).sum().item() / len(w)


def _covering(s: Setup, n: int) -> list[int]:
    """The first n test images (file order) where q covers p: ESS of 10,000 draws from q >= 1% of them.

    Why not TV(q, p) < 0.5: an IWAE's q is a broad proposal, so on iwae-k50 TV(q, p) is 0.86-1.0 on every one of
    the first 20 test images although q covers p (q_IW at K = 100 is within TV 0.07-0.2 of p there)."""
    found = []
    for i in range(len(s.x)):
        if _ess_fraction(_pool(s, i)) >= COVER_ESS:
            found.append(i)
            if len(found) == n:
                return found
    raise AssertionError(f"{s.name}: fewer than {n} images where q covers p")


# --- end of the shared block ------------------------------------------------------------------------------------

# --- helpers --------------------------------------------------------------------------------------------------------

N_SAMPLES = 20_000  # bound_curve's default; every K of DEFAULT_KS divides it


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
    curve = bound_curve(subject.model, x, DEFAULT_KS, N_SAMPLES, _gen(1))
    assert curve.ks == list(DEFAULT_KS) and curve.blocks == [N_SAMPLES // k for k in DEFAULT_KS]
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
