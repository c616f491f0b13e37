"""The default views built once, in the background, when the server first runs a page.

Every page's first view shows the default state (``explorer.state.default_state``): the default pair, image, K and
seed; every step of the guided lesson shows its own state. Those views are pure functions of the shipped models, so
one thread computes them into the global caches of ``explorer.views`` right after the first run has drawn its page: a
class opening the Posteriors, Bounds, Resampling or Toy page, or walking the lesson, then finds them ready instead of
waiting seconds for the quadrature, the pools and the toy densities (bench/page_latency.py, "first view"). One thread
at normal priority (at the lowest it was starved for minutes on a busy machine and warmed nothing in time): some CPU
seconds once per server, started only after the first run. It draws nothing (the caches need no script-run context, as
in ``explorer.parallel``).
"""

from __future__ import annotations

import os
import threading

from iwae import toy
from iwae.catalog import Catalog

from . import lesson, lesson_ui, views
from .data import model_key
from .state import default_state
from .threads import start_worker_thread

WARM_ENV = "IWAE_WARM_DEFAULTS"  # "0": no warm-up (the tests, which call ``warm_defaults`` themselves)
ENABLED = os.environ.get(WARM_ENV, "1") != "0"
_started = threading.Lock()


def start_once(cat: Catalog) -> None:
    """Start the warm-up thread unless this process already did."""
    if _started.acquire(blocking=False):
        threading.Thread(target=_run, args=(cat,), name="iwae-warm-defaults", daemon=True).start()


def _run(cat: Catalog) -> None:
    start_worker_thread()
    warm_defaults(cat)


def warm_defaults(cat: Catalog) -> None:
    """Compute the default state's views of every page, the slowest first, then every model's global grid."""
    state = default_state(list(cat.checkpoints))
    ref, k, seed = state.image_ref, state.k, state.seed
    for name in dict.fromkeys((state.model_a, state.model_b)):
        ckpt = cat.checkpoints[name]
        model, key = ckpt.model, model_key(ckpt)
        views.posterior_view(model, key, ref)
        views.posterior_fixed_figure(model, key, ref, seed)
        views.qiw_view(model, key, ref, seed, k)
        views.sir_overlay(model, key, ref, seed, k)
        views.image_curve(model, key, ref, seed)
        views.image_log_px(model, key, ref)
        views.subset_curve(model, key, views.DEFAULT_SUBSET)
        views.resample(model, key, ref, seed, k, 0)
    toy_k = views.toy_k_for(k)
    views.shipped_toy_result(views.DEFAULT_TOY_TARGET, toy_k, seed)
    for number in range(1, len(lesson.STEPS) + 1):  # a class walks the lesson together
        lesson_ui.warm_step(cat, number, seed)
    for toy_start in dict.fromkeys((toy_k, views.DEFAULT_TOY_K)):  # the toy page's targets at its starting Ks
        for target in toy.TARGETS:
            views.shipped_toy_result(target, toy_start, seed)
    for ckpt in list(cat.checkpoints.values())[:views.GLOBAL_GRIDS_KEPT]:  # another pair's quadrature: 0.3 s each
        views.global_grid(ckpt.model, model_key(ckpt))
