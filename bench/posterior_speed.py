"""Speed of the explorer's per-image posterior work on one shipped model, against the app's latency targets.

    python bench/posterior_speed.py [--checkpoint checkpoints/iwae-k50.safetensors] [--threads N]
                                    [--images 10] [--repeats 3] [--profile OPERATION] [--json PATH]

The checkpoint is copied to a temporary file first (training may rewrite the shipped file while this runs). Medians
over the first ``--images`` binarized test images, each timed ``--repeats`` times (after one untimed warm-up call), of:
- grid: ``posterior.image_grid`` (global-grid log joint, adaptive quadrature, window, log q and log p(x, z) on
  128 x 128 points), target 200 ms; and "grid, log p(x) given", the app's path for a test image the evaluation
  covered (only the quadrature's first stage, for the window);
- pool: ``posterior.proposal_pool`` of ``pool_size_for(K)`` draws (10,000 for every K <= 5001), no target;
- q_IW K=...: ``posterior.log_q_iw_for_display`` (the app's estimator: the K - 1 others drawn from q on the grid
  when the grid resolves q) on the 128 x 128 grid for K in 1, 10, 100, 1000, 5000, grid and pool given, target
  100 ms; and the pool-based ``posterior.log_q_iw`` at K = 10 and 5000;
- SIR: 16 reconstructions, ``sir.sir_sample(K, n_draws=16)`` plus ``latent.decode_means`` of the 16 draws, for
  K = 1000 and 5000, independent and shared mode, target 100 ms up to K = 1000 (K = 5000: timed, no target);
- latent means: ``latent.latent_means`` of all 10,000 test images (once per repeat), target 2 s;
- global grid: ``quadrature.global_grid`` (once per model and session in the app; once per repeat here), no target.
``--profile OPERATION`` (a row name, e.g. ``grid`` or ``"SIR K=5000"``) then runs that operation under
torch.profiler and prints where its time goes. ``--json PATH`` also writes every row of the table (median, target)
as JSON rows for bench/run_all.py (``bench_row``).
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
from iwae import posterior as post  # noqa: E402
from iwae import quadrature as quad  # noqa: E402
from iwae import sir, testset  # noqa: E402
from iwae.checkpoints import load_checkpoint  # noqa: E402
from iwae.latent import decode_means, latent_means  # noqa: E402

QIW_KS = (1, 10, 100, 1000, 5000)
SIR_CASES = ((1000, False), (5000, False), (1000, True), (5000, True))
N_RECONSTRUCTIONS = 16
SIR_TARGET_MAX_K = 1000  # "16 SIR reconstructions at K up to 1000: at most 100 ms"; K = 5000 is timed, no target
BENCHMARK = "posterior computations"


def metric_name(name: str) -> str:
    """The table's row name, spelled out for the one-table summary of bench/run_all.py."""
    if name == "grid":
        return "image grid 128x128 (window, q, p, log p(x))"
    if name.startswith("pool"):
        return "proposal " + name
    if name.startswith("q_IW"):
        return name.replace("q_IW", "q_IW on the grid,")
    if name.startswith("SIR"):
        return f"{N_RECONSTRUCTIONS} SIR reconstructions, " + name.removeprefix("SIR ")
    if name.startswith("latent means"):
        return "test-set encoding: " + name
    if name == "global grid":
        return "global grid (once per model)"
    return name


def timed_ms(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def sir_name(k: int, shared: bool) -> str:
    return f"SIR K={k}" + (" shared" if shared else "")


def operations(model, grid, x_all, images: list[int]):
    """{name: (target ms or None, [callables, one per image or one in all])}, with per-image state built lazily."""
    gen = torch.Generator().manual_seed(0)
    state = {}

    def image_state(i):
        if i not in state:
            g = post.image_grid(model, grid, x_all[i])
            state[i] = (g, post.proposal_pool(model, x_all[i], post.pool_size_for(max(QIW_KS)), gen))
        return state[i]

    ops = {
        "grid": (200.0, [lambda i=i: post.image_grid(model, grid, x_all[i]) for i in images]),
        # the app's path for a test image: log p(x) from the evaluation (any value: it does not change the work)
        "grid, log p(x) given": (200.0, [lambda i=i: post.image_grid(model, grid, x_all[i], log_px=(0.0, 0.0))
                                         for i in images]),
        f"pool ({post.pool_size_for(max(QIW_KS)):,} draws)": (
            None,
            [lambda i=i: post.proposal_pool(model, x_all[i], post.pool_size_for(max(QIW_KS)), gen) for i in images],
        ),
    }
    for k in QIW_KS:
        ops[f"q_IW K={k}"] = (  # what the app shows: post.log_q_iw_for_display (grid-drawn others when q resolved)
            100.0,
            [lambda i=i, k=k: post.log_q_iw_for_display(*image_state(i), k, generator=gen) for i in images],
        )
    for k in (10, 5000):
        ops[f"q_IW K={k}, pool-based"] = (
            100.0,
            [lambda i=i, k=k: post.log_q_iw(*image_state(i), k, generator=gen) for i in images],
        )

    def reconstructions(i, k, shared):
        draws = sir.sir_sample(model, x_all[i], k, N_RECONSTRUCTIONS, gen, shared=shared)
        return decode_means(model, draws.z)

    for k, shared in SIR_CASES:
        target = 100.0 if k <= SIR_TARGET_MAX_K else None  # the target is for K up to 1000
        ops[sir_name(k, shared)] = (target, [lambda i=i, k=k, s=shared: reconstructions(i, k, s) for i in images])
    ops["latent means (10,000)"] = (2000.0, [lambda: latent_means(model, x_all)])
    ops["global grid"] = (None, [lambda: quad.global_grid(model)])
    return ops


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/iwae-k50.safetensors"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", default=None, help="profile this operation (a row name) after the table")
    p.add_argument("--json", type=Path, default=None, help="also write the table as JSON rows here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / args.checkpoint.name
        shutil.copyfile(args.checkpoint, copy)
        ckpt = load_checkpoint(copy)
    model = ckpt.model
    x_all, _ = testset.load()
    images = list(range(args.images))
    grid = quad.global_grid(model)
    print(
        f"{args.checkpoint} (epochs {ckpt.metadata.get('epochs')}), {torch.get_num_threads()} threads, "
        f"{args.images} images x {args.repeats} repeats"
    )
    ops = operations(model, grid, x_all, images)
    for fn in ops["q_IW K=1"][1]:  # build the per-image grids and pools outside the timings
        fn()

    model_text = f"{args.checkpoint.stem} ({ckpt.metadata.get('epochs')} ep)"
    threads = f"{torch.get_num_threads()} threads"
    repeats = f"{args.repeats} repeat{'s' * (args.repeats != 1)}"
    per_image = f"{model_text}, first {args.images} test images x {repeats}, {threads}"
    once = f"{model_text}, {repeats}, {threads}"  # the rows that do not depend on the image
    rows = []
    print(f"{'operation':<24}{'median ms':>11}{'target ms':>11}{'ratio':>8}")
    for name, (target, fns) in ops.items():
        times = [t for fn in fns for t in timed_ms(fn, args.repeats)]
        med = statistics.median(times)
        tgt = f"{target:.0f}" if target else "-"
        ratio = f"{med / target:.2f}" if target else "-"
        print(f"{name:<24}{med:>11.1f}{tgt:>11}{ratio:>8}", flush=True)
        rows.append(bench_row(BENCHMARK, metric_name(name), med, "ms", target, "max" if target else None,
                              once if name.startswith(("latent means", "global grid")) else per_image))
    if args.json:
        write_rows(args.json, rows)

    if args.profile:
        if args.profile not in ops:
            print(f"unknown operation {args.profile!r}; choose from {list(ops)}", file=sys.stderr)
            return 2
        fns = ops[args.profile][1]
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for fn in fns:
                fn()
        print(f"\nprofile of {args.profile!r} ({len(fns)} calls), by self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
