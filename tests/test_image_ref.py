"""The user's own digit carried by value (iwae/image_ref.py) and through the URL state (iwae/view.py)."""

from __future__ import annotations

import numpy as np
import pytest

from explorer import state as view
from iwae import image_ref

NAMES = ["vae-k1", "iwae-k50"]


def _digit(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(784) < 0.2).astype(np.float32)


def test_code_round_trip_is_exact_and_url_safe():
    for seed in range(20):
        x = _digit(seed)
        code = image_ref.encode_digit(x)
        assert len(code) == image_ref.CODE_LENGTH and code.startswith(image_ref.CODE_PREFIX)
        assert set(code[1:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        np.testing.assert_array_equal(image_ref.decode_digit(code), x)
    # different images, different codes (the code is the cache key); last pixel included
    a, b = np.zeros(784), np.zeros(784)
    b[-1] = 1
    assert image_ref.encode_digit(a) != image_ref.encode_digit(b)
    assert image_ref.decode_digit(image_ref.encode_digit(b))[-1] == 1


@pytest.mark.parametrize("bad", [np.zeros(783), np.full(784, 0.5), np.zeros((27, 28))])
def test_encoding_refuses_non_binary_or_wrong_size(bad):
    with pytest.raises(ValueError):
        image_ref.encode_digit(bad)


def test_decoding_refuses_malformed_codes():
    code = image_ref.encode_digit(_digit(0))
    for bad in ("", "7", code[:-1], code + "A", "x" + code[1:], code[:-1] + "=", code[:-1] + "!", code[:60] + "+/" +
                code[62:]):
        with pytest.raises(ValueError):
            image_ref.decode_digit(bad)


def test_the_view_state_carries_an_own_digit_through_the_url():
    code = image_ref.encode_digit(_digit(3))
    state, warnings = view.parse_query({"x": code, "image": "12"}, NAMES)
    assert warnings == [] and state.own == code and state.image == 12
    assert state.image_ref == code  # the own digit wins; the test index is kept to go back to
    assert view.parse_query(view.to_query(state), NAMES)[0] == state
    plain, _ = view.parse_query({"image": "12"}, NAMES)
    assert plain.image_ref == 12 and "x" not in view.to_query(plain)


def test_a_bad_digit_code_in_the_url_falls_back_with_a_warning():
    state, warnings = view.parse_query({"x": "u" + "A" * 10, "image": "4"}, NAMES)
    assert state.own is None and state.image_ref == 4
    assert len(warnings) == 1 and "URL parameter x=" in warnings[0] and "test image #4" in warnings[0]
