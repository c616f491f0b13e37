"""explorer.parallel: the two columns' computations run at once, each model once, and errors reach the page."""

import threading
from types import SimpleNamespace

import pytest

from explorer import parallel
from explorer.state import ViewState


def _state(a: str, b: str) -> ViewState:
    return ViewState(model_a=a, model_b=b, image=0, digit="any", k=50, seed=0, show_math=False)


CAT = SimpleNamespace(checkpoints={"left": "L", "right": "R"})


def test_both_models_are_computed_at_the_same_time():
    both_started = threading.Barrier(2, timeout=10)  # broken (an error) unless the two computations overlap

    def compute(ckpt):
        both_started.wait()
        return ckpt * 2, threading.current_thread().name

    out = parallel.per_model(CAT, _state("left", "right"), compute)
    assert out["left"][0] == "LL" and out["right"][0] == "RR"
    assert out["left"][1] != out["right"][1]


def test_the_same_model_twice_is_computed_once():
    calls = []
    out = parallel.per_model(CAT, _state("left", "left"), lambda ckpt: calls.append(ckpt) or len(calls))
    assert out == {"left": 1} and calls == ["L"]


@pytest.mark.parametrize("failing", ["L", "R"])
def test_an_error_in_either_column_is_raised_after_both_end(failing):
    finished = []

    def compute(ckpt):
        if ckpt == failing:
            raise ValueError(f"broken {ckpt}")
        finished.append(ckpt)

    with pytest.raises(ValueError, match=f"broken {failing}"):
        parallel.per_model(CAT, _state("left", "right"), compute)
    assert finished == [{"L": "R", "R": "L"}[failing]]
