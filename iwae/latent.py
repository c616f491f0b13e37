"""The latent space as a whole: encoder means of a data set, decoded images and the decoded manifold."""

from __future__ import annotations

import numpy as np
import torch

from .model import VAE


@torch.no_grad()
def latent_means(model: VAE, x: torch.Tensor, batch: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations of q(z|x) for every image.  (N, D) -> (N, 2), (N, 2)"""
    mus, sds = [], []
    for chunk in x.split(batch):
        mu, logvar = model.encode(chunk)
        mus.append(mu)
        sds.append(torch.exp(0.5 * logvar))
    return torch.cat(mus), torch.cat(sds)


@torch.no_grad()
def decode_means(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Bernoulli means sigmoid(f(z)) for any batch of latents.  (..., 2) -> (..., D)"""
    return torch.sigmoid(model.decode_logits(z))


@torch.no_grad()
def decoded_manifold(
    model: VAE, n: int, x_range: tuple[float, float], y_range: tuple[float, float], side: int
) -> torch.Tensor:
    """The classic picture: decoded means on an n x n grid of z over a window, tiled into one image.

    Row r of tiles has z_2 decreasing from the top (y_range[1]) so the picture reads like a plot.
    -> (n * side, n * side)
    """
    xs = torch.linspace(x_range[0], x_range[1], n)
    ys = torch.linspace(y_range[1], y_range[0], n)
    z = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # (n, n, 2): [row, col] -> (x, y)
    images = decode_means(model, z.reshape(-1, 2)).reshape(n, n, side, side)
    return images.permute(0, 2, 1, 3).reshape(n * side, n * side)


KNN_NEIGHBOURS = 5
KNN_TRAIN = 5000


def knn_accuracy(mu, labels, n_train: int = KNN_TRAIN, k: int = KNN_NEIGHBOURS) -> float:
    """How well a latent space separates the digits: a k-nearest-neighbour classifier (scikit-learn,
    k = 5) fitted on the first ``n_train`` latent means, accuracy on the rest."""
    from sklearn.neighbors import KNeighborsClassifier

    mu, labels = np.asarray(mu, dtype=np.float64), np.asarray(labels).astype(int)
    if not 0 < n_train < len(mu):
        raise ValueError(f"n_train must be between 1 and {len(mu) - 1}, got {n_train}")
    clf = KNeighborsClassifier(n_neighbors=k).fit(mu[:n_train], labels[:n_train])
    return float(clf.score(mu[n_train:], labels[n_train:]))
