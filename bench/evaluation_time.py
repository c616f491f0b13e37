"""Time of ``python -m iwae.evaluate``'s work on one shipped model: a subset timed, the 10,000 test images extrapolated.

    python bench/evaluation_time.py [--checkpoint checkpoints/iwae-k50.safetensors] [--images 100] [--repeats 3]
                                    [--k 5000] [--threads N] [--json PATH]

Calls, in this process, the functions ``iwae.evaluate.evaluate`` calls, with its defaults, on the first ``--images``
images of the fixed binarized test set (after one untimed warm-up call of each on 2 images); medians of
``--repeats`` timings of:
- IS: ``evaluate.sampled_bounds`` with k = 5000 draws per image (IS log p(x), ELBO, L_5 and L_50 from the same
  draws), sampling seed 0 as in the CLI;
- quadrature: ``quadrature.log_px_batch`` (adaptive quadrature, exact log p(x) per image), after
  ``quadrature.global_grid`` (once per model, timed on its own);
- active units: ``evaluate.active_units``, on all 10,000 images (cheap: timed, not extrapolated).
The full evaluation of the 10,000 images is extrapolated: the per-image IS and quadrature times x 10,000, plus the
global grid and the active units. The first N images stand for the whole set: the IS cost is the same for every image,
the quadrature's varies with how many cells an image's posterior makes it refine, so that part of the estimate is as
good as the subset is typical. The real figure: ``python -m iwae.evaluate CHECKPOINT`` (tens of minutes on 2 cores).
Loading the checkpoint and the test set (well under a second) is not counted. The checkpoint is copied to a temporary
file first (training may rewrite the shipped file while this runs). The NLLs of the subset are printed as a check.
``--json PATH`` also writes the headline figures as rows for bench/run_all.py (``bench_row``); no targets.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_all import bench_row, write_rows  # noqa: E402
from iwae import evaluate, testset  # noqa: E402
from iwae import quadrature as quad  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402

BENCHMARK = "evaluation time"
FULL = 10_000  # test images of the real evaluation
WARMUP_IMAGES = 2


def timed_s(fn, repeats: int) -> tuple[list[float], object]:
    """Seconds of ``repeats`` calls of fn, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/iwae-k50.safetensors"))
    p.add_argument("--images", type=int, default=100, help="time the first N test images")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--k", type=int, default=5000, help="IS draws per image (the CLI's default: 5000)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the headline figures as JSON rows here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 1 <= args.images <= FULL or args.repeats < 1:
        p.error(f"--images must be in 1..{FULL} and --repeats at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / args.checkpoint.name
        shutil.copyfile(args.checkpoint, copy)
        ckpt = load_checkpoint(copy)
    model = ckpt.model
    x_all, _ = testset.load()
    x = x_all[: args.images]
    n = len(x)

    def is_part(xs):
        return evaluate.sampled_bounds(model, xs, args.k, torch.Generator().manual_seed(0))

    grid = quad.global_grid(model)  # warm-up of everything below, outside the timings
    is_part(x[:WARMUP_IMAGES])
    quad.log_px_batch(model, grid, x[:WARMUP_IMAGES])
    evaluate.active_units(model, x_all[:WARMUP_IMAGES])

    t_is, sampled = timed_s(lambda: is_part(x), args.repeats)
    t_grid, grid = timed_s(lambda: quad.global_grid(model), args.repeats)
    t_quad, (log_px, err) = timed_s(lambda: quad.log_px_batch(model, grid, x), args.repeats)
    t_au, (n_active, _) = timed_s(lambda: evaluate.active_units(model, x_all), args.repeats)
    is_s, grid_s, quad_s, au_s = (statistics.median(t) for t in (t_is, t_grid, t_quad, t_au))
    full_is, full_quad = is_s / n * FULL, grid_s + quad_s / n * FULL
    full = full_is + full_quad + au_s

    threads = torch.get_num_threads()
    model_text = f"{args.checkpoint.stem} ({ckpt.metadata.get('epochs')} ep)"
    print(
        f"python -m iwae.evaluate's work: {args.checkpoint} (epochs {ckpt.metadata.get('epochs')}), first {n} test "
        f"images, IS k={args.k}; torch {torch.__version__}, {threads} thread(s); median of {args.repeats} repeat(s) "
        f"after a warm-up on {WARMUP_IMAGES} images"
    )
    print(f"(check on these {n} images: NLL IS k={args.k} {-sampled['is'].mean().item():.2f}, quadrature "
          f"{-log_px.mean().item():.2f} (largest error estimate {err.max().item():.1e}), active units {n_active})")
    print()
    print(f"{'part':<44}{'median s':>10}{'per image ms':>14}{f'{FULL:,} images':>16}")
    print(f"{f'IS k={args.k} + ELBO, L_5, L_50 (sampled_bounds)':<44}{is_s:>10.2f}{is_s / n * 1e3:>14.1f}"
          f"{full_is / 60:>12.1f} min")
    print(f"{'global grid (once per model)':<44}{grid_s:>10.2f}{'':>14}{grid_s:>14.2f} s")
    print(f"{'quadrature (log_px_batch)':<44}{quad_s:>10.2f}{quad_s / n * 1e3:>14.1f}"
          f"{(full_quad - grid_s) / 60:>12.1f} min")
    print(f"{f'active units (all {FULL:,} images)':<44}{au_s:>10.2f}{'':>14}{au_s:>14.2f} s")
    print(f"{'full evaluation (extrapolated)':<44}{'':>10}{'':>14}{full / 60:>12.1f} min")
    print(f"\nExtrapolated from the first {n} images (per-image times x {FULL:,}); the real run is "
          f"`python -m iwae.evaluate {args.checkpoint}`.")

    if args.json:
        repeats = f"{args.repeats} repeat{'s' * (args.repeats != 1)}"
        protocol = f"{model_text}, first {n} test images x {repeats}, extrapolated to {FULL:,}; {threads} threads"
        write_rows(args.json, [
            bench_row(BENCHMARK, f"IS k={args.k} (+ ELBO, L_5, L_50), per image", is_s / n * 1e3, "ms",
                      protocol=protocol),
            bench_row(BENCHMARK, "quadrature log p(x), per image", quad_s / n * 1e3, "ms", protocol=protocol),
            bench_row(BENCHMARK, f"full evaluation, {FULL:,} images (extrapolated)", full / 60, "min",
                      protocol=protocol),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
