"""The VAE/IWAE network (Burda et al. 2016, one stochastic layer) with a 2-D latent.

Only the model: no I/O, no training. Objectives live in ``bounds.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import decoding

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class ModelConfig:
    input_dim: int = 784  # pixels per image (784 for MNIST, 64 for sklearn digits)
    hidden_dim: int = 200  # width of both hidden layers, in encoder and decoder
    latent_dim: int = 2  # dimension of z; 2 makes p(z|x) computable on a grid

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        values = {k: d[k] for k in ("input_dim", "hidden_dim", "latent_dim")}
        for key, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        return cls(**values)


class LogWeights(NamedTuple):
    log_w: torch.Tensor  # (B, K) log p(x|z) + log p(z) - log q(z|x)
    z: torch.Tensor  # (B, K, L) samples from q(z|x)
    mu: torch.Tensor  # (B, L)
    logvar: torch.Tensor  # (B, L)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z**2).sum(-1)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = x . f - sum softplus(f) for binary x, summed over pixels.

    x (B, D) against logits (B, K, D) -> (B, K). The dot product is a batched matrix product, so x is
    never expanded K times (about 3x faster than binary_cross_entropy_with_logits on an expanded x).
    """
    dot = torch.bmm(logits, x.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return dot - F.softplus(logits).sum(-1)


class VAE(nn.Module):
    """Encoder D-200-200-(2 means, 2 log-variances), decoder 2-200-200-D Bernoulli logits, tanh."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        h, d, latent = config.hidden_dim, config.input_dim, config.latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 2 * latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, d)
        )

    def init_output_bias(self, train_mean: torch.Tensor) -> None:
        """Decoder output bias = logit of the training mean: the model starts at the pixel marginals."""
        p = train_mean.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(x)  # (B, 2L)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (..., D)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) for x (B, D) and z (B, K, L): returns (B, K).

        Equal to ``bernoulli_log_likelihood(x, self.decode_logits(z)) + log p(z)``, with the x . logits term
        computed from the last hidden layer: x . (W h + b) = (W^T x) . h + x . b, a product over the 200 hidden
        units instead of the 784 pixels, whose backward pass needs no (B, K, D) outer product (a training step
        7% faster). Where no gradient can flow (evaluation, the explorer's frozen models) ``decoding.log_likelihood``
        computes the same in cache-sized blocks without holding the GIL."""
        needs_grad = z.requires_grad or any(p.requires_grad for p in self.decoder.parameters())
        if not (torch.is_grad_enabled() and needs_grad):
            return decoding.log_likelihood(self.decoder, x, z) + standard_normal_log_density(z)
        out = self.decoder[-1]
        hidden = self.decoder[:-1](z)  # (B, K, H)
        logits = out(hidden)  # (B, K, D)
        dot = torch.bmm(hidden, (x @ out.weight).unsqueeze(-1)).squeeze(-1) + (x @ out.bias).unsqueeze(-1)
        return dot - F.softplus(logits).sum(-1) + standard_normal_log_density(z)

    def log_weights(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        stop_q_params: bool = False,
    ) -> LogWeights:
        """K reparameterized samples per image and their log importance weights.

        The encoder runs once per image; only the K latent samples are expanded.
        With ``stop_q_params`` the density log q(z|x) is evaluated with its mean and variance detached
        (z itself keeps its path to the encoder), as DReG needs.
        """
        mu, logvar = self.encode(x)  # (B, L) each
        eps = torch.randn(
            (x.shape[0], k, mu.shape[-1]), generator=generator, device=x.device, dtype=x.dtype
        )  # (B, K, L)
        std = torch.exp(0.5 * logvar)
        z = mu.unsqueeze(1) + std.unsqueeze(1) * eps  # (B, K, L)
        if stop_q_params:
            log_q = gaussian_log_density(z, mu.detach().unsqueeze(1), logvar.detach().unsqueeze(1))
        else:
            # Equal to gaussian_log_density(z, mu, logvar), computed from eps.
            log_q = -0.5 * (LOG_2PI + logvar.unsqueeze(1) + eps**2).sum(-1)  # (B, K)
        log_w = self.log_joint(x, z) - log_q
        return LogWeights(log_w, z, mu, logvar)
