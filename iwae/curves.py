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
    ks = [k for k in ks if k <= n_samples]
    log_w = sample_log_weights(model, x, n_samples, generator).double()  # (B, N)
    means, spreads, blocks = [], [], []
    for k in ks:
        b = n_samples // k
        l_k = torch.logsumexp(log_w[:, : b * k].reshape(len(x), b, k), dim=-1) - math.log(k)  # (B, b)
        per_block = l_k.mean(0)  # (b,) image-averaged L_K of each block
        means.append(per_block.mean().item())
        spreads.append(per_block.std().item() if b > 1 else 0.0)
        blocks.append(b)
    return BoundCurve(ks, means, spreads, blocks, len(x), n_samples)
