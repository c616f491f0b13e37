"""Evaluation CLI: ``python -m iwae.evaluate checkpoints/*.safetensors [--images N] [--write]``.

Per checkpoint, on the fixed binarized MNIST test set (or a prefix of it):
- test NLL by importance sampling with k = 5000 draws from q (chunked: bounded memory);
- ELBO, L_5 and L_50, all estimated from the same 5000 draws per image (1 x 5000, 1000 blocks of 5,
  100 blocks of 50): unbiased for each bound;
- active units (Burda et al.: Cov_x(E_q[u]) > 0.01);
- exact log p(x) by adaptive quadrature on the 2-D latent plane (``quadrature.py``), with its
  estimated error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import quadrature as quad
from . import testset
from .bounds import iwae_bound
from .checkpoints import CheckpointError, load_checkpoint, read_metadata, update_metadata, weights_digest
from .cpu import flush_denormals
from .latent import latent_means
from .model import VAE

ACTIVE_UNIT_THRESHOLD = 1e-2


@torch.no_grad()
def sampled_bounds(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator, batch: int = 10, progress=None):
    """Per image: IS log p(x) with k draws, ELBO, L_5 and L_50 from the same draws.  -> dict of (N,)"""
    out = {name: torch.empty(len(x), dtype=torch.float64) for name in ("is", "elbo", "l5", "l50")}
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        log_w = model.log_weights(xb, k, generator).log_w.double()  # (b, k)
        sl = slice(start, start + len(xb))
        out["is"][sl] = iwae_bound(log_w)
        out["elbo"][sl] = log_w.mean(-1)
        for name, kk in (("l5", 5), ("l50", 50)):
            blocks = k // kk
            out[name][sl] = iwae_bound(log_w[:, : blocks * kk].reshape(len(xb), blocks, kk)).mean(-1)
        if progress is not None:
            progress(len(xb))
    return out


def per_image_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".per-image.npz")


PER_IMAGE_DIGEST = "weights_sha256"  # the per-image file's record of the weights its numbers belong to


def save_per_image(checkpoint: Path, arrays: dict[str, np.ndarray], digest: str) -> None:
    """``<name>.per-image.npz`` beside the checkpoint, atomically: the per-image arrays (images in test-set order)
    and the sha256 of the weights they were computed from (``weights_digest``)."""
    path = per_image_path(checkpoint)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays, **{PER_IMAGE_DIGEST: np.array(digest)})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_per_image(checkpoint: Path, digest: str) -> dict[str, np.ndarray] | None:
    """The per-image arrays of the checkpoint's evaluation when they were computed from the weights with this
    sha256; None when the file is absent, unreadable, records no weights or other weights."""
    try:
        with np.load(per_image_path(Path(checkpoint)), allow_pickle=False) as f:
            if PER_IMAGE_DIGEST not in f.files or str(f[PER_IMAGE_DIGEST]) != digest:
                return None
            return {name: f[name] for name in f.files if name != PER_IMAGE_DIGEST}
    except (OSError, ValueError):
        return None


def active_units(model: VAE, x: torch.Tensor) -> tuple[int, list[float]]:
    mu, _ = latent_means(model, x)
    variances = mu.var(0).tolist()
    return sum(v > ACTIVE_UNIT_THRESHOLD for v in variances), variances


EVAL_STATE_SAVE_SECONDS = 60.0
SAMPLED = ("is", "elbo", "l5", "l50")
QUADRATURE = ("log_px_quadrature", "quadrature_error", "quadrature_half_width")


def state_path(checkpoint: Path) -> Path:
    """Progress of an interrupted evaluation: ``<name>.eval-state.npz`` beside the checkpoint."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".eval-state.npz")


class EvaluationState:
    """Per-image results so far, saved atomically every EVAL_STATE_SAVE_SECONDS and on completion of a stage, so an
    interrupted evaluation resumes where it stopped and ends with the uninterrupted run's numbers (the sampling
    generator's state is saved with them)."""

    def __init__(self, path: Path | None, digest: str, n: int, k: int, seed: int):
        self.path, self.key = path, np.array([digest, str(n), str(k), str(seed)])
        self.arrays = {name: np.full(n, np.nan) for name in SAMPLED + QUADRATURE}
        self.done = {"is": 0, "quadrature": 0}
        self.seconds = {"is": 0.0, "quadrature": 0.0}
        self.generator = torch.Generator().manual_seed(seed)
        self.last_save = time.time()
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as f:
                if f["key"].tolist() == self.key.tolist():
                    self.arrays = {name: f[name].copy() for name in self.arrays}
                    self.done = {"is": int(f["done_is"]), "quadrature": int(f["done_quadrature"])}
                    self.seconds = {"is": float(f["seconds_is"]), "quadrature": float(f["seconds_quadrature"])}
                    self.generator.set_state(torch.from_numpy(f["generator"].copy()))

    def save(self, force: bool = False) -> None:
        if self.path is None or not (force or time.time() - self.last_save > EVAL_STATE_SAVE_SECONDS):
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, key=self.key, generator=self.generator.get_state().numpy(), done_is=self.done["is"],
                     done_quadrature=self.done["quadrature"], seconds_is=self.seconds["is"],
                     seconds_quadrature=self.seconds["quadrature"], **self.arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.last_save = time.time()


def evaluate(
    model: VAE, x: torch.Tensor, k: int = 5000, seed: int = 0, quiet: bool = False, per_image: dict | None = None,
    state_file: Path | None = None, reuse_sampled: dict | None = None, chunk: int = 50,
) -> dict:
    """Summary metrics; per-image arrays are stored into ``per_image`` when a dict is given.

    ``state_file``: where progress is saved (resumed from when it holds an unfinished evaluation of these weights).
    ``reuse_sampled``: per-image IS, ELBO, L_5 and L_50 of an earlier evaluation (with "seconds_is"), to recompute
    only the quadrature."""
    state = EvaluationState(state_file, weights_digest(model), len(x), k, seed)
    if reuse_sampled is not None:
        for name in SAMPLED:
            state.arrays[name] = np.asarray(reuse_sampled[name][: len(x)], dtype=np.float64)
        state.done["is"], state.seconds["is"] = len(x), float(reuse_sampled["seconds_is"])
    with tqdm(total=len(x), initial=state.done["is"], desc=f"IS k={k}", disable=quiet, leave=False) as bar:
        while state.done["is"] < len(x):
            started, sl = time.time(), slice(state.done["is"], min(len(x), state.done["is"] + chunk))
            sampled = sampled_bounds(model, x[sl], k, state.generator)
            for name in SAMPLED:
                state.arrays[name][sl] = sampled[name].numpy()
            state.done["is"], state.seconds["is"] = sl.stop, state.seconds["is"] + time.time() - started
            bar.update(sl.stop - sl.start)
            state.save(force=sl.stop == len(x))
    grid = quad.global_grid(model) if state.done["quadrature"] < len(x) else None
    with tqdm(total=len(x), initial=state.done["quadrature"], desc="quadrature", disable=quiet, leave=False) as bar:
        while state.done["quadrature"] < len(x):
            started, sl = time.time(), slice(state.done["quadrature"], min(len(x), state.done["quadrature"] + chunk))
            jb = quad.coarse_log_joint(grid, x[sl])
            for i, j in enumerate(jb):
                q = quad.refine(model, grid, x[sl.start + i], j)
                for name, value in zip(QUADRATURE, (q.log_px, q.error_estimate, q.half_width), strict=True):
                    state.arrays[name][sl.start + i] = value
            state.done["quadrature"] = sl.stop
            state.seconds["quadrature"] += time.time() - started
            bar.update(sl.stop - sl.start)
            state.save(force=sl.stop == len(x))
    a = {name: torch.from_numpy(v) for name, v in state.arrays.items()}
    log_px, err, is_ = a["log_px_quadrature"], a["quadrature_error"], a["is"]
    n_active, variances = active_units(model, x)
    gap = log_px - is_
    if per_image is not None:
        per_image.update(state.arrays)
    n = len(x)
    return {
        "n_images": n,
        "nll_quadrature": -log_px.mean().item(),
        "nll_quadrature_max_error": err.max().item(),
        "nll_quadrature_mean_error": err.mean().item(),
        "quadrature_images_grown": int((a["quadrature_half_width"] > quad.HALF_WIDTH).sum()),
        "quadrature_max_half_width": a["quadrature_half_width"].max().item(),
        "nll_is5000" if k == 5000 else f"nll_is{k}": -is_.mean().item(),
        "nll_is_sem": (is_.std() / math.sqrt(n)).item(),
        "elbo": a["elbo"].mean().item(),
        "l5": a["l5"].mean().item(),
        "l50": a["l50"].mean().item(),
        "quadrature_minus_is_mean": gap.mean().item(),
        "images_quadrature_above_is_by_1nat": int((gap > 1).sum()),
        "images_is_above_quadrature_by_0.1nat": int((gap < -0.1).sum()),
        "active_units": n_active,
        "latent_variances": variances,
        "is_k": k,
        "protocol": protocol(n, k, seed),
        "seconds": dict(state.seconds),
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
    }


def protocol(n: int, k: int, seed: int) -> str:
    return (
        f"MNIST test set, {n} images, binarized once (seed {testset.data.TEST_BINARIZATION_SEED}); "
        f"IS with k={k} draws from q (one sampling stream, seed {seed}); ELBO, L_5, L_50 from the same draws; "
        f"quadrature: global grid [-{quad.HALF_WIDTH:g}, {quad.HALF_WIDTH:g}]^2 spacing {quad.COARSE_SPACING}, grown "
        f"per image up to [-{quad.MAX_HALF_WIDTH:g}, {quad.MAX_HALF_WIDTH:g}]^2 until the mass outside changes "
        f"log p(x) by < {quad.OUTSIDE_NATS_TARGET:g} nats, adaptive refinement up to {quad.MAX_SUBDIVISION}x; "
        f"error estimate |sum (midpoint - trapezoid)| + {quad.CANCELLATION_ALLOWANCE:g} sum |midpoint - trapezoid| "
        f"+ outside bound"
    )


def format_table(rows: list[tuple[str, dict]]) -> str:
    head = (f"{'checkpoint':<16}{'images':>7}{'NLL quad':>10}{'(err)':>8}{'NLL IS5000':>12}{'ELBO':>10}"
            f"{'L_5':>10}{'L_50':>10}{'AU':>4}")
    lines = [head, "-" * len(head)]
    for name, m in rows:
        lines.append(
            f"{name:<16}{m['n_images']:>7}{m['nll_quadrature']:>10.2f}{m['nll_quadrature_max_error']:>8.1e}"
            f"{m.get('nll_is5000', float('nan')):>12.2f}{m['elbo']:>10.2f}{m['l5']:>10.2f}{m['l50']:>10.2f}"
            f"{m['active_units']:>4}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m iwae.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--test-set", type=Path, default=testset.DEFAULT_PATH, help="bit-packed binarized test set")
    p.add_argument("--images", type=int, default=10000, help="evaluate the first N test images")
    p.add_argument("--k", type=int, default=5000, help="IS draws per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store the metrics in each checkpoint's metadata")
    p.add_argument("--json", type=Path, default=None, help="also write all metrics to this JSON file")
    p.add_argument("--per-image", action="store_true",
                   help="save per-image log p(x) estimates next to each checkpoint (<name>.per-image.npz)")
    p.add_argument("--quadrature-only", action="store_true",
                   help="recompute the quadrature only, keeping the IS, ELBO, L_5 and L_50 of <name>.per-image.npz")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    flush_denormals()
    try:
        x, _ = testset.load(args.test_set)
    except testset.TestSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    x = x[: args.images]
    rows, failures = [], 0
    for path in args.checkpoints:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if ckpt.model.config.input_dim != x.shape[1]:
            print(f"error: {path} models {ckpt.model.config.input_dim}-pixel images, the test set has "
                  f"{x.shape[1]}", file=sys.stderr)
            failures += 1
            continue
        reuse = None
        if args.quadrature_only:
            try:
                with np.load(per_image_path(path), allow_pickle=False) as f:
                    reuse = {name: f[name] for name in SAMPLED}
                reuse["seconds_is"] = read_metadata(path)["metrics"]["seconds"]["is"]
            except (OSError, KeyError, CheckpointError) as exc:
                print(f"error: --quadrature-only needs {per_image_path(path)} and recorded metrics ({exc!r})",
                      file=sys.stderr)
                failures += 1
                continue
            if len(reuse["is"]) < len(x):
                print(f"error: {per_image_path(path)} holds {len(reuse['is'])} images, fewer than {len(x)}",
                      file=sys.stderr)
                failures += 1
                continue
        per_image = {} if args.per_image else None
        metrics = evaluate(ckpt.model, x, args.k, args.seed, args.quiet, per_image, state_path(path), reuse)
        if per_image:
            save_per_image(path, per_image, weights_digest(ckpt.model))
        rows.append((ckpt.name, metrics))
        if args.write:
            update_metadata(path, {"metrics": metrics})
        state_path(path).unlink(missing_ok=True)
        if not args.quiet:
            print(f"{ckpt.name}: done in {sum(metrics['seconds'].values()):.0f}s", flush=True)
    if rows:
        print(format_table(rows))
        print("Protocol:", rows[0][1]["protocol"])
        print("NLL = -mean log p(x) in nats; err = largest per-image quadrature error estimate; "
              "AU = active units (Cov_x E_q[z] > 0.01)")
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
