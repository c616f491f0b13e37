"""How long torch work waits for the GIL while other threads run Python: the app server's situation under a class.

    python bench/gil_contention.py [--checkpoint checkpoints/iwae-k50.safetensors] [--tasks 4] [--busy 4]
                                   [--intervals 5 1 0.2] [--rows 1024 16384]

``--tasks`` threads each decode what the Resampling page decodes per model at K = 5000 (16 x 5,000 latent points,
``VAE.log_joint`` in blocks of ``--rows`` points, one torch thread). Beside them, ``--busy`` threads run pure Python,
as other sessions' script runs do (figures, Streamlit's messages). Every torch call releases the GIL and has to take
it back. While a Python thread holds the GIL, taking it back waits up to the interpreter's switch interval
(``sys.setswitchinterval``), so more and smaller calls wait longer. The script prints, per switch interval (ms) and
block size: the median seconds of one decoding task, and the Python threads' loops per second (their share of the
interpreter). explorer/threads.py sets the app's interval from this table.
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

from iwae import testset  # noqa: E402
from iwae.catalog import load_checkpoint  # noqa: E402
from iwae.cpu import flush_denormals  # noqa: E402

POINTS = 16 * 5000  # the Resampling page's decoder passes per model at K = 5000


def decode(model, x: torch.Tensor, rows: int, seed: int, seconds: list[float]) -> None:
    flush_denormals()
    z = torch.randn(1, POINTS, 2, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    with torch.no_grad():
        for block in z.split(rows, dim=1):
            model.log_joint(x[None], block)
    seconds.append(time.perf_counter() - start)


def python_work(stop: threading.Event, loops: list[int]) -> None:
    n = 0
    while not stop.is_set():
        sum(i * i for i in range(1000))
        n += 1
    loops.append(n)


def run(model, x, tasks: int, busy: int, interval_s: float, rows: int) -> tuple[float, float]:
    sys.setswitchinterval(interval_s)
    stop, loops, seconds = threading.Event(), [], []
    workers = [threading.Thread(target=python_work, args=(stop, loops)) for _ in range(busy)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    decoders = [threading.Thread(target=decode, args=(model, x, rows, i, seconds)) for i in range(tasks)]
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
    parser.add_argument("--intervals", type=float, nargs="+", default=[5.0, 1.0, 0.2], help="switch intervals, ms")
    parser.add_argument("--rows", type=int, nargs="+", default=[1024, 16384], help="latent points per torch call")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).model
    x = testset.load()[0][3].float()
    default = sys.getswitchinterval()
    print(f"{args.tasks} threads decoding {POINTS:,} points each beside {args.busy} threads of pure Python; "
          f"{args.checkpoint.name}, one torch thread")
    print(f"{'switch ms':>9} {'rows':>6} {'decode s (median)':>18} {'python loops/s':>15}")
    try:
        for interval in args.intervals:
            for rows in args.rows:
                seconds, rate = run(model, x, args.tasks, args.busy, interval / 1000, rows)
                print(f"{interval:9.1f} {rows:6d} {seconds:18.2f} {rate:15.0f}", flush=True)
    finally:
        sys.setswitchinterval(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
