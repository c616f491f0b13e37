"""How long torch work waits for the GIL while other threads run Python: the app server's situation under a class.

    python bench/gil_contention.py [--checkpoint checkpoints/iwae-k50.safetensors] [--tasks 4] [--busy 4]
                                   [--intervals 5 1] [--rows 2048 16384] [--modes python script]

``--tasks`` threads each decode what the Resampling page decodes per model at K = 5000 (16 x 5,000 latent points,
log p(x|z) in blocks of ``--rows`` points, one torch thread). Beside them, ``--busy`` threads run pure Python, as other
sessions' script runs do (figures, Streamlit's messages). Two ways to run the same block loop (``--modes``):
- ``python``: the loop of iwae.decoding run as plain Python, a torch call per operation. Every torch call releases
  the GIL and has to take it back; while a Python thread holds the GIL, taking it back waits up to the interpreter's
  switch interval (``sys.setswitchinterval``), so more and smaller calls wait longer;
- ``script``: the app's way (iwae.decoding.log_likelihood), the whole loop in one TorchScript call without the GIL.
The script prints, per mode, switch interval (ms) and block size: the median seconds of one decoding task, and the
Python threads' loops per second (their share of the interpreter). explorer/threads.py sets the app's interval and
iwae/decoding.py its block size from this table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from iwae import decoding, testset  # noqa: E402
from iwae.catalog import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402

POINTS = 16 * 5000  # the Resampling page's decoder passes per model at K = 5000


def decode(model, x: torch.Tensor, rows: int, mode: str, seed: int, seconds: list[float]) -> None:
    flush_denormals()
    z = torch.randn(1, POINTS, 2, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    with torch.no_grad():
        decoding.log_likelihood(model.decoder, x[None], z, rows=rows, scripted=mode == "script")
    seconds.append(time.perf_counter() - start)


def python_work(stop: threading.Event, loops: list[int]) -> None:
    n = 0
    while not stop.is_set():
        sum(i * i for i in range(1000))
        n += 1
    loops.append(n)


def run(model, x, tasks: int, busy: int, interval_s: float, rows: int, mode: str) -> tuple[float, float]:
    sys.setswitchinterval(interval_s)
    stop, loops, seconds = threading.Event(), [], []
    workers = [threading.Thread(target=python_work, args=(stop, loops)) for _ in range(busy)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    decoders = [threading.Thread(target=decode, args=(model, x, rows, mode, i, seconds)) for i in range(tasks)]
    for d in decoders:
        d.start()
    for d in decoders:
        d.join()
    wall = time.perf_counter() - start
    stop.set()
    for w in workers:
        w.join()
    return statistics.median(seconds), sum(loops) / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "iwae-k50.safetensors")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--busy", type=int, default=4)
    parser.add_argument("--intervals", type=float, nargs="+", default=[5.0, 1.0], help="switch intervals, ms")
    parser.add_argument("--rows", type=int, nargs="+", default=[2048, 16384], help="latent points per block")
    parser.add_argument("--modes", nargs="+", choices=["python", "script"], default=["python", "script"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).model
    x = testset.load()[0][3].float()
    default = sys.getswitchinterval()
    print(f"{args.tasks} threads decoding {POINTS:,} points each beside {args.busy} threads of pure Python; "
          f"{args.checkpoint.name}, one torch thread")
    print(f"{'mode':>6} {'switch ms':>9} {'rows':>6} {'decode s (median)':>18} {'python loops/s':>15}")
    try:
        for mode in args.modes:
            for interval in args.intervals:
                for rows in args.rows:
                    seconds, rate = run(model, x, args.tasks, args.busy, interval / 1000, rows, mode)
                    print(f"{mode:>6} {interval:9.1f} {rows:6d} {seconds:18.2f} {rate:15.0f}", flush=True)
    finally:
        sys.setswitchinterval(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
