"""Shared setup of the posterior tests (test_posterior, test_quadrature, test_sir, test_curves): a small VAE trained
in-process on binarized sklearn digits, copies of the shipped MNIST checkpoints, and cached grids and pools.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from iwae import posterior as post
from iwae import quadrature as quad
from iwae import testset
from iwae.bounds import training_loss
from iwae.checkpoints import load_checkpoint
from iwae.data import binarize, load_digits
from iwae.model import VAE, ModelConfig

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


def train_small_model(objective: str, k: int, steps: int, minibatches: str) -> VAE:
    """The tests' one trainer: a VAE (784 -> 64 inputs) on binarized sklearn digits, Adam (lr 3e-3, eps 1e-4),
    minibatches of 100 binarized afresh, fixed seeds; frozen in eval mode. ``minibatches``: "epochs" (a new
    permutation every epoch) or "random" (100 indices drawn with replacement each step)."""
    torch.manual_seed(0)
    train = load_digits("train").images
    model = VAE(ModelConfig(input_dim=64))
    model.init_output_bias(train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-4)
    gen = _gen(0)
    per_epoch = len(train) // 100
    for step in range(steps):
        if minibatches == "epochs":
            if step % per_epoch == 0:
                perm = torch.randperm(len(train), generator=gen)
            idx = perm[(step % per_epoch) * 100 : (step % per_epoch + 1) * 100]
        elif minibatches == "random":
            idx = torch.randint(len(train), (100,), generator=gen)
        else:
            raise ValueError(minibatches)
        loss, _ = training_loss(model, binarize(train[idx], gen), objective, k, "standard", gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def _train_small() -> Setup:
    model = train_small_model("vae", 1, SMALL_TRAIN_STEPS, "random")
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


def far_mode_model() -> VAE:
    """A decoder built so that log p(x|z) of an all-ones 16-pixel image jumps by ~120 nats at z_2 = 7 and ignores
    z_1: the posterior of that image sits beyond z_2 = 7, outside [-6, 6]^2."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_dim=16, hidden_dim=4))
    with torch.no_grad():
        for layer in (model.decoder[0], model.decoder[2], model.decoder[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.decoder[0].weight[0, 1], model.decoder[0].bias[0] = 4.0, -28.0  # tanh(4 (z_2 - 7))
        model.decoder[2].weight[0, 0] = 1.0
        model.decoder[4].weight[:, 0] = 10.0
    return model
