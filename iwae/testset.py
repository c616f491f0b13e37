"""The fixed binarized MNIST test set shipped with the app (bit-packed), so the app needs no MNIST files.

Protocol: each grey level of the 10,000 standard test images is one Bernoulli draw with seed
``data.TEST_BINARIZATION_SEED`` (torch generator, in file order). ``scripts/make_test_set.py``
regenerates the file from the MNIST files and checks ``PACKED_SHA256``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from . import data

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "mnist-test-binarized.npz"
PACKED_SHA256 = "16a6b488c0d7de83e9ab80bd1ad8f4821b3efa85e9731d4367544c1a32995425"


class TestSetError(RuntimeError):
    """The shipped test-set file is missing or does not match its recorded hash."""


def build(data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Binarize the MNIST test set with the fixed seed.  -> images uint8 (N, 784) in {0,1}, labels (N,)"""
    grey = data.load_mnist("test", data_dir)
    images = data.binarize_fixed(grey.images).to(torch.uint8).numpy()
    return images, grey.labels.numpy().astype(np.uint8)


def packed_digest(packed: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(packed.tobytes() + labels.tobytes()).hexdigest()


def save(images: np.ndarray, labels: np.ndarray, path: Path = DEFAULT_PATH) -> str:
    packed = np.packbits(images.astype(np.uint8), axis=1)  # (N, 98)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, packed=packed, labels=labels, seed=np.array(data.TEST_BINARIZATION_SEED))
    Path(path).write_bytes(buffer.getvalue())
    return packed_digest(packed, labels)


def load(path: Path = DEFAULT_PATH, expected_sha256: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> images float32 (N, 784) in {0, 1}, labels int64 (N,)"""
    images, labels = load_bits(path, expected_sha256)
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels)


def load_bits(path: Path = DEFAULT_PATH, expected_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> images uint8 (N, 784) in {0, 1}, labels int64 (N,): a quarter of the float images' memory, and no 31 MB
    float copy to fill (60-70 ms on a fresh process)."""
    path = Path(path)
    if not path.is_file():
        raise TestSetError(f"{path} is missing: run `python scripts/make_test_set.py` (needs the MNIST files)")
    try:
        with np.load(path, allow_pickle=False) as f:
            packed, labels = f["packed"], f["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise TestSetError(f"{path} is not a valid test-set file: {exc}") from None
    expected = expected_sha256 or PACKED_SHA256
    if expected and packed_digest(packed, labels) != expected:
        raise TestSetError(f"{path} does not match the recorded sha256 {expected}")
    return np.unpackbits(packed, axis=1)[:, :784], labels.astype(np.int64)
