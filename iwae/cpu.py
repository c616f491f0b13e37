"""Process settings that make CPU float32 work run at full speed. One owner for both; training, evaluation,
benchmarks and the explorer call them."""

from __future__ import annotations

import ctypes

import torch

GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def flush_denormals() -> bool:
    """Treat float32 values below 1.18e-38 (denormals) as zero in this thread's CPU arithmetic.

    Normalized importance weights of a trained model fall below 1e-38 (3-6% of them at K = 50 after a few
    hundred steps); matrix products fed with denormals run at a small fraction of their speed on x86. Nothing
    representable above 1e-38 changes. The setting belongs to the calling thread (the MXCSR register), so each
    thread that computes must call it: Streamlit runs every script run in a thread of its own.
    Returns False where the processor cannot flush (nothing changed)."""
    return torch.set_flush_denormal(True)


def keep_freed_memory() -> bool:
    """Ask glibc to keep the memory a training step frees for the next step. By default its large blocks
    (a step's (5000, 784) activations are 16 MB each) are returned to the system and page-faulted in again on
    every step: ~7% of an IWAE k=50 step on CPU (bench/train_throughput.py). The same as the MALLOC_* variables
    of PyTorch's CPU performance guide. Returns False where glibc is not the allocator (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(GLIBC_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks up to 32 MB come from the heap
    return bool(ok and libc.mallopt(GLIBC_M_TRIM_THRESHOLD, 1 << 30))  # and the heap is trimmed above 1 GB only
