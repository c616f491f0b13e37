"""Bounds and gradient estimators: the identities of Burda et al. (2016) and Tucker et al. (2019), checked exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iwae.bounds import elbo, iwae_bound, normalized_weights, training_loss, vae_k_bound
from iwae.model import VAE, ModelConfig, gaussian_log_density


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_model(seed: int = 0, dtype=torch.float64, hidden: int = 32) -> VAE:
    """A small untrained model (random weights), float64 so gradient identities hold to round-off."""
    torch.manual_seed(seed)
    model = VAE(ModelConfig(input_dim=64, hidden_dim=hidden)).to(dtype)
    with torch.no_grad():  # a wider encoder output so that q is not tiny and the weights vary
        model.encoder[-1].weight.mul_(3.0)
    return model


def _binary(batch: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.bernoulli(torch.full((batch, 64), 0.3, dtype=dtype), generator=_gen(seed))


def _grads(loss: torch.Tensor, params) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params, allow_unused=False))


def _allclose_all(a, b, rtol=1e-9, atol=1e-12) -> bool:
    return all(torch.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(a, b, strict=True))


# --- the reducers -------------------------------------------------------------------------------------------------


def test_l1_equals_elbo_exactly(trained_digits_model, digits_test_binary):
    lw = trained_digits_model.log_weights(digits_test_binary, 7, _gen(0)).log_w
    assert torch.equal(iwae_bound(lw[:, :1]), elbo(lw))
    assert torch.equal(vae_k_bound(lw[:, :1]), elbo(lw))
    extreme = torch.tensor([[-1e4], [3.5], [-0.25]])
    assert torch.equal(iwae_bound(extreme), extreme[:, 0])


def test_reducers_on_known_values():
    lw = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64))
    # L_K = log of the mean of the weights; VAE-k = mean of the log weights.
    assert torch.allclose(iwae_bound(lw), torch.log(torch.tensor([2.0, 2.0], dtype=torch.float64)), atol=1e-15)
    assert torch.allclose(vae_k_bound(lw), torch.tensor([0.5 * math.log(3.0), math.log(2.0)], dtype=torch.float64))
    raw = torch.randn(50, 20, generator=_gen(1), dtype=torch.float64) * 3
    assert torch.equal(vae_k_bound(raw), raw.mean(-1))
    assert torch.allclose(iwae_bound(raw), torch.log(torch.exp(raw).mean(-1)), rtol=1e-12)
    assert (iwae_bound(raw) >= vae_k_bound(raw)).all()  # Jensen: log mean exp >= mean
    const = torch.full((3, 9), -4.25)
    assert torch.allclose(iwae_bound(const), const[:, 0]) and torch.equal(vae_k_bound(const), const[:, 0])
    w = normalized_weights(raw)
    assert torch.allclose(w.sum(-1), torch.ones(50, dtype=torch.float64)) and (w > 0).all()
    assert torch.allclose(w, torch.exp(raw) / torch.exp(raw).sum(-1, keepdim=True), rtol=1e-12)


def test_logsumexp_is_finite_and_exact_far_below_zero():
    noise = torch.randn(8, 50, generator=_gen(2)) * 0.5
    for offset in (-1e4, -1e5):
        lw = offset + noise  # float32: exp(lw) underflows to 0, so exp-then-log would give -inf
        assert torch.exp(lw).max() == 0.0
        got = iwae_bound(lw)
        assert torch.isfinite(got).all()
        ref64 = offset + np.log(np.exp(noise.double().numpy()).mean(-1))  # exact reference in float64
        spacing = np.spacing(np.float32(abs(offset)))  # float32 resolution at this magnitude
        np.testing.assert_allclose(got.double().numpy(), ref64, atol=4 * spacing, rtol=0)
        assert (got > offset - 1).all() and (got < offset + 2).all()
        w = normalized_weights(lw)
        assert torch.isfinite(w).all() and torch.allclose(w.sum(-1), torch.ones(8))


def test_training_loss_is_finite_with_huge_negative_log_weights():
    """Nearly deterministic pixels (logits +-40) against the opposite image: log w around -1e3 .. -1e4."""
    model = _random_model(seed=3, dtype=torch.float32)
    with torch.no_grad():
        model.decoder[-1].bias.fill_(40.0)
    x = torch.zeros(4, 64)  # every pixel costs ~40 nats: log w ~ -2560
    for objective, estimator in (("iwae", "standard"), ("iwae", "dreg"), ("vae", "standard")):
        model.zero_grad()
        loss, bound = training_loss(model, x, objective, 20, estimator, _gen(0))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(bound).all() and (bound < -2000).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --- the model's log weights --------------------------------------------------------------------------------------


def test_log_weights_match_the_densities_and_run_the_encoder_once():
    model = _random_model(seed=4)
    x = _binary(6, seed=4)
    seen = []
    hook = model.encoder.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    lw = model.log_weights(x, 11, _gen(5))
    hook.remove()
    assert seen == [(6, 64)]  # once per image, not once per sample
    assert lw.log_w.shape == (6, 11) and lw.z.shape == (6, 11, 2)
    # log w = log p(x|z) + log p(z) - log q(z|x), recomputed from scratch.
    logits = model.decoder(lw.z)
    log_px_z = (x.unsqueeze(1) * F.logsigmoid(logits) + (1 - x.unsqueeze(1)) * F.logsigmoid(-logits)).sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(lw.z).sum(-1)
    q = torch.distributions.Normal(lw.mu.unsqueeze(1), torch.exp(0.5 * lw.logvar).unsqueeze(1))
    expected = log_px_z + log_pz - q.log_prob(lw.z).sum(-1)
    assert torch.allclose(lw.log_w, expected, rtol=1e-10, atol=1e-10)
    # Same generator seed -> same samples; stop_q_params changes gradients, not values.
    again = model.log_weights(x, 11, _gen(5), stop_q_params=True)
    assert torch.equal(again.z, lw.z)
    assert torch.allclose(again.log_w, lw.log_w, rtol=1e-12, atol=1e-10)
    assert not torch.equal(model.log_weights(x, 11, _gen(6)).z, lw.z)


# --- Theorem 1: L_1 <= L_5 <= L_50 <= log p(x) --------------------------------------------------------------------


def _mean_bound(model, x, k, draws, seed) -> torch.Tensor:
    """Per image, the mean of `draws` independent estimates of L_K.  (B,)"""
    gen = _gen(seed)
    with torch.no_grad():
        return torch.stack([iwae_bound(model.log_weights(x, k, gen).log_w) for _ in range(draws)]).mean(0)


def _log_px_quadrature(model, x, half_width=7.0, step=0.07) -> tuple[torch.Tensor, float]:
    """log p(x) by the rectangle rule on a grid over [-w, w]^2; also the largest posterior mass on the grid's rim."""
    ticks = torch.arange(-half_width, half_width + step / 2, step)
    zz = torch.cartesian_prod(ticks, ticks)  # (G, 2)
    with torch.no_grad():
        logits = model.decode_logits(zz)  # (G, D): the same for every image
        log_lik = x @ F.logsigmoid(logits).T + (1 - x) @ F.logsigmoid(-logits).T  # (B, G)
        log_joint = log_lik - 0.5 * (math.log(2 * math.pi) * 2 + (zz**2).sum(-1))
        log_px = torch.logsumexp(log_joint, dim=-1) + 2 * math.log(step)
        post = torch.softmax(log_joint, dim=-1)
        rim = (zz.abs() > half_width - 0.5).all(-1) | (zz.abs() > half_width - 0.5).any(-1)
        rim_mass = post[:, rim].sum(-1).max().item()
    return log_px, rim_mass


def test_bounds_increase_with_k_beyond_monte_carlo_error(trained_digits_model, digits_test_binary):
    model, x = trained_digits_model, digits_test_binary
    l1 = _mean_bound(model, x, 1, 40, seed=11)
    l5 = _mean_bound(model, x, 5, 40, seed=12)
    l50 = _mean_bound(model, x, 50, 8, seed=13)
    for lo, hi, name in ((l1, l5, "L1 -> L5"), (l5, l50, "L5 -> L50")):
        diff = hi - lo  # paired by image: the images' own spread cancels, the draws are independent
        se = diff.std().item() / math.sqrt(len(diff))
        # Theorem 1 says non-decreasing; for a non-degenerate q it strictly increases. Require the increase to be
        # more than 3 standard errors: a reducer that averages log weights (no gain with K) fails this.
        assert diff.mean().item() > 3 * se, (name, diff.mean().item(), se)
    # VAE-k has the ELBO's expectation for every K: no systematic gain.
    gen = _gen(14)
    with torch.no_grad():
        v1 = torch.stack([vae_k_bound(model.log_weights(x, 1, gen).log_w) for _ in range(40)]).mean(0)
        v50 = torch.stack([vae_k_bound(model.log_weights(x, 50, gen).log_w) for _ in range(4)]).mean(0)
    d = v50 - v1
    assert abs(d.mean().item()) < 4 * d.std().item() / math.sqrt(len(d))


def test_bounds_stay_below_log_px_from_quadrature(trained_digits_model, digits_test_binary):
    model, x = trained_digits_model, digits_test_binary[:60]
    log_px, rim_mass = _log_px_quadrature(model, x)
    assert rim_mass < 1e-6  # the grid covers the posterior mass
    coarse, _ = _log_px_quadrature(model, x, step=0.1)
    assert torch.allclose(coarse, log_px, atol=1e-3)  # and resolves it
    previous = None
    for k, draws in ((1, 20), (50, 4), (2000, 1)):
        gap = _mean_bound(model, x, k, draws, seed=20 + k) - log_px  # <= 0 in expectation
        se = gap.std().item() / math.sqrt(len(gap))
        assert gap.mean().item() < 3 * se + 1e-3, (k, gap.mean().item(), se)
        if previous is not None:
            assert gap.mean().item() > previous  # closer to log p(x) as K grows
        previous = gap.mean().item()
    assert previous > -0.1  # L_2000 is within 0.1 nats of log p(x) on average: L_K -> log p(x)


# --- gradients ----------------------------------------------------------------------------------------------------


def _per_sample_grads(log_w: torch.Tensor, params) -> list[list[torch.Tensor]]:
    """grad log w_bk for every (b, k), one backward pass each."""
    B, K = log_w.shape
    return [[list(torch.autograd.grad(log_w[b, k], params, retain_graph=True)) for k in range(K)] for b in range(B)]


def test_iwae_gradient_is_the_self_normalized_sum():
    model = _random_model(seed=5)
    params = list(model.parameters())
    x = _binary(3, seed=5)
    K = 6
    loss, _ = training_loss(model, x, "iwae", K, "standard", _gen(42))
    auto = _grads(loss, params)

    # Hand formula: -(1/B) sum_b sum_k w~_bk grad log w_bk, with w~ numbers (no gradient through them).
    lw = model.log_weights(x, K, _gen(42)).log_w
    w_tilde = torch.softmax(lw.detach(), dim=-1)
    assert w_tilde.max() < 0.99 and w_tilde.min() > 1e-6  # the weights are far from degenerate: a real test
    per = _per_sample_grads(lw, params)
    hand = [-sum(w_tilde[b, k] * per[b][k][i] for b in range(3) for k in range(K)) / 3 for i in range(len(params))]
    assert _allclose_all(auto, hand)

    # The well-known bug: forgetting to detach w~ adds sum_k grad(w~_k) log w_k. It must differ.
    lw = model.log_weights(x, K, _gen(42)).log_w
    wrong = _grads(-(torch.softmax(lw, dim=-1) * lw).sum(-1).mean(), params)
    assert not _allclose_all(auto, wrong, rtol=1e-3, atol=1e-6)
    rel = max(((a - w).norm() / a.norm()).item() for a, w in zip(auto, wrong, strict=True))
    assert rel > 1e-2


def test_vae_gradient_is_the_mean_log_weight_gradient():
    model = _random_model(seed=6)
    params = list(model.parameters())
    x = _binary(4, seed=6)
    loss, bound = training_loss(model, x, "vae", 5, "standard", _gen(1))
    lw = model.log_weights(x, 5, _gen(1)).log_w
    assert torch.allclose(bound, lw.detach().mean(-1))
    assert _allclose_all(_grads(loss, params), _grads(-lw.mean(), params))


def test_dreg_decoder_gradient_equals_standard_and_encoder_gradient_is_squared_weights():
    model = _random_model(seed=7)
    enc, dec = list(model.encoder.parameters()), list(model.decoder.parameters())
    x = _binary(4, seed=7)
    K = 8
    loss_std, bound_std = training_loss(model, x, "iwae", K, "standard", _gen(9))
    g_std = _grads(loss_std, enc + dec)
    loss_dreg, bound_dreg = training_loss(model, x, "iwae", K, "dreg", _gen(9))
    g_dreg = _grads(loss_dreg, enc + dec)
    assert torch.allclose(bound_std, bound_dreg, rtol=1e-12)  # same samples, same bound
    n_enc = len(enc)
    assert _allclose_all(g_dreg[n_enc:], g_std[n_enc:])  # decoder: identical estimator
    assert not _allclose_all(g_dreg[:n_enc], g_std[:n_enc], rtol=1e-3, atol=1e-8)  # encoder: a different one

    # Encoder gradient, computed independently of iwae.bounds and of log_weights(stop_q_params=...):
    #   -(1/B) sum_b sum_k w~_bk^2  d log w_bk / d z_bk  dz_bk / dphi,   q's mean and variance stopped in log q.
    mu, logvar = model.encode(x)
    eps = torch.randn((4, K, 2), generator=_gen(9), dtype=x.dtype)  # the same draws as log_weights makes
    z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
    z_leaf = z.detach().requires_grad_(True)
    log_w = model.log_joint(x, z_leaf) - gaussian_log_density(
        z_leaf, mu.detach().unsqueeze(1), logvar.detach().unsqueeze(1)
    )
    dlogw_dz = torch.autograd.grad(log_w.sum(), z_leaf)[0]  # (B, K, 2); log w_bk depends on z_bk only
    w_tilde = torch.softmax(log_w.detach(), dim=-1)
    assert w_tilde.max() < 0.99
    g_hand = torch.autograd.grad(z, enc, grad_outputs=-(w_tilde**2).unsqueeze(-1) * dlogw_dz / 4, retain_graph=True)
    assert _allclose_all(g_dreg[:n_enc], g_hand)
    # ... and with w~ instead of w~^2 (a plausible slip) the test would fail.
    g_slip = torch.autograd.grad(z, enc, grad_outputs=-w_tilde.unsqueeze(-1) * dlogw_dz / 4)
    assert not _allclose_all(g_dreg[:n_enc], g_slip, rtol=1e-3, atol=1e-8)


def test_dreg_hook_does_not_leak_into_a_later_standard_call():
    model = _random_model(seed=8)
    params = list(model.parameters())
    x = _binary(3, seed=8)
    first = _grads(training_loss(model, x, "iwae", 4, "standard", _gen(3))[0], params)
    _grads(training_loss(model, x, "iwae", 4, "dreg", _gen(3))[0], params)
    again = _grads(training_loss(model, x, "iwae", 4, "standard", _gen(3))[0], params)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(
    "objective, estimator",
    [("elbo", "standard"), ("IWAE", "standard"), ("iwae", "reinforce"), ("iwae", "DReG"), ("vae", "dreg")],
)
def test_training_loss_rejects_unknown_choices(objective, estimator):
    model = _random_model(seed=9)
    with pytest.raises(ValueError):
        training_loss(model, _binary(2, seed=9), objective, 3, estimator, _gen(0))


def test_flushing_denormals_changes_neither_bound_nor_gradients():
    """Training, evaluation and the explorer flush denormal floats (iwae/cpu.py). On the shipped iwae-k50 model and
    real test digits, where some normalized weights fall below 1e-38, the L_50 bound and every parameter gradient
    agree with and without flushing, to float32 rounding; and the denormal weights are really there to flush."""
    from pathlib import Path

    from iwae import testset
    from iwae.checkpoints import load_checkpoint
    from iwae.cpu import flush_denormals

    path = Path(__file__).resolve().parent.parent / "checkpoints" / "iwae-k50.safetensors"
    model = load_checkpoint(path).model
    for p in model.parameters():
        p.requires_grad_(True)
    x = testset.load()[0][:100]

    def run(flush: bool):
        torch.set_flush_denormal(flush)  # this thread's setting: the work below must stay on it
        try:
            loss, bound = training_loss(model, x, "iwae", 50, "standard", torch.Generator().manual_seed(3))
            model.zero_grad()
            loss.backward()
            w = normalized_weights(model.log_weights(x, 50, torch.Generator().manual_seed(3)).log_w.detach())
            denormal = int(((w > 0) & (w < torch.finfo(torch.float32).tiny)).sum())  # counted before DAZ returns
            return bound.detach(), [p.grad.clone() for p in model.parameters()], denormal
        finally:
            flush_denormals()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bound_kept, grads_kept, denormal_kept = run(False)
        bound_flushed, grads_flushed, denormal_flushed = run(True)
    finally:
        torch.set_num_threads(threads)
    assert denormal_kept > 100 and denormal_flushed == 0  # of 5,000 weights: they exist, and flushing removes them
    torch.testing.assert_close(bound_flushed, bound_kept, rtol=1e-6, atol=1e-4)
    for g_flushed, g_kept in zip(grads_flushed, grads_kept, strict=True):
        torch.testing.assert_close(g_flushed, g_kept, rtol=1e-5, atol=1e-6 * g_kept.abs().max().item())
