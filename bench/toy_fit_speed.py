"""Seconds per toy fit (iwae.toy.fit_gaussian, 1,000 Adam steps), what the Toy page waits for at a seed it has no
shipped fit for.

    python bench/toy_fit_speed.py [--repeats 3] [--ks 1 5 100] [--app-root PATH]

One torch thread, as in the app. Every target, each K of ``--ks``, both gradient estimators; the median of
``--repeats`` fits (seed 3) after one untimed fit. ``--app-root PATH`` times the iwae package of another tree (an older
commit exported with ``git archive``) for the "before" figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 100])
    parser.add_argument("--app-root", type=Path, default=ROOT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.app_root.resolve()))
    import torch

    from iwae import toy

    torch.set_num_threads(1)
    print(f"toy fits, {toy.STEPS} Adam steps, one torch thread, median of {args.repeats}; iwae from {args.app_root}")
    print(f"{'target':10s} {'K':>4s} {'dreg s':>8s} {'standard s':>11s}")
    for name in toy.TARGETS:
        for k in args.ks:
            row = []
            for estimator in ("dreg", "standard"):
                toy.fit_gaussian(name, k, seed=3, estimator=estimator)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    toy.fit_gaussian(name, k, seed=3, estimator=estimator)
                    times.append(time.perf_counter() - start)
                row.append(statistics.median(times))
            print(f"{name:10s} {k:4d} {row[0]:8.3f} {row[1]:11.3f}", flush=True)


if __name__ == "__main__":
    main()
