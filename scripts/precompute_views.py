"""Compute the explorer's views that are pure functions of the shipped models, once, and ship them beside the
checkpoints (iwae/precomputed.py says what and why):

    python scripts/precompute_views.py [NAME ...] [--checkpoints checkpoints] [--no-toy] [--threads 1] [--force]

- ``<name>.views.npz`` for each named checkpoint (default: every checkpoint in the folder): the latent means of the
  10,000 test images, their 5-NN accuracy, and L_K against K over the first 10 / 20 / 50 / 100 test images with
  their mean quadrature log p(x); about 1 minute per model on one core;
- ``toy-fits.npz``: the toy page's fits at seeds 0-9 (``precomputed.TOY_SEEDS``), every target and K; about
  15 s per seed.
A file already made from the same weights is skipped (``--force`` recomputes it: after a change to the quadrature or
the curves). Rerun after retraining a model: the explorer ignores a file made from other weights and computes the
views live (slowly) instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.state import K_CHOICES  # noqa: E402  (the K slider: the curves have one point per choice)
from iwae import catalog, precomputed, testset  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def model_views(path: Path, images: torch.Tensor, labels, force: bool = False) -> None:
    model = load_checkpoint(path).model
    out = precomputed.views_path(path)
    if not force and precomputed.load_model_views(out, model, K_CHOICES) is not None:
        log(f"{out.name}: up to date")
        return
    started = time.time()
    views = precomputed.compute_model_views(model, images, labels, K_CHOICES,
                                            progress=lambda what: log(f"{path.stem}: {what}"))
    precomputed.save_model_views(out, views)
    log(f"wrote {out} ({time.time() - started:.0f} s)")


def toy_fits(folder: Path) -> None:
    """The fits missing from the toy-fits file (all of them when it is absent or stale), written with those it has."""
    out = folder / precomputed.TOY_FITS_FILE
    have = precomputed.load_toy_fits(out)
    missing = [key for key in precomputed.toy_fit_keys() if key not in have]
    if not missing:
        log(f"{out.name}: up to date")
        return
    started = time.time()
    fits = precomputed.compute_toy_fits(missing, progress=lambda what: log(f"toy fit: {what}"))
    precomputed.save_toy_fits(out, list(have.values()) + fits)
    log(f"wrote {out} ({len(missing)} new fits, {time.time() - started:.0f} s)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="checkpoint names (default: every checkpoint in the folder)")
    p.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints", help="the checkpoint folder")
    p.add_argument("--no-toy", action="store_true", help="leave out the toy fits")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--force", action="store_true",
                   help="recompute the models' views even where the file matches the weights (after a change to the "
                        "quadrature or the curves, which the file does not record)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    flush_denormals()
    found = {catalog.checkpoint_name(path): path for path in catalog.discover(args.checkpoints)}
    unknown = [n for n in args.names if n not in found]
    if unknown:
        p.error(f"no checkpoint named {', '.join(unknown)} in {args.checkpoints} (there: {', '.join(found)})")
    images, labels = testset.load()
    labels = labels.numpy()
    for name in args.names or list(found):
        model_views(found[name], images, labels, args.force)
    if not args.no_toy:
        toy_fits(args.checkpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
