"""Settle the images where scripts/quadrature_accuracy.py found the error estimate below the difference from its 3x
finer pass: integrate each again with a deeper reference (the finer grid plus 2x finer subdivision and a 16x smaller
resolution target, ``quadrature.refine(..., oversample=2)``) and compare the evaluation's value with that.

    python scripts/quadrature_deeper_check.py [names ...] [--results docs/results] [--checkpoints checkpoints]

Reads every ``<results>/quadrature-accuracy-<name>.json`` (or those of the models named, keeping the other models'
rows), writes ``<results>/quadrature-underestimates-deeper.json`` (one row per image: the evaluation's log p(x) and
error estimate, the finer and the deeper references with their own estimates, the error against each). About 15 s an
image on one core.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iwae import quadrature as quad  # noqa: E402
from iwae import testset  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402
from scripts.quadrature_accuracy import DEEPER_OVERSAMPLE, FINER_SPACING  # noqa: E402  (the same reference passes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="models to check (default: every accuracy file)")
    p.add_argument("--results", type=Path, default=Path("docs/results"))
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    args = p.parse_args()
    flush_denormals()
    torch.set_num_threads(1)
    x, _ = testset.load()
    target = args.results / "quadrature-underestimates-deeper.json"
    earlier = json.loads(target.read_text()) if target.is_file() and args.names else []
    out = [r for r in earlier if r["model"] not in args.names]  # the other models' rows stay
    for path in sorted(args.results.glob("quadrature-accuracy-*.json")):
        name = path.stem.removeprefix("quadrature-accuracy-")
        if args.names and name not in args.names:
            continue
        rows = json.loads(path.read_text())["rows"]
        under = [r for r in rows if r["estimate"] < r["real_error"] and "deeper_reference" not in r]
        if not under:
            continue
        model = load_checkpoint(args.checkpoints / f"{name}.safetensors").model
        grid, fine = quad.global_grid(model), quad.global_grid(model, spacing=FINER_SPACING)
        for r in under:
            i, started = r["image"], time.time()
            q = quad.refine_image(model, grid, x[i])
            d = quad.refine_image(model, fine, x[i], oversample=DEEPER_OVERSAMPLE)
            row = {"model": name, "image": i, "log_px": q.log_px, "estimate": q.error_estimate,
                   "finer": r["reference"], "finer_estimate": r["reference_estimate"], "deeper": d.log_px,
                   "deeper_estimate": d.error_estimate, "error_vs_finer": abs(q.log_px - r["reference"]),
                   "error_vs_deeper": abs(q.log_px - d.log_px), "seconds": time.time() - started}
            out.append(row)
            print(json.dumps(row), flush=True)
    target.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
