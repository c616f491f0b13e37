"""The shipped precomputed views: a file is used only for the weights it was made from, and what it holds is what the
live computation gives (same functions, same draws), so shipping changes speed, never a number shown.

"The same" is up to float32 rounding: another processor (CI's, a user's) takes other vectorised kernels and rounds
differently, by about 1e-6 in a latent mean; the tolerances below are far below any digit the explorer prints and far
above that rounding."""

from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.state import K_CHOICES
from iwae import latent, precomputed, testset, toy
from iwae.checkpoints import load_checkpoint
from iwae.zoo import DEFAULT_MODELS

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
# Default models being retrained (tests/test_shipped_checkpoints.py): their views are made when they are shipped.
PENDING: dict[str, str] = {}


@pytest.fixture(scope="module")
def test_set():
    images, labels = testset.load()
    return images, labels.numpy()


def _views(model, ks=K_CHOICES) -> precomputed.ModelViews:
    """A small, arbitrary but complete views object for the round-trip tests (no quadrature)."""
    curve = precomputed.curves.BoundCurve(list(ks), [float(-k) for k in ks], [0.5] * len(ks), [1] * len(ks), 10, 5000)
    mu = np.arange(20, dtype=np.float32).reshape(10, 2) / 7
    return precomputed.ModelViews(precomputed.weights_digest(model), mu, mu + 1, 0.25, tuple(ks), {10: curve},
                                  {10: (-100.5, 1e-3)})


def test_views_file_round_trips_exactly_and_belongs_to_its_weights(tmp_path):
    model = load_checkpoint(CHECKPOINTS / "vae-k1.safetensors").model
    path = tmp_path / "m.views.npz"
    precomputed.save_model_views(path, _views(model))
    back = precomputed.load_model_views(path, model, K_CHOICES)
    assert back is not None
    np.testing.assert_array_equal(back.latent_mu, _views(model).latent_mu)
    assert back.subset_curves[10] == _views(model).subset_curves[10] and back.subset_log_px[10] == (-100.5, 1e-3)
    assert precomputed.load_model_views(path, model, K_CHOICES[:-1]) is None  # another K list
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # other weights, however close
    assert precomputed.load_model_views(path, model, K_CHOICES) is None
    assert precomputed.load_model_views(tmp_path / "absent.views.npz", model, K_CHOICES) is None


def _shipped_case(name):
    reason = PENDING.get(name)
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name


@pytest.mark.parametrize("name", [_shipped_case(m.name) for m in DEFAULT_MODELS])
def test_shipped_views_are_current_and_equal_to_the_live_computation(test_set, name):
    images, labels = test_set
    model = load_checkpoint(CHECKPOINTS / f"{name}.safetensors").model
    views = precomputed.load_model_views(precomputed.views_path(CHECKPOINTS / f"{name}.safetensors"), model, K_CHOICES)
    assert views is not None, f"no current views file: python scripts/precompute_views.py {name}"
    mu, sd = latent.latent_means(model, images)
    np.testing.assert_allclose(views.latent_mu, mu.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(views.latent_sd, sd.numpy(), rtol=1e-4, atol=1e-6)
    # a rounding-level move can change a nearest neighbour of an image on a tie: a few images of 10,000 at most
    assert views.knn_accuracy == pytest.approx(latent.knn_accuracy(mu.numpy(), labels), abs=5e-4)
    assert sorted(views.subset_curves) == list(precomputed.SUBSET_SIZES)
    live = precomputed.subset_curve(model, images, 10, K_CHOICES)
    assert views.subset_curves[10].mean == pytest.approx(live.mean, abs=1e-3)
    assert views.subset_curves[10].spread == pytest.approx(live.spread, abs=1e-3)
    assert views.subset_log_px[10][0] == pytest.approx(precomputed.subset_log_px(model, images, 10)[0], abs=1e-4)
    # L_K rises with K towards the mean log p(x), on every shipped subset (Burda et al., Theorem 1), up to the
    # sampling noise of a point (3 block sds, and 0.01 nats where the curve is flat and one block is left)
    for n, curve in views.subset_curves.items():
        steps = zip(curve.mean, curve.mean[1:], curve.spread, curve.spread[1:], strict=False)
        assert all(b > a - 3 * max(sa, sb) - 0.01 for a, b, sa, sb in steps), (n, curve.mean)
        # the last point is one block of K = 5000: it may exceed log p(x) by its noise (the K = 2000 blocks' sd)
        assert curve.mean[0] < curve.mean[-1] <= views.subset_log_px[n][0] + 3 * curve.spread[-2] + 0.01


def test_shipped_toy_fits_are_the_fits_made_live():
    fits = precomputed.load_toy_fits(CHECKPOINTS / precomputed.TOY_FITS_FILE)
    assert sorted(fits) == sorted(precomputed.toy_fit_keys()) and len(fits) == 10 * 4 * 9
    for key in (("banana", 1, 0), ("mixture", 50, 0), ("ring", 5, 9)):
        live = toy.fit_gaussian(key[0], key[1], seed=key[2])
        shipped = fits[key]
        assert (shipped.target, shipped.k, shipped.seed) == key
        # 1000 Adam steps on the same draws: rounding differences stay at the rounding level
        torch.testing.assert_close(shipped.mu, live.mu, rtol=0, atol=1e-3)
        torch.testing.assert_close(shipped.sigma, live.sigma, rtol=1e-3, atol=0)
        np.testing.assert_allclose(shipped.trace, live.trace, rtol=1e-3, atol=1e-3)
        assert (shipped.sets, shipped.steps, shipped.estimator) == (live.sets, live.steps, live.estimator)


def test_toy_fits_file_from_other_fitting_settings_is_ignored(tmp_path, monkeypatch):
    fit = toy.fit_gaussian("banana", 2, steps=3)
    path = tmp_path / precomputed.TOY_FITS_FILE
    precomputed.save_toy_fits(path, [fit])
    assert (("banana", 2, 0) in precomputed.load_toy_fits(path))
    monkeypatch.setattr(toy, "LEARNING_RATE", toy.LEARNING_RATE * 2)
    assert precomputed.load_toy_fits(path) == {}
