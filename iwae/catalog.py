"""A folder of model checkpoints: which files are models, and loading each of them on its own.

- Checkpoints are ``<dir>/*.safetensors`` except ``*.resume.safetensors`` (training state) and hidden temporary
  files; ``<dir>`` is ``$IWAE_CHECKPOINT_DIR`` or ``checkpoints/`` beside the package.
- Every checkpoint is loaded on its own; a broken one gives an error message, the others still load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import Checkpoint, CheckpointError, load_checkpoint

CHECKPOINT_DIR_ENV = "IWAE_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

Loaded = tuple[Checkpoint | None, str | None]  # (checkpoint, None) or (None, why it cannot be used)


def checkpoint_dir() -> Path:
    """``$IWAE_CHECKPOINT_DIR`` when set (tests use it), else ``checkpoints/`` in the repository."""
    env = os.environ.get(CHECKPOINT_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_CHECKPOINT_DIR


def discover(directory: Path | str) -> list[Path]:
    """Model checkpoints in a folder, sorted by name: no training-state files, no temporary files."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.glob("*.safetensors")
        if not p.name.endswith(".resume.safetensors") and not p.name.startswith(".") and p.is_file()
    )


def checkpoint_name(path: Path | str) -> str:
    return Path(path).name.removesuffix(".safetensors")


def file_stamp(path: Path | str) -> int:
    """Modification time in ns (0 if the file vanished): part of every cache key, so a retrained
    checkpoint is reloaded."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


@dataclass
class Catalog:
    directory: Path
    checkpoints: dict[str, Checkpoint]  # name -> loaded checkpoint, in name order
    errors: dict[str, str]  # name -> why it could not be loaded

    @property
    def names(self) -> list[str]:
        return list(self.checkpoints)


def try_load(path: Path | str, loader: Callable[[Path | str], Checkpoint] = load_checkpoint) -> Loaded:
    """(checkpoint, None) or (None, the reason it cannot be used); never raises."""
    try:
        return loader(path), None
    except CheckpointError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any unexpected failure still leaves the others usable
        return None, f"{path}: could not be loaded ({type(exc).__name__}: {exc})"


def load_catalog(directory: Path | str, load: Callable[[Path], Loaded] = try_load) -> Catalog:
    """Every checkpoint in ``directory``, each through ``load`` (a path -> ``Loaded``; the app passes a cached
    one); a failure is recorded and the others still load."""
    directory = Path(directory)
    loaded, errors = {}, {}
    for path in discover(directory):
        ckpt, error = load(path)
        name = checkpoint_name(path)
        if ckpt is not None:
            loaded[name] = ckpt
        else:
            errors[name] = error or f"{path}: could not be loaded"
    return Catalog(directory, loaded, errors)
