"""Shared fixtures. ``import torch`` first: importing it once here makes later imports (AppTest runs) cheap."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from iwae.bounds import training_loss  # noqa: E402
from iwae.data import binarize, load_digits  # noqa: E402
from iwae.model import VAE, ModelConfig  # noqa: E402

# One thread: this machine has 2 cores shared with long training jobs, and two threads contending with them make small
# models ~5-50x slower. Also makes every in-process run bit-for-bit reproducible. Override with IWAE_TEST_THREADS.
TEST_THREADS = int(os.environ.get("IWAE_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _test_threads():
    """AppTest runs the app in this process, and the app sets torch's thread count: restore it for the next test."""
    yield
    torch.set_num_threads(TEST_THREADS)

# The MNIST files: $IWAE_DATA_DIR, else ../shared/data/mnist beside the repository (as on CI).
MNIST_DIR = Path(os.environ.get("IWAE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
DIGITS_TRAIN_STEPS = 300


@pytest.fixture(scope="session")
def digits_train() -> torch.Tensor:
    """scikit-learn digits training images, grey levels in [0, 1], (1500, 64)."""
    return load_digits("train").images


@pytest.fixture(scope="session")
def digits_test_binary() -> torch.Tensor:
    """The 297 digits test images, binarized once with a fixed seed, (297, 64)."""
    return torch.bernoulli(load_digits("test").images, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="session")
def trained_digits_model(digits_train) -> VAE:
    """A small IWAE (k=5) on digits, trained in-process for a few hundred Adam steps; frozen, eval mode.

    Deterministic: fixed seeds for the weights, the minibatches, the binarization and the samples.
    """
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_dim=64))
    model.init_output_bias(digits_train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-4)
    gen = torch.Generator().manual_seed(0)
    n = len(digits_train)
    for step in range(DIGITS_TRAIN_STEPS):
        if step % (n // 100) == 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[(step % (n // 100)) * 100 : (step % (n // 100) + 1) * 100]
        x = binarize(digits_train[idx], gen)
        loss, _ = training_loss(model, x, "iwae", 5, "standard", gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# The posterior tests' shared fixtures (a small trained digits model; copies of the shipped checkpoints).
from posterior_setup import small, subject  # noqa: E402, F401
