"""Datasets: MNIST from the standard IDX files (with a verified download) and scikit-learn's digits.

Binarization protocol (stated wherever a number is reported):
- training: dynamic binarization, a fresh Bernoulli draw of every image in every minibatch;
- test: binarized once with ``TEST_BINARIZATION_SEED`` so that numbers and pictures are reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "IWAE_DATA_DIR"
TEST_BINARIZATION_SEED = 1234
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# sha256 of the gzipped files, as published with the files (shared/data/mnist/SHA256SUMS).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DataError(RuntimeError):
    """A data file is missing, corrupt, or cannot be downloaded."""


@dataclass
class GreyDataset:
    """Grey levels in [0, 1], flattened: images (N, D) float32, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    side: int  # images are side x side


def default_data_dir() -> Path:
    """`IWAE_DATA_DIR` if set, else a per-user cache directory."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("iwae-explorer")) / "mnist"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(name: str, data_dir: Path, mirrors=None, timeout: float = 30.0) -> Path:
    """Download one MNIST file, verify its sha256, and move it into place atomically.

    ``mirrors``: base URLs tried in order (default: ``MIRRORS``, read at call time).
    A partial or corrupt download is deleted and never left at the final path.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    expected = MNIST_SHA256[name]
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / name
    errors = []
    for mirror in mirrors:
        url = mirror + name
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=data_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while block := response.read(1 << 20):
                    out.write(block)
            actual = sha256_of(tmp)
            if actual != expected:
                errors.append(f"{url}: sha256 {actual} does not match the expected {expected}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"Could not download {name}. Tried:\n  " + "\n  ".join(errors) + "\n"
        f"Offline? Put the four MNIST .gz files in a folder and pass --data-dir or set {DATA_DIR_ENV}."
    )


def ensure_file(name: str, data_dir: Path, download: bool = True, mirrors=None) -> Path:
    """Return a verified local copy of an MNIST file, downloading it when missing."""
    path = data_dir / name
    if path.exists():
        actual = sha256_of(path)
        if actual != MNIST_SHA256[name]:
            raise DataError(
                f"{path} is corrupt or partial: sha256 {actual} != expected {MNIST_SHA256[name]}. "
                "Delete it to download it again."
            )
        return path
    if not download:
        raise DataError(
            f"{path} is missing. Pass --data-dir or set {DATA_DIR_ENV} to a folder with the MNIST files."
        )
    return download_file(name, data_dir, mirrors=mirrors)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (unsigned bytes) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def load_mnist(split: str, data_dir: Path | str | None = None, download: bool = True) -> GreyDataset:
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    image_file, label_file = SPLIT_FILES[split]
    images = read_idx(ensure_file(image_file, data_dir, download))
    labels = read_idx(ensure_file(label_file, data_dir, download))
    return GreyDataset(
        images=torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
        side=28,
    )


def load_digits(split: str) -> GreyDataset:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0-16): a small, offline dataset for fast runs."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.data.astype(np.float32) / 16.0)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # A fixed split: the last 297 images are the test set.
    cut = 1500
    sl = slice(0, cut) if split == "train" else slice(cut, None)
    return GreyDataset(images=images[sl], labels=labels[sl], side=8)


def load_dataset(name: str, split: str, data_dir=None, download: bool = True) -> GreyDataset:
    if name == "mnist":
        return load_mnist(split, data_dir, download)
    if name == "digits":
        return load_digits(split)
    raise ValueError(f"unknown dataset {name!r}: choose 'mnist' or 'digits'")


def binarize(grey: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli draw per pixel with the grey level as probability."""
    return torch.bernoulli(grey, generator=generator)


def binarize_fixed(grey: torch.Tensor, seed: int = TEST_BINARIZATION_SEED) -> torch.Tensor:
    """The reproducible test-set binarization: one draw with a fixed seed."""
    return binarize(grey, torch.Generator().manual_seed(seed))
