"""The CPU settings of the app's computations.

One torch thread per computation (override with ``IWAE_APP_THREADS``): the browser usually shares the machine's cores
with the server, and torch's worker threads spinning against it made a K change on the Posteriors page take 0.6 s
instead of 0.37 s on two cores (bench/app_latency.py); concurrent sessions still run in parallel, one Streamlit thread
each. Denormal flushing (``iwae.cpu.flush_denormals``) belongs to the calling thread, and Streamlit runs each script
run in a thread of its own: ``start_script_run`` sets it at the start of every run.

The interpreter's switch interval is shortened from 5 ms to 1 ms. Every torch call gives up the GIL and takes it
back; while other sessions' threads run Python (a page's figures, Streamlit's messages), taking it back waits up to
the switch interval. On the two cores, the Resampling page's decoding at K = 5000 in each of 4 threads beside 4
threads of pure Python took 5.6 s at 5 ms and 3.5 s at 1 ms, the Python threads keeping 89% of their speed
(bench/gil_contention.py).
"""

from __future__ import annotations

import os
import sys

import torch

from iwae.cpu import flush_denormals

APP_THREADS_ENV = "IWAE_APP_THREADS"
APP_THREADS = max(1, int(os.environ.get(APP_THREADS_ENV, "1")))
SWITCH_INTERVAL_S = 0.001  # the GIL's switch interval for the server process (Python's default: 0.005)


def start_script_run() -> None:
    """Called once at the start of every script run (``explorer.frame.frame``)."""
    if torch.get_num_threads() != APP_THREADS:
        torch.set_num_threads(APP_THREADS)
    if sys.getswitchinterval() != SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    flush_denormals()


def start_worker_thread() -> None:
    """Called first in every worker thread the app starts (explorer.parallel): denormal flushing is per thread."""
    flush_denormals()
