"""The CPU settings of the app's computations.

One torch thread per computation (override with ``IWAE_APP_THREADS``): the browser usually shares the machine's cores
with the server, and torch's worker threads spinning against it made a K change on the Posteriors page take 0.6 s
instead of 0.37 s on two cores (bench/app_latency.py); concurrent sessions still run in parallel, one Streamlit thread
each. Denormal flushing (``iwae.cpu.flush_denormals``) belongs to the calling thread, and Streamlit runs each script
run in a thread of its own: ``start_script_run`` sets it at the start of every run.
"""

from __future__ import annotations

import os

import torch

from iwae.cpu import flush_denormals

APP_THREADS_ENV = "IWAE_APP_THREADS"
APP_THREADS = max(1, int(os.environ.get(APP_THREADS_ENV, "1")))


def start_script_run() -> None:
    """Called once at the start of every script run (``explorer.frame.frame``)."""
    if torch.get_num_threads() != APP_THREADS:
        torch.set_num_threads(APP_THREADS)
    flush_denormals()


def start_worker_thread() -> None:
    """Called first in every worker thread the app starts (explorer.parallel): denormal flushing is per thread."""
    flush_denormals()
