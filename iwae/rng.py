"""Reproducible random streams named by their parts: the same parts give the same draws in every process.

Every sampled quantity of the explorer and of the toy fits draws from ``generator(seed, what, ...)``, so a seed and a
view (image, K, ...) fix the numbers shown, across sessions and server restarts. Python's own ``hash`` of a string is
salted per process, so it cannot be used here.
"""

from __future__ import annotations

import zlib

import torch


def stable_seed(*parts) -> int:
    """A 63-bit seed from any parts (strings, ints), equal in every process for equal parts."""
    text = "|".join(map(str, parts)).encode()
    return (zlib.crc32(text) << 31) ^ zlib.crc32(text[::-1]) ^ zlib.adler32(text)


def generator(*parts) -> torch.Generator:
    """A CPU torch generator seeded with ``stable_seed(*parts)``."""
    return torch.Generator().manual_seed(stable_seed(*parts))
