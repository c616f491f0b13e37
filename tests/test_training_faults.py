"""Training under faults: the CLI SIGKILLed at random moments and resumed, on sklearn digits.

- ``test_random_sigkills_then_resume_match_the_uninterrupted_run``: ``python -m iwae.train`` in a subprocess, killed
  with SIGKILL at seeded random moments (during start-up, between steps, inside a save, ...) five times, each time
  restarted with ``--resume`` (without it when no resume file exists yet). After every kill: the output path is
  absent or a complete checkpoint, the resume file is absent or complete, the two agree, and the resume position
  never goes backwards; the next run resumes exactly there. The last, uninterrupted resume ends with a valid
  checkpoint holding every epoch, no temporary file left in the folder, and the very weights and history of an
  uninterrupted run with the same seed (resuming is bit-exact on CPU, so the steps a kill loses since the last
  resume file are recomputed identically).
  Only this package's own temporary files may appear (``.<name>.<pid>.<random>.tmp``): safetensors' ``save_file``
  writes through an anonymous ``.tmpXXXXXX`` of its own, which a kill left behind; checkpoints no longer use it.
- A kill inside a save, made certain (the subprocess hangs between writing the temporary file and the rename): the
  stale temporary file is removed by the next run, and the checkpoint the kill prevented is rewritten on resume.
- ``stale_temp_files`` never lists a temporary file whose writer is still running.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from iwae.checkpoints import (
    LEGACY_TEMP_AGE_S,
    atomic_save_tensors,
    load_checkpoint,
    read_tensors,
    remove_stale_temp_files,
    stale_temp_files,
)
from iwae.model import VAE, ModelConfig
from iwae.train import main, resume_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 12  # 15 steps of k = 5 each: 0.2-0.5 s per epoch here
KILLS = 5
KILL_SEED = int(os.environ.get("IWAE_FAULT_SEED", "20261121"))  # another seed: other kill moments
START_TIMEOUT_S = 240  # a loaded 2-core box starts torch slowly
RUN_TIMEOUT_S = 600


def _argv(out: Path, *extra: str, epochs: int = EPOCHS) -> list[str]:
    return ["--dataset", "digits", "--k", "5", "--epochs", str(epochs), "--seed", "3", "--threads", "1", "--quiet",
            "--out", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _temp_pattern(out: Path) -> re.Pattern:
    names = "|".join(re.escape(p.name) for p in (out, resume_path(out)))
    return re.compile(rf"^\.(?:{names})\.\d+\.[a-z0-9_]{{8}}\.tmp$")


def _resume_state(rpath: Path) -> dict:
    """Read the resume file completely (every tensor, the header); its weights load into the model."""
    tensors, header = read_tensors(rpath)
    state = json.loads(header["resume"])
    model = VAE(ModelConfig(input_dim=64))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "rng" in tensors and any(k.startswith("adam.") for k in tensors)
    return state


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _assert_same_run(reference: Path, other: Path) -> None:
    a, b = load_checkpoint(reference), load_checkpoint(other)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"weights differ from the uninterrupted run: {different}"
    for ra, rb in zip(a.metadata["history"], b.metadata["history"], strict=True):
        assert {k: ra[k] for k in ("epoch", "lr", "train_bound", "test_bound", "test_images")} == \
               {k: rb[k] for k in ("epoch", "lr", "train_bound", "test_bound", "test_images")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run without faults, in this process (one torch thread, as the subprocesses)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "ref.safetensors"
    assert main(_argv(out)) == 0
    return out


def _check_after_kill(out: Path, progress: tuple[int, int]) -> tuple[tuple[int, int], dict | None, list[str]]:
    """What a kill may leave: complete files only (plus hidden temporary files), consistent with each other, and a
    resume position no earlier than before. Returns (position, resume state, temporary file names)."""
    rpath = resume_path(out)
    names = sorted(p.name for p in out.parent.iterdir())
    temps = [n for n in names if n not in (out.name, rpath.name)]
    pattern = _temp_pattern(out)
    assert all(pattern.match(n) for n in temps), names  # nothing else, and never a partial file at a real name
    state = _resume_state(rpath) if rpath.exists() else None
    position = (state["epoch"], state["step"]) if state else (0, 0)
    assert position >= progress, f"the resume position went back from {progress} to {position}"
    if out.exists():
        ckpt = load_checkpoint(out)
        history = ckpt.metadata["history"]
        assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))
        assert ckpt.metadata["epochs"] == len(history) and all(torch.isfinite(p).all() for p in ckpt.model.parameters())
        assert state is not None, "a checkpoint without a resume file"
        # The checkpoint holds the resume file's completed epochs, or one fewer when the kill came between the
        # epoch's resume file and its checkpoint.
        assert len(history) == state["epoch"] or (state["step"] == 0 and len(history) == state["epoch"] - 1), \
            (len(history), position)
        assert history == state["history"][: len(history)]
    else:
        assert state is None or state["epoch"] == 0 or (state["epoch"], state["step"]) == (1, 0), position
    return position, state, temps


@pytest.mark.slow
def test_random_sigkills_then_resume_match_the_uninterrupted_run(tmp_path, uninterrupted):
    rng = random.Random(KILL_SEED)
    out = tmp_path / "run" / "f.safetensors"
    out.parent.mkdir()
    rpath = resume_path(out)
    progress, state = (0, 0), None
    # Kill delays in units of this machine's epoch time (measured by the uninterrupted run), so that five kills land
    # before the end of the run on a fast machine too, at random points within an epoch.
    epoch_s = sorted(r["seconds"] for r in load_checkpoint(uninterrupted).metadata["history"])[EPOCHS // 2]
    report = []  # one line per kill, shown when an assertion fails
    for i in range(KILLS):
        # A kill during start-up (imports, data) now and then; otherwise once this run has saved progress of its
        # own, after a random delay: between steps, inside a save, in the epoch-end evaluation...
        during_startup = i > 0 and rng.random() < 0.25
        delay = rng.uniform(0.5, 3.0) if during_startup else rng.uniform(0.0, 1.5) * epoch_s
        save_every = rng.choice(["0", "0", "0.05", "1000"])  # 1000: resume files at epoch ends only
        resumed = rpath.exists()
        cmd = [sys.executable, "-m", "iwae.train", *_argv(out, "--save-every", save_every),
               *(["--resume"] if resumed else [])]
        log = tmp_path / f"run-{i}.log"
        before = _inode(rpath)
        with open(log, "w") as stream:
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=stream, stderr=subprocess.STDOUT)
        try:
            if not during_startup:
                deadline = time.monotonic() + START_TIMEOUT_S
                while _inode(rpath) == before:  # every save replaces the file: a new inode
                    assert proc.poll() is None, f"run {i} exited with {proc.returncode}:\n{log.read_text()}"
                    assert time.monotonic() < deadline, f"run {i} saved nothing in {START_TIMEOUT_S} s"
                    time.sleep(0.005)
            time.sleep(delay)
            assert proc.poll() is None, (f"run {i} ended before its kill (exit {proc.returncode}): train longer\n"
                                         + log.read_text())
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        text = log.read_text()
        assert "Traceback" not in text, text
        if resumed and state is not None and "resuming" in text:  # it got that far: resumed exactly where saved
            n_batches = 15
            assert f"at epoch {state['epoch'] + 1}, step {state['step']}/{n_batches}" in text, (text, state)
        progress, state, temps = _check_after_kill(out, progress)
        report.append(f"kill {i + 1}: {'start-up' if during_startup else 'training'} +{delay:.2f}s (epoch "
                      f"{epoch_s:.2f}s), save-every "
                      f"{save_every}: resume position {progress}, temporary files {temps}")
    print("\n".join(report))
    assert progress > (0, 0), report  # the kills did not keep the run from making progress
    assert progress < (EPOCHS, 0), report  # and the run was not over before the last kill

    final = subprocess.run([sys.executable, "-m", "iwae.train", *_argv(out, "--save-every", "0", "--resume")],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert final.returncode == 0, (final.stdout, final.stderr, report)
    assert f"at epoch {progress[0] + 1}, step {progress[1]}/" in final.stdout, final.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.metadata["epochs"] == EPOCHS
    assert [r["epoch"] for r in ckpt.metadata["history"]] == list(range(1, EPOCHS + 1))
    assert _resume_state(rpath)["epoch"] == EPOCHS
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, rpath.name])  # no temporary files
    _assert_same_run(uninterrupted, out)


# A training run whose save of the named target hangs after its temporary file is complete, before the rename.
HANG_IN_SAVE = """
import os, sys, time
from pathlib import Path
from iwae.train import main

target, argv = sys.argv[1], sys.argv[2:]
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    if Path(src).name.startswith("." + target + "."):
        print("WRITTEN", src, flush=True)
        time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def uninterrupted_two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted2") / "ref2.safetensors"
    assert main(_argv(out, epochs=2)) == 0
    return out


@pytest.mark.slow
def test_kill_inside_the_checkpoint_save(tmp_path, uninterrupted_two_epochs, capsys):
    """SIGKILL between writing the first checkpoint's temporary file and its rename: no checkpoint, the complete
    end-of-epoch resume file, and a stale temporary file. The resume removes the temporary file, rewrites the missing
    checkpoint from the resumed weights, finishes, and matches the uninterrupted run."""
    out = tmp_path / "g.safetensors"
    rpath = resume_path(out)
    argv = _argv(out, "--save-every", "1000", epochs=2)
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_SAVE, out.name, *argv], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the hang (or the end of the process)
        assert line.startswith("WRITTEN"), (line, proc.communicate(timeout=60))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]
    assert re.fullmatch(rf"\.{re.escape(out.name)}\.{proc.pid}\.[a-z0-9_]{{8}}\.tmp", tmp.name), tmp.name
    assert not out.exists()  # never a partial file at the output path
    state = _resume_state(rpath)
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 0, 1)  # written just before the checkpoint
    assert stale_temp_files(out) == [tmp]

    assert main([*argv, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"removed {tmp}" in printed and f"rewrote {out} (epoch 1)" in printed, printed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, rpath.name])
    _assert_same_run(uninterrupted_two_epochs, out)


def test_resume_rewrites_a_checkpoint_behind_the_resume_file(tmp_path, uninterrupted_two_epochs):
    """A kill between the last epoch's resume file and its checkpoint leaves a finished resume file beside the
    previous epoch's checkpoint (or none): --resume has nothing left to train, and rewrites the checkpoint."""
    out = tmp_path / "h.safetensors"
    argv = _argv(out, "--save-every", "1000", epochs=2)
    assert main([*argv, "--stop-after-steps", "16"]) == 130  # one step into epoch 2: the checkpoint of epoch 1
    epoch_one = out.read_bytes()
    assert main([*argv, "--resume"]) == 0
    _assert_same_run(uninterrupted_two_epochs, out)

    out.write_bytes(epoch_one)  # as if killed between the final resume file and the final checkpoint
    assert main([*argv, "--resume"]) == 0
    _assert_same_run(uninterrupted_two_epochs, out)
    out.unlink()  # or with the checkpoint missing
    assert main([*argv, "--resume"]) == 0
    _assert_same_run(uninterrupted_two_epochs, out)
    rewritten = out.read_bytes()
    assert main([*argv, "--resume"]) == 0  # up to date now: left alone
    assert out.read_bytes() == rewritten


def test_stale_temp_files_spare_live_writers(tmp_path):
    target = tmp_path / "t.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = {
        "dead": tmp_path / f".t.safetensors.{dead.pid}.abcd_123.tmp",  # its writer was killed
        "live": tmp_path / f".t.safetensors.{os.getpid()}.efgh4567.tmp",  # a save in progress (this process)
        "legacy_new": tmp_path / ".t.safetensors.ijkl8901.tmp",  # an older version's name, recent: may be in use
        "legacy_old": tmp_path / ".t.safetensors.mnop2345.tmp",  # ... and long abandoned
        "other": tmp_path / f".u.safetensors.{dead.pid}.qrst6789.tmp",  # another target's
        "resume": tmp_path / f".t.resume.safetensors.{dead.pid}.uvwx0123.tmp",  # another target's too
    }
    for path in files.values():
        path.write_bytes(b"partial")
    old = time.time() - LEGACY_TEMP_AGE_S - 60
    os.utime(files["legacy_old"], (old, old))
    assert stale_temp_files(target) == sorted([files["dead"], files["legacy_old"]])
    assert remove_stale_temp_files(target) == sorted([files["dead"], files["legacy_old"]])
    # A successful save of the target removes what is stale for it, after its own rename.
    files["dead2"] = tmp_path / f".t.safetensors.{dead.pid}.yz012345.tmp"
    files["dead2"].write_bytes(b"partial")
    atomic_save_tensors({"a": torch.ones(2)}, {"k": "v"}, target)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([target.name] + [files[k].name for k in ("live", "legacy_new", "other", "resume")])
