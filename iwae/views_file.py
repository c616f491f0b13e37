"""The file of a model's shipped views, ``<checkpoint name>.views.npz`` (computed by ``iwae.precomputed``): its name,
its layout and the check that it belongs to a model. No torch here, so that the explorer can read the latent means
before it imports torch.

Layout: ``meta``, a JSON string (the weights' digest, the K list, the kNN accuracy, the subset curves and their
protocol, the subset log p(x)), and ``latent_mu`` and ``latent_sd``, (N, 2) float32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIEWS_SUFFIX = ".views.npz"
SUBSET_SAMPLES = 5_000  # draws from q per image behind an averaged L_K curve
SUBSET_SEED = 0  # its draws: generator(SUBSET_SEED, "subset", n), whatever seed the viewer chose elsewhere


@dataclass
class ViewsFile:
    meta: dict
    latent_mu: np.ndarray  # (N, 2) float32, encoder means of the test images
    latent_sd: np.ndarray  # (N, 2) float32


def views_path(checkpoint: Path | str) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + VIEWS_SUFFIX)


def subset_protocol() -> dict:
    return {"samples": SUBSET_SAMPLES, "seed": SUBSET_SEED}


def read(path: Path | str, digest: str, ks) -> ViewsFile | None:
    """The file's contents when it exists and was made from the weights of this digest
    (``iwae.checkpoints.weights_digest``), for this K list and today's subset protocol; None otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        if (meta.get("digest"), meta.get("ks"), meta.get("subset_protocol")) != (digest, list(ks), subset_protocol()):
            return None
        return ViewsFile(meta, f["latent_mu"], f["latent_sd"])


def write(path: Path | str, meta: dict, latent_mu: np.ndarray, latent_sd: np.ndarray) -> None:
    atomic_savez(Path(path), meta=np.array(json.dumps(meta | {"subset_protocol": subset_protocol()})),
                 latent_mu=latent_mu, latent_sd=latent_sd)


def atomic_savez(path: Path, **arrays) -> None:
    """np.savez_compressed through a hidden temporary file and a rename: never a partial file at ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
