"""Checkpoints: exact round trip, and a CheckpointError with a useful message for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from iwae.checkpoints import (
    FORMAT,
    REQUIRED_KEYS,
    CheckpointError,
    atomic_save_tensors,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    update_metadata,
)
from iwae.model import VAE, ModelConfig


def _model(seed: int = 0, **cfg) -> VAE:
    torch.manual_seed(seed)
    return VAE(ModelConfig(input_dim=64, **cfg))


def _metadata(config: ModelConfig) -> dict:
    return {
        "config": config.to_dict(),
        "objective": "iwae",
        "k": 5,
        "estimator": "standard",
        "epochs": 2,
        "seed": 0,
        "data": {"dataset": "digits", "train_images": 1500},
        "history": [{"epoch": 1, "test_bound": -30.5}, {"epoch": 2, "test_bound": -28.25}],
        "metrics": {"note": "unicode ok: \u03c3 \u2264 1"},
    }


@pytest.fixture
def saved(tmp_path) -> tuple[VAE, dict, Path]:
    model = _model()
    meta = _metadata(model.config)
    path = tmp_path / "ckpt" / "iwae-k5.safetensors"
    save_checkpoint(model, meta, path)
    return model, meta, path


def _assert_error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg, msg  # always names the file
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


def test_round_trip_is_exact(saved):
    model, meta, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.metadata == meta
    assert ckpt.name == "iwae-k5"
    assert ckpt.model.config == model.config
    want, got = model.state_dict(), ckpt.model.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # Loaded models are for inference: eval mode and frozen.
    assert not ckpt.model.training and not any(p.requires_grad for p in ckpt.model.parameters())
    x = torch.bernoulli(torch.full((3, 64), 0.4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.log_weights(x, 4, torch.Generator().manual_seed(1)).log_w
    b = ckpt.model.log_weights(x, 4, torch.Generator().manual_seed(1)).log_w
    assert torch.equal(a, b)
    # The format is readable without this package.
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == FORMAT and json.loads(header["metadata"]) == meta
    assert read_metadata(path) == meta


def test_round_trip_non_default_config(tmp_path):
    model = _model(seed=3, hidden_dim=17, latent_dim=3)
    path = tmp_path / "odd.safetensors"
    save_checkpoint(model, _metadata(model.config), path)
    ckpt = load_checkpoint(path)
    assert ckpt.model.config == ModelConfig(input_dim=64, hidden_dim=17, latent_dim=3)
    assert all(torch.equal(ckpt.model.state_dict()[k], v) for k, v in model.state_dict().items())


def test_save_refuses_incomplete_metadata(tmp_path):
    model = _model()
    meta = _metadata(model.config)
    del meta["history"]
    with pytest.raises(ValueError, match="history"):
        save_checkpoint(model, meta, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_missing_path(tmp_path):
    _assert_error(tmp_path / "nope.safetensors", "no such")


def test_directory_is_not_a_checkpoint(tmp_path):
    _assert_error(tmp_path, "no such")


def test_truncated_file(saved):
    _, _, path = saved
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _assert_error(path, "truncated")


def test_file_cut_inside_the_header(saved):
    _, _, path = saved
    path.write_bytes(path.read_bytes()[:5])
    _assert_error(path, "not a readable safetensors file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _assert_error(path, "not a readable safetensors file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )
    _assert_error(path, "not a readable safetensors file")


class _Payload:
    """Unpickling this object creates a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_file_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    pickled = tmp_path / "evil.pt"
    model = _model()
    torch.save({"state_dict": model.state_dict(), "payload": _Payload(marker)}, pickled)
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(pickled.read_bytes())
    for path in (pickled, disguised):
        _assert_error(path, "not a readable safetensors file")
        with pytest.raises(CheckpointError):
            read_metadata(path)
    assert not marker.exists()
    # The payload is live: a pickle-based loader would have run it. (This shows the check above can fail.)
    torch.load(pickled, weights_only=False)
    assert marker.exists()


def test_wrong_shapes_for_the_config(tmp_path):
    model = _model(hidden_dim=200)
    meta = _metadata(ModelConfig(input_dim=64, hidden_dim=100))  # says 100, tensors are 200 wide
    path = tmp_path / "mismatch.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    msg = _assert_error(path, "does not match its config", "encoder.0.weight", "(200, 64)", "(100, 64)")
    assert "hidden_dim=100" in msg


def test_missing_and_unexpected_tensors(tmp_path):
    model = _model()
    tensors = dict(model.state_dict())
    del tensors["decoder.4.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path), metadata={"format": FORMAT, "metadata": json.dumps(_metadata(model.config))})
    _assert_error(path, "missing tensor decoder.4.bias", "unexpected tensor extra.weight")


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_metadata_key(tmp_path, key):
    model = _model()
    meta = _metadata(model.config)
    del meta[key]
    path = tmp_path / "nokey.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    _assert_error(path, "lacks", key)


def test_metadata_not_json(tmp_path):
    path = tmp_path / "badjson.safetensors"
    save_file(_model().state_dict(), str(path), metadata={"format": FORMAT, "metadata": "{not json"})
    _assert_error(path, "not JSON")


def test_bad_config_values(tmp_path):
    model = _model()
    meta = _metadata(model.config)
    meta["config"] = {"input_dim": 64, "hidden_dim": "wide"}
    path = tmp_path / "badcfg.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    _assert_error(path, "bad config")


@pytest.mark.parametrize("header", [{}, {"format": "iwae-explorer/0"}, {"format": FORMAT + "-resume"}])
def test_wrong_format_header(tmp_path, header):
    model = _model()
    path = tmp_path / "fmt.safetensors"
    save_file(model.state_dict(), str(path), metadata={**header, "metadata": json.dumps(_metadata(model.config))})
    _assert_error(path, "format", FORMAT)


def test_plain_safetensors_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(_model().state_dict(), str(path))
    _assert_error(path, "format")


def test_atomic_save_leaves_no_temp_files_and_replaces(tmp_path):
    folder = tmp_path / "deep" / "er"
    path = folder / "t.safetensors"
    atomic_save_tensors({"a": torch.arange(6.0).reshape(2, 3)}, {"k": "v1"}, path)
    atomic_save_tensors({"a": torch.ones(4), "b": torch.zeros(1)}, {"k": "v2"}, path)
    assert sorted(p.name for p in folder.iterdir()) == ["t.safetensors"]
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"k": "v2"}
        assert sorted(f.keys()) == ["a", "b"] and torch.equal(f.get_tensor("a"), torch.ones(4))


def test_atomic_save_failure_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "t.safetensors"
    atomic_save_tensors({"a": torch.ones(3)}, {"k": "old"}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="share memory"):
        # Two names sharing memory: safetensors refuses to write it, after the temporary file was created.
        base = torch.zeros(4)
        atomic_save_tensors({"a": base, "b": base}, {"k": "new"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]


def test_update_metadata_merges_and_keeps_weights(saved):
    model, meta, path = saved
    update_metadata(path, {"metrics": {"test_nll": 25.5}, "notes": "added later"})
    ckpt = load_checkpoint(path)
    assert ckpt.metadata == {**meta, "metrics": {"test_nll": 25.5}, "notes": "added later"}
    assert all(torch.equal(ckpt.model.state_dict()[k], v) for k, v in model.state_dict().items())
    update_metadata(path, {"k": 5})
    assert load_checkpoint(path).metadata["notes"] == "added later"  # earlier updates survive
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_update_metadata_on_bad_file_raises(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        update_metadata(path, {"a": 1})
    assert path.read_bytes() == b"\x00" * 100


@pytest.mark.parametrize("field, value", [("hidden_dim", -5), ("latent_dim", -1)])
def test_impossible_config_dims_are_a_checkpoint_error(tmp_path, field, value):
    """A config no model can have (a negative width) must be reported as a bad checkpoint, not crash in torch."""
    model = _model()
    meta = _metadata(model.config)
    meta["config"] = {**model.config.to_dict(), field: value}
    path = tmp_path / "negcfg.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    _assert_error(path)


@pytest.mark.parametrize("payload", ["5", "[1, 2]", '"config objective k"', "null"])
def test_metadata_that_is_not_an_object_is_a_checkpoint_error(tmp_path, payload):
    path = tmp_path / "notobj.safetensors"
    save_file(_model().state_dict(), str(path), metadata={"format": FORMAT, "metadata": payload})
    _assert_error(path, "metadata")
