"""The gradient-free decoding path (iwae.decoding) against the plain formula and the autograd path of VAE.log_joint."""

from __future__ import annotations

import pytest
import torch

from iwae import decoding
from iwae.model import VAE, ModelConfig, bernoulli_log_likelihood, standard_normal_log_density


def _model(dtype=torch.float64) -> VAE:
    torch.manual_seed(3)
    return VAE(ModelConfig(input_dim=64, hidden_dim=24)).to(dtype)


def _data(b: int, k: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.bernoulli(torch.full((b, 64), 0.3, dtype=dtype), generator=gen)
    z = 2 * torch.randn(b, k, 2, generator=gen, dtype=dtype)
    return x, z


@pytest.mark.parametrize("rows", [1, 7, 64, decoding.BLOCK_ROWS])
def test_blocks_give_the_bernoulli_log_likelihood_of_every_point(rows):
    # 3 images x 50 points: with 7 rows a block holds points of two images, the case an index slip would break
    model = _model()
    x, z = _data(3, 50)
    want = bernoulli_log_likelihood(x, model.decode_logits(z))
    got = decoding.log_likelihood(model.decoder, x, z, rows=rows)
    assert got.shape == (3, 50)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # each image's own pixels are used: swapping the images changes the values
    swapped = decoding.log_likelihood(model.decoder, x.flip(0), z, rows=rows)
    assert not torch.allclose(swapped, got)


def test_log_joint_takes_the_fast_path_only_where_no_gradient_can_flow():
    model = _model()
    x, z = _data(2, 3000)  # 6,000 points: several blocks
    with torch.no_grad():
        fast = model.log_joint(x, z)
    z_leaf = z.clone().requires_grad_(True)
    slow = model.log_joint(x, z_leaf)
    assert slow.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-9)
    want = bernoulli_log_likelihood(x, model.decode_logits(z)) + standard_normal_log_density(z)
    torch.testing.assert_close(fast, want.detach(), rtol=0, atol=1e-9)
    # a frozen model needs no gradient even with autograd on: the fast path, the same numbers
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = model.log_joint(x, z)
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, fast, rtol=0, atol=0)


def test_float32_blocks_agree_with_the_unblocked_formula_to_rounding():
    model = _model(torch.float32)
    x, z = _data(1, 5000, torch.float32)
    with torch.no_grad():
        want = bernoulli_log_likelihood(x.double(), model.double().decode_logits(z.double()))
        got = decoding.log_likelihood(model.float().decoder, x, z)
    assert (got.double() - want).abs().max().item() < 1e-3
