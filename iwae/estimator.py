"""One draw of the IWAE estimator taken apart: K log weights, their normalized weights, the mean of the log (the
ELBO estimate) against the log of the mean (L_K), the log-sum-exp step that computes the latter without overflow, and
the effective sample size. Pure functions; every formula is the one of ``bounds`` / ``sir`` (one owner per formula),
here applied to one (K,) vector in float64 so that the identities between them hold to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .bounds import iwae_bound, normalized_weights, vae_k_bound
from .model import VAE
from .sir import effective_sample_size


@dataclass(frozen=True)
class EstimatorDraw:
    """The numbers of one draw of K log weights, all computed from ``log_w``."""

    log_w: np.ndarray  # (K,) log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), in draw order
    w_tilde: np.ndarray  # (K,) normalized weights w_k / sum_j w_j (sum to 1)
    elbo: float  # mean of log w: the "VAE-k" estimate of the ELBO (the mean of the log)
    l_k: float  # log of the mean of w: the IWAE estimate L_K (the log of the mean)
    shift: float  # max_k log w_k, the log-sum-exp shift
    log_sum_shifted: float  # log sum_k exp(log w_k - shift): between 0 and log K
    ess: float  # effective sample size 1 / sum w~^2, between 1 and K

    @property
    def k(self) -> int:
        return len(self.log_w)

    @property
    def log_k(self) -> float:
        return math.log(self.k)

    @property
    def order(self) -> np.ndarray:
        """Indices sorting the draws by log weight, largest first."""
        return np.argsort(-self.log_w, kind="stable")


def inspect_log_weights(log_w) -> EstimatorDraw:
    """Take one draw of K log weights (K,) apart, in float64. ``l_k = shift + log_sum_shifted - log K`` is the
    log-sum-exp step; ``bounds.iwae_bound`` computes the same number."""
    lw = torch.as_tensor(log_w, dtype=torch.float64).reshape(1, -1)  # (1, K)
    if lw.shape[-1] < 1 or not torch.isfinite(lw).all():
        raise ValueError("need at least one finite log weight")
    shift = lw.max()
    w_tilde = normalized_weights(lw)[0]
    return EstimatorDraw(
        log_w=lw[0].numpy().copy(),
        w_tilde=w_tilde.numpy().copy(),
        elbo=float(vae_k_bound(lw)[0]),
        l_k=float(iwae_bound(lw)[0]),
        shift=float(shift),
        log_sum_shifted=float(torch.log(torch.exp(lw - shift).sum())),
        ess=float(effective_sample_size(w_tilde)),
    )


@torch.no_grad()
def draw_log_weights(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> np.ndarray:
    """K log weights for one image x (D,): K draws from q(z|x) through ``VAE.log_weights``.  -> (K,) float64"""
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    return model.log_weights(x[None], k, generator).log_w[0].double().numpy()
