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
from .checkpoints import CheckpointError, load_checkpoint, update_metadata
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


def active_units(model: VAE, x: torch.Tensor) -> tuple[int, list[float]]:
    mu, _ = latent_means(model, x)
    variances = mu.var(0).tolist()
    return sum(v > ACTIVE_UNIT_THRESHOLD for v in variances), variances


def evaluate(
    model: VAE, x: torch.Tensor, k: int = 5000, seed: int = 0, quiet: bool = False, per_image: dict | None = None
) -> dict:
    """Summary metrics; per-image arrays are stored into ``per_image`` when a dict is given."""
    gen = torch.Generator().manual_seed(seed)
    started = time.time()
    with tqdm(total=len(x), desc=f"IS k={k}", disable=quiet, leave=False) as bar:
        sampled = sampled_bounds(model, x, k, gen, progress=bar.update)
    t_is = time.time() - started
    started = time.time()
    grid = quad.global_grid(model)
    with tqdm(total=len(x), desc="quadrature", disable=quiet, leave=False) as bar:
        log_px, err = quad.log_px_batch(model, grid, x, progress=bar.update)
    t_quad = time.time() - started
    n_active, variances = active_units(model, x)
    gap = log_px - sampled["is"]
    if per_image is not None:
        per_image.update({name: v.numpy() for name, v in sampled.items()})
        per_image.update(log_px_quadrature=log_px.numpy(), quadrature_error=err.numpy())
    n = len(x)
    return {
        "n_images": n,
        "nll_quadrature": -log_px.mean().item(),
        "nll_quadrature_max_error": err.max().item(),
        "nll_quadrature_mean_error": err.mean().item(),
        "nll_is5000" if k == 5000 else f"nll_is{k}": -sampled["is"].mean().item(),
        "nll_is_sem": (sampled["is"].std() / math.sqrt(n)).item(),
        "elbo": sampled["elbo"].mean().item(),
        "l5": sampled["l5"].mean().item(),
        "l50": sampled["l50"].mean().item(),
        "quadrature_minus_is_mean": gap.mean().item(),
        "images_quadrature_above_is_by_1nat": int((gap > 1).sum()),
        "images_is_above_quadrature_by_0.1nat": int((gap < -0.1).sum()),
        "active_units": n_active,
        "latent_variances": variances,
        "is_k": k,
        "protocol": (
            f"MNIST test set, {n} images, binarized once (seed {testset.data.TEST_BINARIZATION_SEED}); "
            f"IS with k={k} draws from q (sampling seed {seed}); ELBO, L_5, L_50 from the same draws; "
            f"quadrature: global grid [-{quad.HALF_WIDTH}, {quad.HALF_WIDTH}]^2 spacing {quad.COARSE_SPACING}, "
            f"adaptive refinement up to {quad.MAX_SUBDIVISION}x"
        ),
        "seconds": {"is": t_is, "quadrature": t_quad},
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
    }


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
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
        per_image = {} if args.per_image else None
        metrics = evaluate(ckpt.model, x, args.k, args.seed, args.quiet, per_image)
        if per_image:
            np.savez_compressed(per_image_path(path), **per_image)
        rows.append((ckpt.name, metrics))
        if args.write:
            update_metadata(path, {"metrics": metrics})
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
