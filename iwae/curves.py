"""L_K as a function of K, with its spread over repeated draws, for one image or a set of images."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .bounds import sample_log_weights
from .model import VAE


@dataclass
class BoundCurve:
    ks: list[int]
    mean: list[float]  # mean over images of E[L_K], estimated from disjoint blocks of K draws
    spread: list[float]  # sd over blocks of the image-averaged L_K (a repeat's spread); 0 with one block
    blocks: list[int]  # disjoint blocks of K draws behind each point
    n_images: int
    n_samples: int


@torch.no_grad()
def bound_curve(
    model: VAE, x: torch.Tensor, ks, n_samples: int = 20_000, generator: torch.Generator | None = None
) -> BoundCurve:
    """L_K for each K of ``ks`` (those up to n_samples) from disjoint blocks of one set of ``n_samples`` draws per
    image.  x: (B, D)"""
    return curve_from_log_weights(sample_log_weights(model, x, n_samples, generator), ks)


def curve_from_log_weights(log_w: torch.Tensor, ks) -> BoundCurve:
    """L_K for each K of ``ks`` (those up to N) from disjoint blocks of given log weights of N draws from q per image.
    log_w: (B, N)"""
    n_images, n_samples = log_w.shape
    ks = [k for k in ks if k <= n_samples]
    log_w = log_w.double()
    means, spreads, blocks = [], [], []
    for k in ks:
        b = n_samples // k
        l_k = torch.logsumexp(log_w[:, : b * k].reshape(n_images, b, k), dim=-1) - math.log(k)  # (B, b)
        per_block = l_k.mean(0)  # (b,) image-averaged L_K of each block
        means.append(per_block.mean().item())
        spreads.append(per_block.std().item() if b > 1 else 0.0)
        blocks.append(b)
    return BoundCurve(ks, means, spreads, blocks, n_images, n_samples)
