"""log p(x|z) of the decoder without gradients: many latent points in one call that runs in blocks and never
holds the GIL.

The explorer decodes tens of thousands of points per view (SIR at K = 5000: 16 x 5,000 per model; a pool of 20,000
draws; a 128 x 128 window grid), in server threads beside other sessions' Python. Two things make that slow:
- one (rows, 784) logit block per torch call: at 16,384 rows it is 50 MB, and the softplus and the sum stream it
  from memory; at 2,048 rows (6 MB) they read it from cache;
- a torch call releases the GIL and must take it back: in Python, a loop of small blocks waits for the GIL at every
  op while other threads run Python. bench/gil_contention.py, 4 decoding tasks beside 4 Python threads: 5.17 s in
  Python blocks of 2,048, 3.43 s in Python blocks of 16,384, 2.46 s here
  (bench/results/gil-contention-2026-12-03-decoding-kernel.txt).
So the block loop is a TorchScript function: the whole loop is one call, run in C++ with the GIL released.
``torch.jit.script`` is deprecated in favour of ``torch.compile``, whose compiled code is still driven from Python
(so it holds the GIL between kernels) and needs a C++ compiler at run time; torch is pinned (requirements.txt).

The architecture is VAE's decoder (Linear-Tanh-Linear-Tanh-Linear, Bernoulli logits): ``VAE.log_joint`` calls this
when no gradient is needed, and tests/test_decoding.py checks it against the autograd path.
"""

import functools
import warnings

import torch
import torch.nn.functional as F

BLOCK_ROWS = 2048  # latent points per block: a (2048, 784) float32 logit block is 6 MB


def _tanh(a: torch.Tensor) -> torch.Tensor:
    """tanh(a) = 2 sigmoid(2a) - 1, overwriting a: torch's float32 sigmoid is several times faster than its tanh here,
    and the kernel 7-14% faster for it (bench/decoding_speed.py: 80,000 points 549 against 635 ms). It differs from
    torch.tanh by at most 1.8e-7 on [-10, 10]; the kernel's largest error against float64 stays about 1e-4 nats."""
    return torch.sigmoid(a.mul_(2)).mul_(2).sub_(1)


def _log_likelihood_rows(
    z: torch.Tensor,
    image: torch.Tensor,
    xw: torch.Tensor,
    xb: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    w3: torch.Tensor,
    b3: torch.Tensor,
    rows: int,
) -> torch.Tensor:
    """log p(x_image(n) | z_n) for points z (N, L); image (N,) indexes the rows of xw = x W3 (B, H) and xb = x . b3
    (B,): the x . logits term from the last hidden layer, as in VAE.log_joint."""
    n = z.shape[0]
    out = torch.empty(n, dtype=z.dtype)
    start = 0
    while start < n:
        stop = min(start + rows, n)
        h = _tanh(F.linear(z[start:stop], w1, b1))
        h = _tanh(F.linear(h, w2, b2))
        logits = F.linear(h, w3, b3)
        i = image[start:stop]
        out[start:stop] = (h * xw[i]).sum(1) + xb[i] - F.softplus(logits).sum(1)
        start = stop
    return out


@functools.cache
def _scripted():
    with warnings.catch_warnings():  # the deprecation notice, see the module docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(_log_likelihood_rows)


@torch.no_grad()
def log_likelihood(decoder: torch.nn.Sequential, x: torch.Tensor, z: torch.Tensor,
                   rows: int = BLOCK_ROWS, scripted: bool = True) -> torch.Tensor:
    """log p(x|z) = x . f(z) - sum softplus(f(z)) for binary images x (B, D) and latent points z (B, K, L), with f the
    decoder (VAE.decoder).  -> (B, K). ``scripted=False`` runs the same loop as plain Python (bench/gil_contention.py
    compares the two)."""
    first, second, last = decoder[0], decoder[2], decoder[4]
    b, k, dim = z.shape
    flat = z.reshape(b * k, dim).contiguous()
    image = torch.arange(b).repeat_interleave(k)
    xw, xb = x @ last.weight, x @ last.bias
    loop = _scripted() if scripted else _log_likelihood_rows
    out = loop(flat, image, xw.contiguous(), xb.contiguous(), first.weight, first.bias, second.weight,
               second.bias, last.weight, last.bias, rows)
    return out.reshape(b, k)
