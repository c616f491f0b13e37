"""The checkpoint catalogue and the test set, loaded once and shared by every session.

- models: ``st.cache_resource`` keyed on the checkpoint's path and modification time, so a retrained checkpoint is
  reloaded; one shared object, never mutated;
- the test set: the same, keyed on the shipped file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
import torch

from iwae import catalog, comparison, image_ref, testset
from iwae.catalog import Catalog
from iwae.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from iwae.image_ref import ImageRef

IMAGE_DIM = 784  # the explorer shows 28 x 28 MNIST images
LATENT_DIM = 2  # and needs a 2-D latent (quadrature, pictures)


def load_for_explorer(path: Path | str) -> Checkpoint:
    """load_checkpoint plus the explorer's own requirement: a 2-D latent over 784-pixel images."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.model.config
    if cfg.input_dim != IMAGE_DIM:
        raise CheckpointError(
            f"{path}: models {cfg.input_dim}-pixel images; the explorer shows 28 x 28 MNIST ({IMAGE_DIM} pixels)"
        )
    if cfg.latent_dim != LATENT_DIM:
        raise CheckpointError(
            f"{path}: has a {cfg.latent_dim}-D latent; the explorer needs a 2-D latent (quadrature and pictures)"
        )
    return ckpt


def try_load(path: Path | str) -> catalog.Loaded:
    """One checkpoint as the explorer loads it: (checkpoint, None) or (None, why it cannot be used)."""
    return catalog.try_load(path, load_for_explorer)


@st.cache_resource(max_entries=16, show_spinner=False)
def _load(path: str, mtime_ns: int) -> catalog.Loaded:
    """One checkpoint, loaded once per (path, mtime)."""
    return try_load(path)


def load_catalog(directory: Path | str | None = None) -> Catalog:
    """Every checkpoint in the checkpoint folder (``$IWAE_CHECKPOINT_DIR`` or checkpoints/), each cached."""
    return catalog.load_catalog(directory or catalog.checkpoint_dir(),
                                lambda path: _load(str(path), catalog.file_stamp(path)))


def model_key(ckpt: Checkpoint) -> str:
    """Small cache key naming exactly these weights: path@mtime."""
    return f"{ckpt.path}@{catalog.file_stamp(ckpt.path)}"


def checkpoint_path(key: str) -> Path:
    """The checkpoint file a model key names."""
    return Path(key.rsplit("@", 1)[0])


@st.cache_data(max_entries=4, show_spinner=False)
def _seed_noise(directory: str, stamps: tuple[int, ...]) -> dict:
    return comparison.zoo_seed_noise(Path(directory))


def seed_noise(directory: Path) -> dict:
    """The zoo's seed noise from the per-image files in ``directory`` and its seeds folder; cached until they change."""
    return _seed_noise(str(directory), tuple(catalog.file_stamp(f) for f in comparison.seed_noise_files(directory)))


@st.cache_resource(show_spinner=False)
def _test_set(path: str, mtime_ns: int):
    images, labels = testset.load_bits(path)
    return torch.from_numpy(images), labels


def test_set() -> tuple[torch.Tensor, np.ndarray]:
    """The fixed binarized MNIST test set: images uint8 (10000, 784) in {0, 1} (``.float()`` where a model reads
    them), labels numpy (10000,). Raises testset.TestSetError when missing."""
    return _test_set(str(testset.DEFAULT_PATH), catalog.file_stamp(testset.DEFAULT_PATH))


def image_x(ref: ImageRef) -> torch.Tensor:
    """The binarized image (784,) a reference names: a test image or the user's own digit."""
    if image_ref.is_own_digit(ref):
        return torch.from_numpy(image_ref.decode_digit(ref))
    images, _ = test_set()
    return images[ref].float()
