"""Which image the explorer shows: a test-set index, or a user's own binarized digit carried by value.

A user's digit (784 bits) is packed into a short URL-safe code, so that the digit itself is the cache key
(equal codes are equal images, in every session) and a URL parameter (a shared link opens on the same
drawing). An image reference is therefore either an ``int`` (test index) or such a ``str`` code.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

PIXELS = 784
CODE_PREFIX = "u"  # codes start with it, so they never look like a test index
CODE_LENGTH = len(CODE_PREFIX) + 131  # base64url of 98 bytes without padding

ImageRef = int | str
_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def encode_digit(x) -> str:
    """(784,) binary image (0/1 floats, bools or ints) -> its code."""
    bits = np.asarray(x).reshape(-1)
    if bits.size != PIXELS:
        raise ValueError(f"a digit has {PIXELS} pixels, got {bits.size}")
    if not np.isin(bits, (0, 1)).all():
        raise ValueError("a digit must be binarized (every pixel 0 or 1)")
    packed = np.packbits(bits.astype(np.uint8)).tobytes()
    return CODE_PREFIX + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def decode_digit(code: str) -> np.ndarray:
    """A code -> (784,) float32 in {0, 1}; ValueError naming what is wrong."""
    if not isinstance(code, str) or not code.startswith(CODE_PREFIX) or len(code) != CODE_LENGTH:
        raise ValueError(f"a digit code is {CODE_LENGTH} characters starting with {CODE_PREFIX!r}")
    body = code[len(CODE_PREFIX):]
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"a digit code is URL-safe base64: {exc}") from None
    if len(packed) != (PIXELS + 7) // 8 or not set(body) <= _ALPHABET:
        raise ValueError("a digit code is URL-safe base64 of the 784 packed bits")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:PIXELS].astype(np.float32)


def is_own_digit(ref: ImageRef) -> bool:
    return isinstance(ref, str)
