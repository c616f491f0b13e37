"""Sampling-importance-resampling from q_IW (Burda et al. 2016 / Cremer et al. 2017, Algorithm 1).

Draw z_1..z_K ~ q(z|x), normalize the weights, pick j ~ Categorical(w~), return z_j.
- independent (default): each of the R draws has its own K fresh proposals;
- shared (faster): one batch of K proposals and R indices drawn WITH replacement; every draw is
  q_IW-distributed, but the R draws are not independent. (Without replacement would be wrong.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import VAE

MAX_DECODER_ROWS = 131_072  # proposals per log_weights call (decoded in cache-sized blocks): 16 x 5,000 in one


@dataclass
class SIRDraws:
    z: torch.Tensor  # (R, 2) the resampled latents
    index: torch.Tensor  # (R,) which proposal each draw picked
    proposals: torch.Tensor  # (R, K, 2) independent, or (1, K, 2) shared
    weights: torch.Tensor  # (R, K) or (1, K) normalized importance weights
    ess: torch.Tensor  # (R,) or (1,) effective sample size 1 / sum w~^2 of each proposal batch
    independent: bool = True  # False when the R draws share proposals


@torch.no_grad()
def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    return 1.0 / (weights**2).sum(-1)


@torch.no_grad()
def sir_sample(
    model: VAE,
    x: torch.Tensor,
    k: int,
    n_draws: int,
    generator: torch.Generator | None = None,
    shared: bool = False,
) -> SIRDraws:
    """R = n_draws draws from q_IW(z|x) at K for one image x (D,)."""
    if k < 1 or n_draws < 1:
        raise ValueError(f"K and the number of draws must be at least 1 (got K={k}, R={n_draws})")
    batches = 1 if shared else n_draws
    per_chunk = max(1, MAX_DECODER_ROWS // k)  # proposal batches per decoder pass: bounded memory at any K
    chunks = [model.log_weights(x.expand(min(per_chunk, batches - start), -1), k, generator)
              for start in range(0, batches, per_chunk)]
    proposals = torch.cat([c.z for c in chunks])  # (b, K, 2)
    weights = torch.softmax(torch.cat([c.log_w for c in chunks]).double(), dim=-1)  # (b, K)
    if shared:
        index = torch.multinomial(weights[0], n_draws, replacement=True, generator=generator)  # (R,)
        z = proposals[0, index]
    else:
        index = torch.multinomial(weights, 1, generator=generator)[:, 0]  # (R,)
        z = proposals[torch.arange(n_draws), index]
    return SIRDraws(z=z, index=index, proposals=proposals, weights=weights, ess=effective_sample_size(weights),
                    independent=not shared)


def independent_from_pool(k: int, n_draws: int, pool_size: int) -> bool:
    """Whether R = n_draws draws at K from a pool of ``pool_size`` can use disjoint K-sets (independent draws)."""
    return n_draws * k <= pool_size


@torch.no_grad()
def sir_from_pool(pool_z: torch.Tensor, pool_log_w: torch.Tensor, k: int, n_draws: int,
                  generator: torch.Generator | None = None) -> SIRDraws:
    """R draws from q_IW at K reusing precomputed draws from q (no decoder call).

    Each draw resamples from K distinct pool members, so each is exactly q_IW-distributed. When
    R * K <= pool size the K-sets are disjoint and the draws independent; otherwise the sets are random
    windows of one permutation and the draws are dependent (``independent`` is False).
    """
    size = len(pool_log_w)
    if not 1 <= k <= size or n_draws < 1:
        raise ValueError(f"need 1 <= K <= pool size ({size}) and R >= 1, got K={k}, R={n_draws}")
    order = torch.randperm(size, generator=generator)
    independent = independent_from_pool(k, n_draws, size)
    if independent:
        idx = order[: n_draws * k].reshape(n_draws, k)
    else:
        starts = torch.randint(0, size, (n_draws, 1), generator=generator)
        idx = order[(starts + torch.arange(k)) % size]  # (R, K)
    weights = torch.softmax(pool_log_w.double()[idx], dim=-1)
    index = torch.multinomial(weights, 1, generator=generator)[:, 0]
    proposals = pool_z[idx]  # (R, K, 2)
    return SIRDraws(z=proposals[torch.arange(n_draws), index], index=index, proposals=proposals,
                    weights=weights, ess=effective_sample_size(weights), independent=independent)


@torch.no_grad()
def q_samples(model: VAE, x: torch.Tensor, n_draws: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain draws from q(z|x) (the K = 1 case of SIR).  -> (R, 2)"""
    mu, logvar = model.encode(x[None])
    eps = torch.randn((n_draws, mu.shape[-1]), generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps
