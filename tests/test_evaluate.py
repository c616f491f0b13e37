"""The evaluation CLI's resumable run: an evaluation interrupted in either stage and resumed ends with exactly the
numbers of an uninterrupted one; a quadrature-only run keeps the sampled numbers it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iwae import evaluate as ev
from iwae import quadrature as quad
from iwae.checkpoints import weights_digest
from iwae.model import VAE, ModelConfig

N_IMAGES, K = 6, 100


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_dim=784, hidden_dim=16)).eval()
    x = torch.bernoulli(torch.full((N_IMAGES, 784), 0.13), generator=torch.Generator().manual_seed(1))
    return model, x


def _run(model, x, state_file=None, **kw):
    per_image: dict = {}
    metrics = ev.evaluate(model, x, K, seed=0, quiet=True, per_image=per_image, state_file=state_file, chunk=2, **kw)
    return metrics, per_image


@pytest.fixture(scope="module")
def uninterrupted(model_and_images):
    return _run(*model_and_images)


class Interrupt(Exception):
    pass


def _fail_after(fn, calls: int):
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupt
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("stage", ["is", "quadrature"])
def test_interrupted_evaluation_resumes_to_the_same_numbers(model_and_images, uninterrupted, tmp_path, monkeypatch,
                                                             stage):
    model, x = model_and_images
    state = tmp_path / "m.eval-state.npz"
    monkeypatch.setattr(ev, "EVAL_STATE_SAVE_SECONDS", 0.0)  # save after every chunk
    target = (ev, "sampled_bounds") if stage == "is" else (quad, "refine")
    with monkeypatch.context() as m:
        m.setattr(*target, _fail_after(getattr(*target), 2))
        with pytest.raises(Interrupt):
            _run(model, x, state)
    with np.load(state) as f:
        done = int(f[f"done_{stage}"])
    assert 0 < done < N_IMAGES  # it stopped half-way, with progress saved
    metrics, per_image = _run(model, x, state)
    for name, values in uninterrupted[1].items():
        np.testing.assert_array_equal(per_image[name], values, err_msg=name)
    assert metrics["nll_is5000" if K == 5000 else f"nll_is{K}"] == uninterrupted[0][f"nll_is{K}"]


def test_state_of_other_weights_is_ignored(model_and_images, uninterrupted, tmp_path, monkeypatch):
    model, x = model_and_images
    state = tmp_path / "m.eval-state.npz"
    other = VAE(ModelConfig(input_dim=784, hidden_dim=16)).eval()
    monkeypatch.setattr(ev, "EVAL_STATE_SAVE_SECONDS", 0.0)
    _run(other, x, state)
    _, per_image = _run(model, x, state)
    np.testing.assert_array_equal(per_image["is"], uninterrupted[1]["is"])


def test_quadrature_only_keeps_the_sampled_numbers(model_and_images, uninterrupted):
    model, x = model_and_images
    given = {name: np.arange(N_IMAGES, dtype=np.float64) - 100.0 * i for i, name in enumerate(ev.SAMPLED)}
    metrics, per_image = _run(model, x, reuse_sampled={**given, "seconds_is": 12.5})
    for name in ev.SAMPLED:
        np.testing.assert_array_equal(per_image[name], given[name])
    np.testing.assert_array_equal(per_image["log_px_quadrature"], uninterrupted[1]["log_px_quadrature"])
    assert metrics["seconds"]["is"] == 12.5
    # quadrature is the truth that IS estimates sit below: the real run's IS values obey it
    assert (uninterrupted[1]["is"] <= uninterrupted[1]["log_px_quadrature"] + 0.5).all()


def test_per_image_numbers_are_read_only_for_the_weights_they_belong_to(model_and_images, uninterrupted, tmp_path):
    model, _ = model_and_images
    checkpoint = tmp_path / "m.safetensors"
    ev.save_per_image(checkpoint, uninterrupted[1], weights_digest(model))
    read = ev.load_per_image(checkpoint, weights_digest(model))
    np.testing.assert_array_equal(read["log_px_quadrature"], uninterrupted[1]["log_px_quadrature"])
    other = VAE(ModelConfig(input_dim=784, hidden_dim=16)).eval()
    assert ev.load_per_image(checkpoint, weights_digest(other)) is None
    np.savez(ev.per_image_path(checkpoint), **uninterrupted[1])  # a file that records no weights
    assert ev.load_per_image(checkpoint, weights_digest(model)) is None
    assert ev.load_per_image(tmp_path / "absent.safetensors", weights_digest(model)) is None
