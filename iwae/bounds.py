"""Bounds on log p(x) and the training losses, all reducers over one (B, K) log-weight tensor."""

from __future__ import annotations

import math

import torch

from .model import VAE

OBJECTIVES = ("vae", "iwae")
ESTIMATORS = ("standard", "dreg")


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """L_K per image: logsumexp_k log w_k - log K.  (B, K) -> (B,)"""
    return torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])


def vae_k_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The "VAE with k samples" estimate of the ELBO: the mean of K log weights.  (B, K) -> (B,)"""
    return log_w.mean(dim=-1)


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    """The ELBO from its first sample (a one-sample estimate; equal to L_1 on the same sample)."""
    return log_w[..., 0]


def normalized_weights(log_w: torch.Tensor) -> torch.Tensor:
    return torch.softmax(log_w, dim=-1)


def training_loss(
    model: VAE,
    x: torch.Tensor,
    objective: str,
    k: int,
    estimator: str = "standard",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A surrogate loss whose gradient is the chosen estimator, and the bound it estimates (B,).

    - vae: the negative mean of K log weights (the ELBO's gradient, averaged over K samples);
    - iwae, standard: -L_K; autograd through logsumexp gives sum_k w~_k grad log w_k, w~ constant;
    - iwae, dreg (Tucker et al. 2019): decoder gradient as standard; encoder gradient
      sum_k w~_k^2 d log w_k/d z_k dz_k/dphi with q's parameters stopped inside log q.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if objective == "vae":
        if estimator != "standard":
            raise ValueError("DReG applies to the iwae objective only")
        lw = model.log_weights(x, k, generator)
        return -vae_k_bound(lw.log_w).mean(), vae_k_bound(lw.log_w.detach())
    if estimator == "standard":
        lw = model.log_weights(x, k, generator)
        bound = iwae_bound(lw.log_w)
        return -bound.mean(), bound.detach()
    lw = model.log_weights(x, k, generator, stop_q_params=True)
    w_tilde = normalized_weights(lw.log_w.detach())  # (B, K), constants
    if lw.z.requires_grad:
        # z's gradient arrives scaled by w~_k (from the surrogate below); scaling again gives w~_k^2.
        lw.z.register_hook(lambda grad: grad * w_tilde.unsqueeze(-1))
    surrogate = (w_tilde * lw.log_w).sum(-1)  # decoder gradient: sum_k w~_k grad log w_k
    return -surrogate.mean(), iwae_bound(lw.log_w.detach())


@torch.no_grad()
def sample_log_weights(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None, max_rows: int = 50_000
) -> torch.Tensor:
    """(B, K) log weights without gradients, computed in chunks of samples (bounded memory)."""
    return torch.cat(list(iter_log_weight_chunks(model, x, k, generator, max_rows)), dim=1)


@torch.no_grad()
def iter_log_weight_chunks(model: VAE, x: torch.Tensor, k: int, generator=None, max_rows: int = 50_000):
    """Yield (B, k_chunk) log weights, k in all, with at most ~max_rows decoder rows at a time."""
    chunk = max(1, max_rows // max(len(x), 1))
    for start in range(0, k, chunk):
        yield model.log_weights(x, min(chunk, k - start), generator).log_w


@torch.no_grad()
def importance_log_px(
    model: VAE, x: torch.Tensor, k: int = 5000, generator: torch.Generator | None = None, max_rows: int = 50_000
) -> torch.Tensor:
    """The IS estimate of log p(x) with k draws from q (the paper's test NLL uses k = 5000), chunked:
    a running logsumexp, so memory is O(max_rows) whatever k.  (B, D) -> (B,)"""
    running = torch.full((len(x),), -math.inf, dtype=torch.float64)
    for log_w in iter_log_weight_chunks(model, x, k, generator, max_rows):
        running = torch.logaddexp(running, torch.logsumexp(log_w.double(), dim=1))
    return running - math.log(k)
