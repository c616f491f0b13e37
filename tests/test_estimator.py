"""iwae/estimator.py: one draw of K log weights taken apart; the identities between its numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iwae.estimator import draw_log_weights, inspect_log_weights
from iwae.model import VAE, ModelConfig
from iwae.rng import generator

CASES = {
    "spread": np.random.default_rng(0).normal(-100.0, 3.0, size=50),
    "one dominant": np.array([-90.0, -120.0, -130.0, -125.0, -140.0]),
    "huge negative": np.random.default_rng(1).normal(-5000.0, 20.0, size=200),  # exp underflows: log-sum-exp needed
    "single": np.array([-87.5]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_identities(name):
    log_w = CASES[name]
    d = inspect_log_weights(log_w)
    k = len(log_w)
    # L_K = logsumexp - log K = log of the mean weight, the mean computed in float64 after a shift (exp(-5000) is 0)
    shift = log_w.max()
    log_mean = shift + math.log(np.mean(np.exp(np.asarray(log_w, dtype=np.float64) - shift)))
    assert d.l_k == pytest.approx(log_mean, abs=1e-9)
    assert d.l_k == pytest.approx(d.shift + d.log_sum_shifted - math.log(k), abs=1e-12)
    assert d.elbo == pytest.approx(float(np.mean(log_w)), abs=1e-9)
    assert d.elbo <= d.l_k + 1e-12  # Jensen: the mean of the log is below the log of the mean
    assert d.w_tilde.sum() == pytest.approx(1.0, abs=1e-12)
    assert (d.w_tilde >= 0).all()
    assert 1 - 1e-9 <= d.ess <= k + 1e-9
    assert 0 <= d.log_sum_shifted <= math.log(k) + 1e-12
    assert list(d.log_w[d.order]) == sorted(log_w, reverse=True)
    if k == 1:
        assert d.elbo == d.l_k and d.ess == 1


def test_log_mean_in_float64_directly_when_it_does_not_underflow():
    log_w = np.random.default_rng(2).normal(-20.0, 2.0, size=100)
    assert inspect_log_weights(log_w).l_k == pytest.approx(math.log(np.mean(np.exp(log_w))), abs=1e-10)


def test_equal_weights_give_ess_k_and_equal_bounds():
    d = inspect_log_weights(np.full(20, -95.0))
    assert d.ess == pytest.approx(20.0)
    assert d.elbo == pytest.approx(d.l_k)
    assert np.allclose(d.w_tilde, 1 / 20)


def test_one_weight_dominating_gives_ess_one():
    d = inspect_log_weights(np.array([0.0, -800.0, -900.0]))
    assert d.ess == pytest.approx(1.0)
    assert d.l_k == pytest.approx(-math.log(3))


def test_rejects_empty_and_non_finite():
    with pytest.raises(ValueError):
        inspect_log_weights(np.array([]))
    with pytest.raises(ValueError):
        inspect_log_weights(np.array([-1.0, np.nan]))


def test_draw_from_a_model_is_reproducible_and_consistent_with_the_bound():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_dim=16, hidden_dim=8)).eval()
    x = (torch.rand(16, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    a = draw_log_weights(model, x, 50, generator(0, "test"))
    b = draw_log_weights(model, x, 50, generator(0, "test"))
    assert a.shape == (50,) and a.dtype == np.float64 and np.array_equal(a, b)
    from iwae.bounds import iwae_bound

    d = inspect_log_weights(a)
    assert d.l_k == pytest.approx(float(iwae_bound(torch.from_numpy(a)[None])[0]), abs=1e-9)
    with pytest.raises(ValueError):
        draw_log_weights(model, x, 0)


def test_estimator_figure_draws_sorted_bars_and_both_lines():
    from iwae.estimator_figures import estimator_figure

    log_w = np.random.default_rng(4).normal(-100.0, 4.0, size=30)
    d = inspect_log_weights(log_w)
    fig = estimator_figure(d)
    bars = [t for t in fig.data if t.type == "bar"]
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == 2 and len(lines) == 2
    shown = np.asarray(bars[0].customdata)
    assert np.all(np.diff(shown) <= 0) and np.allclose(np.sort(shown), np.sort(log_w))
    assert [t.y[0] for t in lines] == [d.elbo, d.l_k]
    assert np.isclose(np.sum(bars[1].y), 1.0)
