"""Checkpoints: safetensors weights plus JSON metadata in the file's header. No pickle anywhere.

Format (readable without this package: ``safetensors.safe_open(path, "pt").metadata()``):
- tensors: the model's ``state_dict`` (``encoder.{0,2,4}.{weight,bias}``, ``decoder.{0,2,4}.{weight,bias}``),
  float32;
- header metadata: ``{"format": FORMAT, "metadata": "<JSON>"}``; the JSON object holds the keys in
  ``REQUIRED_KEYS`` (see README for each one's meaning).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as save_bytes

from .model import VAE, ModelConfig

FORMAT = "iwae-explorer/1"
REQUIRED_KEYS = ("config", "objective", "k", "estimator", "epochs", "seed", "data", "history", "metrics")


def weights_digest(model: VAE) -> str:
    """sha256 of the weights: an evaluation state or a derived file belongs to exactly these weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: missing, truncated, not safetensors, or not matching its config."""


@dataclass
class Checkpoint:
    model: VAE
    metadata: dict
    path: Path

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".safetensors")


def atomic_save_tensors(tensors: dict[str, torch.Tensor], header: dict[str, str], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: never a partial file at path.

    The file is serialized in memory first and written by this function itself (``safetensors.torch.save_file``
    would write through a temporary ``.tmpXXXXXX`` of its own, named after neither the target nor the writer). The
    temporary file is ``.<name>.<pid>.<random>.tmp``: hidden, so the app's checkpoint discovery skips it. A process
    killed between creating it and the rename (SIGKILL, power loss) leaves it behind; every successful save then
    removes such stale files of the same target (``stale_temp_files``), as ``python -m iwae.train`` does on start."""
    path = Path(path)
    data = save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)
    remove_stale_temp_files(path)


TEMP_SUFFIX = ".tmp"
LEGACY_TEMP_AGE_S = 3600.0  # a temporary file named without its writer's pid counts as stale after this long


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell cheaply: never remove another process's file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def stale_temp_files(path: Path | str) -> list[Path]:
    """Temporary files of ``atomic_save_tensors`` for this target whose writer is gone: the pid in the name is no
    longer a running process (or, for names without a pid, written by older versions, the file is older than
    ``LEGACY_TEMP_AGE_S``). A save in progress in a live process is never listed. Pids are those of this machine."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        if match.group(1) is not None:
            if _pid_alive(int(match.group(1))):
                continue
        else:
            try:
                if time.time() - entry.stat().st_mtime < LEGACY_TEMP_AGE_S:
                    continue
            except OSError:
                continue
        stale.append(entry)
    return sorted(stale)


def remove_stale_temp_files(path: Path | str) -> list[Path]:
    """Delete ``stale_temp_files(path)``; returns those removed."""
    removed = []
    for entry in stale_temp_files(path):
        try:
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its header, turning every failure into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated, corrupt or another format): {exc}"
        ) from None
    return tensors, header


def save_checkpoint(model: VAE, metadata: dict, path: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}")
    header = {"format": FORMAT, "metadata": json.dumps(metadata)}
    atomic_save_tensors(model.state_dict(), header, path)


def read_metadata(path: Path) -> dict:
    _, header = read_tensors(path)
    return parse_metadata(path, header)


def parse_metadata(path: Path, header: dict[str, str]) -> dict:
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: header format is {header.get('format')!r}, expected {FORMAT!r}")
    try:
        metadata = json.loads(header["metadata"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: metadata is missing or not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object, got {type(metadata).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks the keys {missing}")
    return metadata


def model_from_tensors(path: Path, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> VAE:
    model = VAE(config)
    expected = model.state_dict()
    problems = [f"missing tensor {k}" for k in expected if k not in tensors]
    problems += [f"unexpected tensor {k}" for k in tensors if k not in expected]
    problems += [
        f"{k}: shape {tuple(tensors[k].shape)}, config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        raise CheckpointError(f"{path}: does not match its config {config}: " + "; ".join(problems))
    model.load_state_dict({k: tensors[k].float() for k in expected})
    return model


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Load weights and metadata; any problem raises CheckpointError with what is wrong."""
    path = Path(path)
    tensors, header = read_tensors(path)
    metadata = parse_metadata(path, header)
    try:
        config = ModelConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad config in metadata ({exc})") from None
    model = model_from_tensors(path, config, tensors)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Checkpoint(model=model, metadata=metadata, path=path)


def update_metadata(path: Path | str, updates: dict) -> None:
    """Merge ``updates`` into a checkpoint's metadata, rewriting the file atomically."""
    path = Path(path)
    tensors, header = read_tensors(path)
    metadata = parse_metadata(path, header)
    metadata.update(updates)
    atomic_save_tensors(tensors, {"format": FORMAT, "metadata": json.dumps(metadata)}, path)
