"""The training CLI on sklearn digits: smoke run, exact resume after an interruption, refusals, LR schedules, SIGINT."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import iwae.train as train_mod
from iwae import data as data_mod
from iwae.checkpoints import load_checkpoint, read_tensors
from iwae.model import VAE, ModelConfig
from iwae.train import learning_rate, main, resume_path

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 15  # 1500 digits training images, batch 100


def _argv(out: Path, *extra: str, epochs: int = 1, k: int = 5) -> list[str]:
    return ["--dataset", "digits", "--k", str(k), "--epochs", str(epochs), "--quiet", "--out", str(out), *extra]


def _state_dicts_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- smoke run ----------------------------------------------------------------------------------------------------


def test_one_epoch_smoke_run(tmp_path):
    out = tmp_path / "runs" / "smoke.safetensors"
    assert main(_argv(out)) == 0
    ckpt = load_checkpoint(out)
    meta = ckpt.metadata
    assert meta["config"] == ModelConfig(input_dim=64).to_dict()
    assert (meta["objective"], meta["k"], meta["estimator"], meta["epochs"]) == ("iwae", 5, "standard", 1)
    assert meta["data"]["dataset"] == "digits" and meta["data"]["train_images"] == 1500
    assert meta["data"]["test_binarization_seed"] == data_mod.TEST_BINARIZATION_SEED
    (record,) = meta["history"]
    assert record["epoch"] == 1 and record["test_images"] == 297
    assert record["lr"] == pytest.approx(1e-3)
    for key in ("train_bound", "test_bound"):
        assert math.isfinite(record[key]) and -64 * math.log(2) * 3 < record[key] < 0  # a log-probability bound
    # The recorded test bound is reproducible from the saved weights alone (fixed binarization, fixed sampling seed).
    x_test = data_mod.binarize_fixed(data_mod.load_digits("test").images)
    assert train_mod.test_bound(ckpt.model, x_test, "iwae", 5) == record["test_bound"]
    lw = ckpt.model.log_weights(x_test[:10], 7, torch.Generator().manual_seed(0)).log_w
    assert lw.shape == (10, 7) and torch.isfinite(lw).all() and (lw < 0).all()
    # The run also leaves a resume file at the end of the epoch; no temporary files anywhere.
    assert sorted(p.name for p in out.parent.iterdir()) == ["smoke.resume.safetensors", "smoke.safetensors"]


def test_vae_objective_records_vae_k_bound(tmp_path):
    out = tmp_path / "vae.safetensors"
    assert main(_argv(out, "--objective", "vae", "--max-train-images", "300")) == 0
    meta = load_checkpoint(out).metadata
    assert meta["objective"] == "vae" and meta["data"]["train_images"] == 300
    assert math.isfinite(meta["history"][0]["test_bound"])


# --- resume reproduces the uninterrupted run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runA") / "a.safetensors"
    assert main(_argv(out, epochs=2)) == 0
    return out


def test_resume_reproduces_uninterrupted_run_exactly(uninterrupted, tmp_path, capsys):
    out_b = tmp_path / "b.safetensors"
    rpath = resume_path(out_b)
    assert rpath.name == "b.resume.safetensors"

    assert main(_argv(out_b, "--stop-after-steps", "7", epochs=2)) == 130
    assert rpath.exists() and not out_b.exists()  # killed in the middle of epoch 1: no checkpoint yet
    tensors, header = read_tensors(rpath)
    state = json.loads(header["resume"])
    assert (state["epoch"], state["step"], state["history"]) == (0, 7, [])
    assert "rng" in tensors and any(k.startswith("adam.") for k in tensors)
    assert "rerun with --resume" in capsys.readouterr().out

    # Refusals that leave the resume file untouched.
    before = rpath.read_bytes()
    assert main(_argv(out_b, epochs=2)) == 2  # a resume file exists but --resume was not given
    assert "--resume" in capsys.readouterr().err
    assert main(_argv(out_b, "--resume", epochs=2, k=7)) == 2  # a different --k
    assert "--k" in capsys.readouterr().err
    assert main(_argv(out_b, "--resume", "--estimator", "dreg", epochs=2)) == 2
    assert rpath.read_bytes() == before

    assert main(_argv(out_b, "--resume", epochs=2)) == 0
    a, b = load_checkpoint(uninterrupted), load_checkpoint(out_b)
    assert _state_dicts_equal(a.model.state_dict(), b.model.state_dict())
    ha, hb = a.metadata["history"], b.metadata["history"]
    assert len(ha) == len(hb) == 2 and a.metadata["epochs"] == b.metadata["epochs"] == 2
    for ra, rb in zip(ha, hb, strict=True):
        assert (ra["epoch"], ra["lr"], ra["test_images"]) == (rb["epoch"], rb["lr"], rb["test_images"])
        assert ra["test_bound"] == rb["test_bound"]
        assert ra["train_bound"] == rb["train_bound"]  # the carried partial sum is exact (float64 in JSON)
    assert [r["lr"] for r in ha] == [learning_rate("decay", 1e-3, e, 2) for e in range(2)]


def test_resume_an_epoch_boundary_and_a_finished_run(uninterrupted, tmp_path):
    """Interrupt exactly at the end of epoch 1 (step 15), resume, and compare; resuming a finished run is a no-op."""
    out_c = tmp_path / "c.safetensors"
    assert main(_argv(out_c, "--stop-after-steps", str(STEPS_PER_EPOCH), epochs=2)) == 130
    assert main(_argv(out_c, "--resume", epochs=2)) == 0
    a, c = load_checkpoint(uninterrupted), load_checkpoint(out_c)
    assert _state_dicts_equal(a.model.state_dict(), c.model.state_dict())
    assert [r["test_bound"] for r in a.metadata["history"]] == [r["test_bound"] for r in c.metadata["history"]]
    weights = out_c.read_bytes()
    assert main(_argv(out_c, "--resume", epochs=2)) == 0  # already done: nothing to train
    assert load_checkpoint(out_c).metadata["history"] == c.metadata["history"]
    assert out_c.read_bytes() == weights


def test_training_changes_the_model_and_improves_the_test_bound(uninterrupted):
    history = load_checkpoint(uninterrupted).metadata["history"]
    assert history[1]["test_bound"] > history[0]["test_bound"]


def test_resume_refuses_a_different_training_set(tmp_path, capsys):
    """--max-train-images changes the data (and the steps per epoch): resuming with another value cannot reproduce
    the run being resumed, so it must be refused like a different --k."""
    out = tmp_path / "d.safetensors"
    assert main(_argv(out, "--max-train-images", "1000", "--stop-after-steps", "3")) == 130
    assert main(_argv(out, "--resume", "--max-train-images", "500")) == 2
    assert "--max-train-images" in capsys.readouterr().err


def test_resume_without_a_resume_file_returns_2(tmp_path, capsys):
    assert main(_argv(tmp_path / "none.safetensors", "--resume")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_error_returns_2_without_network(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    bad = tmp_path / "mnist"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"not the real file")
    assert main(["--dataset", "mnist", "--data-dir", str(bad), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--objective", "vae", "--estimator", "dreg"],
        ["--k", "0"],
        ["--epochs", "0"],
        ["--out", "model.pt"],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv, tmp_path):
    full = ["--dataset", "digits", "--out", str(tmp_path / "x.safetensors"), *argv]
    with pytest.raises(SystemExit) as info:
        main(full)
    assert info.value.code == 2
    assert not (tmp_path / "x.safetensors").exists()


# --- learning-rate schedules --------------------------------------------------------------------------------------


def test_paper_schedule():
    lr = 1e-3

    def rate(epoch):
        return learning_rate("paper", lr, epoch, 3280)

    assert rate(0) == pytest.approx(1e-3, rel=1e-12)
    for e in (1, 2, 3):
        assert rate(e) == pytest.approx(1e-3 * 10 ** (-1 / 7), rel=1e-12)
    for e in (4, 12):
        assert rate(e) == pytest.approx(1e-3 * 10 ** (-2 / 7), rel=1e-12)
    assert rate(13) == pytest.approx(1e-3 * 10 ** (-3 / 7), rel=1e-12)
    assert rate(3279) == pytest.approx(1e-4, rel=1e-12)
    assert rate(1092) == pytest.approx(1e-3 * 10 ** (-6 / 7), rel=1e-12)  # stage 6 covers epochs 364..1092
    assert rate(1093) == pytest.approx(1e-4, rel=1e-12)  # stage 7 (3^7 = 2187 epochs) starts at epoch 1093
    assert rate(10_000) == pytest.approx(1e-4, rel=1e-12)  # stays at the last rate
    # Stage i lasts exactly 3^i epochs.
    rates = [rate(e) for e in range(3280)]
    lengths = [sum(1 for r in rates if r == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)) for i in range(8)]
    assert lengths == [3**i for i in range(8)]


def test_decay_and_constant_schedules():
    rates = [learning_rate("decay", 1e-3, e, 80) for e in range(80)]
    assert rates[0] == pytest.approx(1e-3, rel=1e-12)
    assert rates[-1] == pytest.approx(1e-4, rel=1e-12)
    assert all(b <= a for a, b in zip(rates, rates[1:], strict=False))
    distinct = sorted(set(rates), reverse=True)
    assert distinct == pytest.approx([1e-3 * 10 ** (-i / 7) for i in range(8)], rel=1e-12)
    assert all(rates.count(r) == 10 for r in distinct)  # eight equal stages
    assert learning_rate("decay", 1e-3, 0, 1) == pytest.approx(1e-3)
    assert [learning_rate("constant", 5e-4, e, 10) for e in (0, 9, 50)] == [5e-4] * 3
    with pytest.raises(ValueError):
        learning_rate("cosine", 1e-3, 0, 10)


# --- SIGINT in a real process -------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.slow
def test_sigint_saves_a_resume_file_and_exits_130(tmp_path):
    out = tmp_path / "sig.safetensors"
    rpath = resume_path(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "iwae.train", *_argv(out, "--save-every", "0", "--threads", "1", epochs=50)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240  # generous: a loaded 2-core CI box starts torch slowly
        while not rpath.exists():  # --save-every 0 writes one after the first step: the handler is installed
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no resume file within 240 s"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (stdout, stderr)
    assert "interrupted" in stdout and "Traceback" not in stderr
    tensors, header = read_tensors(rpath)
    state = json.loads(header["resume"])
    assert state["step"] >= 1 and state["args"]["k"] == 5 and state["args"]["epochs"] == 50
    model = VAE(ModelConfig(input_dim=64))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files
