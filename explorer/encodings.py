"""The test set's encoder means behind the latent scatter, and what is read from them (the chosen image's mean, the
kNN accuracy): from the model's shipped views file when it belongs to the checkpoint's weights, without torch, so that
a fresh server's first run draws the scatter while torch is still to be imported; computed by the encoder otherwise
(the same function that made the file, ``iwae.latent.latent_means``)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from iwae import image_ref, views_file
from iwae.checkpoints import Checkpoint
from iwae.image_ref import ImageRef

from .caching import CLASS_ENTRIES
from .data import image_x, test_images, test_set
from .state import K_CHOICES
from .threads import torch_settings


def _shipped(ckpt: Checkpoint) -> views_file.ViewsFile | None:
    """The checkpoint's views file when current (the same check as ``explorer.views.shipped``)."""
    return views_file.read(views_file.views_path(ckpt.path), ckpt.digest, K_CHOICES)


@st.cache_data(max_entries=16, show_spinner=False)
def latent_means(_ckpt: Checkpoint, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and standard deviations (10000, 2) of the test images."""
    if (shipped := _shipped(_ckpt)) is not None:
        return shipped.latent_mu, shipped.latent_sd
    from iwae import latent

    torch_settings()
    mu, sd = latent.latent_means(_ckpt.model, test_images())
    return mu.numpy(), sd.numpy()


@st.cache_data(max_entries=CLASS_ENTRIES, show_spinner=False)
def image_mean(_ckpt: Checkpoint, key: str, ref: ImageRef) -> np.ndarray:
    """The encoder mean mu(x) (2,) of the chosen image (test or own)."""
    if not image_ref.is_own_digit(ref):
        return latent_means(_ckpt, key)[0][ref]
    from iwae import latent

    torch_settings()
    mu, _ = latent.latent_means(_ckpt.model, image_x(ref)[None])
    return mu[0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def knn_accuracy(_ckpt: Checkpoint, key: str) -> float:
    """5-nearest-neighbour accuracy of the digit labels from the latent means (``iwae.latent.knn_accuracy``)."""
    if (shipped := _shipped(_ckpt)) is not None:
        return float(shipped.meta["knn_accuracy"])
    from iwae import latent

    mu, _ = latent_means(_ckpt, key)
    _, labels = test_set()
    return latent.knn_accuracy(mu, labels)
