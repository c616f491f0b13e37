"""Run every benchmark of the project and keep their output in one dated file.

    python bench/run_all.py [--skip-browser] [--out bench/results]

Runs, in order: training throughput against the matmul roofline (bench/train_throughput.py), the explorer's
posterior computations (bench/posterior_speed.py), and the app's latencies in a real browser
(bench/app_latency.py, needs /usr/bin/chromium). Each script prints its own table of medians and targets;
this runner prints them one after another and writes them to ``<out>/<date>.txt``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    ("training throughput", ["bench/train_throughput.py"]),
    ("posterior computations", ["bench/posterior_speed.py"]),
    ("app latency (browser)", ["bench/app_latency.py"]),
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-browser", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    lines = [f"# benchmarks {stamp} on {platform.node()}: {platform.processor() or platform.machine()}, "
             f"python {platform.python_version()}"]
    failed = 0
    for title, cmd in BENCHMARKS:
        if args.skip_browser and "app_latency" in cmd[0]:
            continue
        started = time.time()
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
        lines += ["", f"## {title}: `python {' '.join(cmd)}` ({time.time() - started:.0f} s, exit {proc.returncode})",
                  proc.stdout.rstrip()]
        if proc.returncode:
            failed += 1
            lines.append(proc.stderr.rstrip()[-2000:])
        print("\n".join(lines[-3:]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
