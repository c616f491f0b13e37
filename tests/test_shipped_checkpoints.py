"""The shipped MNIST checkpoints: they load, match their metadata, and obey the bounds' orderings."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iwae import quadrature as quad
from iwae import testset
from iwae.checkpoints import load_checkpoint, weights_digest
from iwae.comparison import ESTIMATORS, paired_difference
from iwae.evaluate import load_per_image, per_image_path, sampled_bounds
from iwae.zoo import DEFAULT_MODELS, EXTRA_MODELS, PAPER_ORDER, PROTOCOL

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = tuple(m.name for m in DEFAULT_MODELS)
# Default models whose equal-budget retraining or re-evaluation is still running (resumed from checkpoints/pending/
# next session): the checks below fail for them until they are replaced (strict xfail). None today.
RETRAINING: dict[str, str] = {}
REEVALUATING = dict(RETRAINING)


def _case(name: str, pending: dict):
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=pending[name])) if name in pending else name


def _pair(better: str, worse: str):
    pending = [n for n in (better, worse) if n in RETRAINING]  # the ordering may hold before the retraining: not strict
    marks = [pytest.mark.xfail(strict=False, reason=RETRAINING[pending[0]])] if pending else []
    return pytest.param(better, worse, marks=marks, id=f"{better}<{worse}")
N_IMAGES = 200


@pytest.fixture(scope="module")
def test_images():
    x, labels = testset.load()
    assert x.shape == (10000, 784) and set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.bincount(labels).min() > 800
    return x


@pytest.fixture(scope="module")
def models():
    return {name: load_checkpoint(CHECKPOINTS / f"{name}.safetensors") for name in SHIPPED}


def test_shipped_test_set_matches_its_recorded_hash():
    x, labels = testset.load(expected_sha256=testset.PACKED_SHA256)
    assert len(x) == len(labels) == 10000


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_matches_its_metadata(models, name):
    ckpt = models[name]
    meta = ckpt.metadata
    objective, k = name.split("-k")
    k, _, estimator = k.partition("-")
    estimator = "" if estimator.endswith("ep") else estimator  # vae-k1-200ep: an epoch count, not an estimator
    assert meta["objective"] == objective and meta["k"] == int(k)
    assert meta["estimator"] == (estimator or "standard")
    assert meta["config"] == {"input_dim": 784, "hidden_dim": 200, "latent_dim": 2}
    assert ckpt.model.encoder[0].weight.shape == (200, 784)
    assert ckpt.model.decoder[-1].weight.shape == (784, 200)
    assert meta["data"]["dataset"] == "mnist" and meta["data"]["train_images"] == 60000
    assert len(meta["history"]) == meta["epochs"] >= 1
    assert meta["metrics"], "run python -m iwae.evaluate checkpoints/*.safetensors --write"
    assert meta["metrics"]["n_images"] == 10000


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_elbo_below_l5_below_l50_below_exact_log_px(models, test_images, name):
    """Theorem 1 on real models: ELBO <= L_5 <= L_50 <= log p(x), means over images, beyond MC error."""
    model = models[name].model
    x = test_images[:N_IMAGES]
    gen = torch.Generator().manual_seed(0)
    b = sampled_bounds(model, x, 1000, gen)  # ELBO, L_5, L_50 from the same 1000 draws per image
    grid = quad.global_grid(model)
    log_px, err = quad.log_px_batch(model, grid, x)
    assert err.mean() < 0.05 and err.max() < 1.0  # conservative per-image estimates (README: quadrature accuracy)
    for lower, upper in (("elbo", "l5"), ("l5", "l50")):
        diff = b[upper] - b[lower]  # paired per image
        assert diff.mean() > 3 * diff.std() / math.sqrt(len(x)), (lower, upper)
    gap = log_px - b["l50"]
    assert gap.mean() > 3 * gap.std() / math.sqrt(len(x))


@pytest.mark.parametrize("name", [_case(n, RETRAINING) for n in SHIPPED])
def test_default_models_share_one_training_protocol(models, name):
    """The equal-budget set: every default model trained with the protocol of iwae/zoo.py (epochs, schedule, batch,
    learning rate, Adam settings, seed, dynamic binarization), as recorded in its metadata."""
    meta, t = models[name].metadata, models[name].metadata["training"]
    train_images = meta["data"]["train_images"]
    recorded = {"epochs": meta["epochs"], "schedule": t["schedule"], "batch_size": t["batch_size"], "lr": t["lr"],
                "dataset": meta["data"]["dataset"], "max_train_images": 0 if train_images == 60000 else train_images}
    assert recorded == PROTOCOL
    assert meta["seed"] == 1 and t["optimizer"] == "Adam(betas=(0.9, 0.999), eps=1e-4)"
    assert meta["data"]["train_binarization"].startswith("dynamic")
    assert "/" not in t["command"].split("--out")[0], "the recorded command names a folder"


def test_extra_models_are_outside_the_equal_budget_set():
    for m in EXTRA_MODELS:
        assert not m.equal_budget
        path = CHECKPOINTS / f"{m.name}.safetensors"
        if path.exists():
            assert load_checkpoint(path).metadata["epochs"] == m.epochs


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize(("better", "worse"), [_pair(b, w) for b, w in PAPER_ORDER])
def test_paper_ordering_paired_over_all_test_images(estimator, better, worse):
    """At equal budget, by the exact NLL and by IS k=5000: iwae-k50 < iwae-k5 < vae-k1 and iwae-k50 < vae-k50, each
    as a paired difference over the 10,000 test images more than 2 standard errors above zero."""
    arrays = []
    for name in (better, worse):
        with np.load(per_image_path(CHECKPOINTS / f"{name}.safetensors"), allow_pickle=False) as f:
            arrays.append(f[ESTIMATORS[estimator]])
    d = paired_difference(*arrays)
    assert d.n_images == 10000
    assert d.mean > 2 * d.se, (better, worse, estimator, d.mean, d.se)


def test_quality_targets(models):
    assert models["iwae-k50"].metadata["metrics"]["nll_is5000"] <= 130.0
    assert models["vae-k1"].metadata["metrics"]["nll_is5000"] <= 135.0


EVALUATED = SHIPPED + tuple(m.name for m in EXTRA_MODELS if (CHECKPOINTS / f"{m.name}.safetensors").exists())


@pytest.mark.parametrize("name", [_case(n, REEVALUATING) for n in EVALUATED])
def test_recorded_metrics_are_consistent_and_exact(name):
    """The exact NLL is never above the IS estimate beyond its error, ELBO <= L_5 <= L_50 <= log p(x), and every one
    of the 10,000 images has a quadrature error estimate below 0.01 nats, by today's quadrature (the growing region,
    the error estimate's allowance for cancellation); the per-image file records these weights and holds the numbers
    the metrics summarize."""
    ckpt = load_checkpoint(CHECKPOINTS / f"{name}.safetensors")
    metrics = ckpt.metadata["metrics"]
    assert metrics["n_images"] == 10000
    assert metrics["nll_quadrature"] <= metrics["nll_is5000"] + 3 * metrics["nll_is_sem"]
    assert metrics["elbo"] <= metrics["l5"] <= metrics["l50"] <= -metrics["nll_quadrature"]
    assert "grown per image" in metrics["protocol"]
    assert f"{quad.CANCELLATION_ALLOWANCE:g} sum |midpoint - trapezoid|" in metrics["protocol"]
    per_image = load_per_image(ckpt.path, weights_digest(ckpt.model))
    assert per_image is not None, "the per-image file does not record these weights"
    assert len(per_image["quadrature_error"]) == 10000 and per_image["quadrature_error"].max() < 0.01
    assert -per_image["log_px_quadrature"].mean() == pytest.approx(metrics["nll_quadrature"], abs=1e-9)
    assert per_image["quadrature_error"].max() == pytest.approx(metrics["nll_quadrature_max_error"], abs=1e-12)
