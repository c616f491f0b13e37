"""The two columns' computations at once, one thread each.

Every page shows two models side by side, and each model's views are independent pure computations whose torch kernels
release the GIL, so the right column's views are computed in a worker thread while the script thread computes the
left's: on two cores a new image or pair settles in about half the time. The computations are the cached functions of
``explorer.views``: global caches, which need no script-run context, and no elements (nothing in the worker draws).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from iwae.catalog import Catalog
from iwae.checkpoints import Checkpoint

from .state import ViewState
from .threads import start_worker_thread

T = TypeVar("T")


def per_model(cat: Catalog, state: ViewState, compute: Callable[[Checkpoint], T]) -> dict[str, T]:
    """``compute(checkpoint)`` for the left and the right model at once (once when they are the same):
    {model name: result}. An exception in either is raised here, after both have ended."""
    names = list(dict.fromkeys((state.model_a, state.model_b)))
    results: dict[str, T] = {}
    errors: list[BaseException] = []

    def right() -> None:
        start_worker_thread()
        try:
            results[names[1]] = compute(cat.checkpoints[names[1]])
        except BaseException as exc:  # re-raised in the script thread
            errors.append(exc)

    worker = threading.Thread(target=right, name="iwae-right-column", daemon=True) if len(names) == 2 else None
    if worker is not None:
        worker.start()
    try:
        results[names[0]] = compute(cat.checkpoints[names[0]])
    finally:
        if worker is not None:
            worker.join()
    if errors:
        raise errors[0]
    return results
