"""Shared fixtures. ``import torch`` first: importing it once here makes later imports (AppTest runs) cheap."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

# No background warm-up of the default views (explorer/warm.py) in the app runs of the tests: its thread would compute
# into the shared caches while tests count computations; tests/test_app.py runs it in the foreground.
os.environ.setdefault("IWAE_WARM_DEFAULTS", "0")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from iwae.data import load_digits  # noqa: E402
from iwae.model import VAE  # noqa: E402

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
    """A small IWAE (k=5) on digits, trained in-process for a few hundred Adam steps (each image once per epoch);
    frozen, eval mode. Deterministic: fixed seeds for the weights, the minibatches, the binarization and the samples.
    """
    return train_small_model("iwae", 5, DIGITS_TRAIN_STEPS, "epochs")


# The posterior tests' shared fixtures (a small trained digits model; copies of the shipped checkpoints) and the one
# trainer of small test models.
from posterior_setup import small, subject, train_small_model  # noqa: E402, F401
