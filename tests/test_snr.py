"""Gradient signal-to-noise ratio (iwae/snr.py, iwae/snr_figures.py, scripts/gradient_snr.py): the SNR helper on
synthetic draws with known mean and std, the physics on a small trained digits model (decoder SNR rises with K;
DReG's encoder SNR beats the standard one at large K), unbiasedness of DReG against the standard estimator (with a
check that the same test rejects a biased variant), the figure, the JSON validation, and a tiny run of the script.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from iwae import snr, snr_figures, testset
from iwae.bounds import iwae_bound, normalized_weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


# ------------------------------------------------------------------------------------------------
# The helper on synthetic gradients


def test_snr_of_draws_with_known_mean_and_std():
    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0, 0.5, 0.0])
    std = torch.tensor([2.0, 1.0, 5.0, 3.0])
    m = 20_000
    draws = mean + std * torch.randn(m, 4, generator=gen, dtype=torch.float64)
    draws = torch.cat([draws, torch.full((m, 1), 7.0, dtype=torch.float64)], 1)  # a constant element: left out
    values = snr.snr(draws)
    assert values.shape == (4,)
    # true SNRs 0.5, 2, 0.1, 0; the estimate's sampling error is about sqrt((1 + s^2/2) / M) <= 0.012
    np.testing.assert_allclose(values[:3].numpy(), [0.5, 2.0, 0.1], atol=0.04)
    assert values[3] < 0.03
    # exactly the textbook formula, |mean| / std with M - 1
    small = draws[:7, :4]
    expected = small.mean(0).abs() / small.std(0, unbiased=True)
    np.testing.assert_allclose(snr.snr(small).numpy(), expected.numpy(), rtol=1e-12)


def test_running_moments_match_the_batch_formulas_and_mark_constant_elements():
    gen = torch.Generator().manual_seed(1)
    draws = torch.randn(50, 6, generator=gen) * torch.tensor([1e-3, 1.0, 10.0, 1e3, 1.0, 1.0]) + 100.0
    draws[:, 4] = 0.0  # an exactly-zero gradient
    draws[:, 5] = 3.25  # the same nonzero value every time
    rm = snr.RunningMoments(6)
    for row in draws:
        rm.add(row)
    d = draws.double()
    np.testing.assert_allclose(rm.mean.numpy(), d.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(rm.std[:4].numpy(), d.std(0)[:4].numpy(), rtol=1e-9)
    assert rm.std[4] == 0 and rm.std[5] == 0
    summary = snr.summarize(rm.mean, rm.std)
    assert summary["elements"] == 4 and summary["constant"] == 2


def test_noise_floor_is_the_estimate_for_a_zero_mean_element():
    gen = torch.Generator().manual_seed(2)
    m = 50
    draws = torch.randn(m, 20_000, generator=gen, dtype=torch.float64) * 3.0
    values = snr.snr(draws)
    # E|mean| / std ~ sqrt(2 / (pi M)) for a zero-mean element (std estimated: a few % above)
    assert values.mean().item() == pytest.approx(snr.noise_floor(m), rel=0.05)


# ------------------------------------------------------------------------------------------------
# A small trained model (conftest: IWAE k=5 on binarized sklearn digits)


@pytest.fixture(scope="module")
def x8(digits_test_binary) -> torch.Tensor:
    return digits_test_binary[:8]


def _moments(model, x, estimator, k, repeats, seed):
    return snr.gradient_moments(model, x, estimator, k, repeats, torch.Generator().manual_seed(seed))


def test_caller_model_is_left_untouched(trained_digits_model, x8):
    before = {n: (p.detach().clone(), None if p.grad is None else p.grad.clone())
              for n, p in trained_digits_model.named_parameters()}
    _moments(trained_digits_model, x8, "dreg", 3, 2, 0)
    for n, p in trained_digits_model.named_parameters():
        assert not p.requires_grad
        assert torch.equal(p, before[n][0])
        assert (p.grad is None and before[n][1] is None) or torch.equal(p.grad, before[n][1])


def test_decoder_snr_rises_with_k_for_the_standard_estimator(trained_digits_model, x8):
    s1 = _moments(trained_digits_model, x8, "standard", 1, 60, 10).summary()
    s50 = _moments(trained_digits_model, x8, "standard", 50, 60, 11).summary()
    # Rainforth et al.: the decoder's SNR grows like sqrt(K); here a factor of at least 2.5 of sqrt(50) = 7.1
    assert s50["decoder"]["median"] > 2.5 * s1["decoder"]["median"]
    assert s50["decoder"]["mean"] > 2.5 * s1["decoder"]["mean"]


@pytest.mark.slow
def test_dreg_encoder_snr_beats_the_standard_one_at_large_k(trained_digits_model, x8):
    k, m = 300, 100
    standard = _moments(trained_digits_model, x8, "standard", k, m, 20).summary()["encoder"]
    dreg = _moments(trained_digits_model, x8, "dreg", k, m, 20).summary()["encoder"]
    assert dreg["median"] > 3 * standard["median"]  # measured 5-20x over three seeds
    assert dreg["mean"] > 3 * standard["mean"]
    # and the standard encoder's SNR falls with K (Rainforth et al.: like 1/sqrt(K) once K is large). On this small
    # digits model it is flat up to K ~ 300 and clearly lower at K = 1000: 0.68-0.76 of its K = 1 value over three
    # seeds (the shipped MNIST study, checkpoints/gradient-snr.json, falls from 0.24 to 0.04).
    at1 = _moments(trained_digits_model, x8, "standard", 1, m, 21).summary()["encoder"]
    at1000 = _moments(trained_digits_model, x8, "standard", 1000, m, 22).summary()["encoder"]
    assert at1000["median"] < 0.85 * at1["median"]


def _biased_dreg_loss(model, x, objective, k, estimator, generator):
    """A wrong DReG: encoder gradient weighted by w~ instead of w~^2 (no hook on z). Biased for K > 1."""
    lw = model.log_weights(x, k, generator, stop_q_params=True)
    w_tilde = normalized_weights(lw.log_w.detach())
    return -(w_tilde * lw.log_w).sum(-1).mean(), iwae_bound(lw.log_w.detach())


def _mean_z2(a: snr.GradientMoments, b: snr.GradientMoments, group: str) -> float:
    """Mean over elements of the squared z-score of the difference of two independent mean gradients."""
    se2 = (a.std[group] ** 2 + b.std[group] ** 2) / a.repeats
    keep = se2 > 0
    z = (a.mean[group] - b.mean[group])[keep] / se2[keep].sqrt()
    return float((z**2).mean())


def test_dreg_and_standard_estimate_the_same_gradient(trained_digits_model, x8, monkeypatch):
    k, m = 10, 400
    standard = _moments(trained_digits_model, x8, "standard", k, m, 30)
    dreg = _moments(trained_digits_model, x8, "dreg", k, m, 31)  # independent draws
    # Unbiased for the same gradient: each element's z-score of the difference is ~ N(0, 1), so the mean z^2 is
    # about 1. The elements are strongly correlated (all driven by the same z), so the mean over elements has few
    # effective degrees of freedom: over 8 seed pairs it ranged 0.7-2.4, hence the bound 4.
    assert _mean_z2(standard, dreg, "encoder") < 4.0
    assert _mean_z2(standard, dreg, "decoder") < 4.0
    # the same check rejects a biased encoder gradient (w~ in place of w~^2; about 100 here) ...
    monkeypatch.setattr(snr, "training_loss", _biased_dreg_loss)
    biased = _moments(trained_digits_model, x8, "dreg", k, m, 31)
    assert _mean_z2(standard, biased, "encoder") > 20.0
    # ... whose decoder gradient is still right
    assert _mean_z2(standard, biased, "decoder") < 4.0


def test_dreg_decoder_gradient_is_the_standard_one_on_the_same_draws(trained_digits_model, x8):
    standard = _moments(trained_digits_model, x8, "standard", 7, 5, 40)
    dreg = _moments(trained_digits_model, x8, "dreg", 7, 5, 40)
    torch.testing.assert_close(dreg.mean["decoder"], standard.mean["decoder"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dreg.std["decoder"], standard.std["decoder"], rtol=1e-3, atol=1e-6)
    # while the encoder gradients differ
    assert not torch.allclose(dreg.mean["encoder"], standard.mean["encoder"], rtol=1e-3)


def test_dreg_at_k1_is_the_sticking_the_landing_gradient(trained_digits_model, x8):
    """K = 1: w~ = 1, so DReG's encoder gradient is grad of log w with q's parameters stopped inside log q."""
    dreg = _moments(trained_digits_model, x8, "dreg", 1, 2, 50)
    m = snr._grad_model(trained_digits_model)
    gen = torch.Generator().manual_seed(50)
    grads = []
    for _ in range(2):
        lw = m.log_weights(x8, 1, gen, stop_q_params=True)
        stl = torch.autograd.grad(-lw.log_w.mean(), list(m.encoder.parameters()))
        grads.append(torch.cat([g.reshape(-1) for g in stl]))
    torch.testing.assert_close(dreg.mean["encoder"], torch.stack(grads).double().mean(0), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The file and the figure


def _data(ks=(1, 10, 100), repeats=50) -> dict:
    results = []
    for estimator in ("standard", "dreg"):
        for k in ks:
            enc = 0.3 / math.sqrt(k) if estimator == "standard" else 0.3
            results.append({"estimator": estimator, "k": k, "seconds": 0.1,
                            "encoder": {"mean": enc * 1.2, "median": enc, "elements": 10, "constant": 2},
                            "decoder": {"mean": 0.6 * math.sqrt(k), "median": 0.5 * math.sqrt(k),
                                        "elements": 20, "constant": 0}})
    protocol = {"checkpoint": "iwae-k50", "images": list(range(8)), "binarization": "the shipped test set",
                "repeats": repeats, "seed": 0, "summary": "median", "snr": "|mean| / std", "gradient": "training_loss"}
    return {"format": snr.FORMAT, "protocol": protocol, "results": results}


def snr_traces(fig) -> list:
    """The data traces (one per estimator and group), without the reference lines."""
    return [t for t in fig.data if isinstance(t.meta, Mapping)]


def fitted_slope(ks, values) -> float:
    """Least-squares slope of log SNR against log K."""
    xs, ys = np.log(np.asarray(ks, dtype=float)), np.log(np.asarray(values, dtype=float))
    return float(np.polyfit(xs, ys, 1)[0])


def test_figure_has_four_log_log_traces_with_the_data():
    data = _data()
    fig = snr_figures.snr_figure(data)
    traces = snr_traces(fig)
    assert len(traces) == 4
    assert {(t.meta["estimator"], t.meta["group"]) for t in traces} == {
        (e, g) for e in ("standard", "dreg") for g in ("encoder", "decoder")}
    for t in traces:
        ks, values = snr.series(data, t.meta["estimator"], t.meta["group"], "median")
        assert list(t.x) == ks and list(t.y) == pytest.approx(values)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    refs = [t for t in fig.data if t.meta == "reference"]
    assert len(refs) == 2  # K^(-1/2) through the standard encoder's first point, K^(1/2) for the decoder
    enc_ref = next(t for t in refs if t.xaxis == "x")
    assert enc_ref.y[0] == pytest.approx(0.3) and enc_ref.y[1] == pytest.approx(0.03)
    assert fitted_slope(*snr.series(data, "standard", "encoder")) == pytest.approx(-0.5)
    assert "M = 50" in snr_figures.protocol_caption(data) and "0-7" in snr_figures.protocol_caption(data)


def test_load_snr_round_trip_and_malformed_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_data()))
    assert snr.load_snr(good)["protocol"]["repeats"] == 50

    def broken(mutate, match):
        d = _data()
        mutate(d)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(d))
        with pytest.raises(snr.SNRFileError, match=match):
            snr.load_snr(path)

    broken(lambda d: d.pop("results"), "'results' is missing")
    broken(lambda d: d["protocol"].pop("repeats"), r"'protocol' lacks the keys \['repeats'\]")
    broken(lambda d: d["results"][2]["encoder"].pop("median"), r"results\[2\]\.encoder must be an object")
    broken(lambda d: d["results"][0].update(k="ten"), r"results\[0\]: k must be a positive integer")
    broken(lambda d: d["results"][1].update(estimator="reinforce"), "estimator must be one of")
    broken(lambda d: d["results"][3]["decoder"].update(mean=float("nan")), r"results\[3\]\.decoder\.mean")
    broken(lambda d: d.update(format="something else"), "format is 'something else'")
    broken(lambda d: d["results"].append(dict(d["results"][0])), "appears twice")
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(snr.SNRFileError, match="not readable JSON"):
        snr.load_snr(tmp_path / "text.json")
    with pytest.raises(snr.SNRFileError, match="no such file.*scripts/gradient_snr.py"):
        snr.load_snr(tmp_path / "absent.json")


def test_the_script_end_to_end_with_tiny_flags(tmp_path):
    """scripts/gradient_snr.py on the shipped iwae-k50 checkpoint (a private copy), 2 images, 3 repeats."""
    src = ROOT / "checkpoints" / "iwae-k50.safetensors"
    if not src.is_file() or not testset.DEFAULT_PATH.is_file():
        pytest.skip("the shipped iwae-k50 checkpoint or test set is not there")
    ckpt = tmp_path / src.name
    shutil.copyfile(src, ckpt)
    import gradient_snr

    out = tmp_path / "snr.json"
    assert gradient_snr.main(["--checkpoint", str(ckpt), "--images", "2", "--repeats", "3", "--ks", "1", "4",
                              "--seed", "5", "--out", str(out)]) == 0
    data = snr.load_snr(out)
    assert data["protocol"]["checkpoint"] == "iwae-k50" and data["protocol"]["images"] == [0, 1]
    assert data["protocol"]["repeats"] == 3 and data["protocol"]["summary"] == snr.FIGURE_STATISTIC
    assert [(r["estimator"], r["k"]) for r in data["results"]] == [
        ("standard", 1), ("standard", 4), ("dreg", 1), ("dreg", 4)]
    # common random numbers: the two estimators' decoder SNRs agree at each K
    by = {(r["estimator"], r["k"]): r for r in data["results"]}
    for k in (1, 4):
        assert by["dreg", k]["decoder"]["median"] == pytest.approx(by["standard", k]["decoder"]["median"], rel=1e-3)
    assert not list(tmp_path.glob(".snr.json.*"))  # no temporary file left behind
