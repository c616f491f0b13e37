"""Where a cold start's seconds go: a fresh server per start, the tab opened at /latent as soon as the server answers
its health check, and the browser's clock for each phase.

    python bench/cold_start_phases.py [--starts 3] [--app-root DIR ...]

Per start, seconds from launching ``streamlit run app.py``: the health check answered, plotly.js requested and loaded
(by the browser warm-up chart, sent before the torch import: explorer/boot.py), the warm-up chart drawn, and the
first chart with data drawn (bench/page_latency.py's "cold start to the first chart"); and the first framed script
run's duration on the server (``$IWAE_RUN_LOG``, after the imports). With several ``--app-root`` trees the starts
alternate between them. bench/page_latency.py measures the same start once per run, among everything else.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    FIRST_CHART,
    VIEWPORT,
    checkpoint_snapshot,
    free_port,
    start_streamlit,
    stop_streamlit,
    wait_healthy,
)

TIMEOUT_MS = 60_000
PLOTLY_RESOURCES = """() => performance.getEntriesByType('resource').filter(e => /plotly[^/]*\\.js/.test(e.name))
  .map(e => [e.startTime, e.responseEnd])"""
ANY_CHART_DRAWN = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                   ".some(gd => gd.querySelector('.main-svg'))")
PHASES = ("health", "plotly.js requested", "plotly.js loaded", "warm-up chart drawn", "first chart drawn")


def one_start(browser, root: Path) -> dict:
    """One cold start of the tree at ``root``: {phase: seconds from launch}, plus the first run's server seconds."""
    tmp = Path(tempfile.mkdtemp(prefix="iwae-cold-"))
    server = None
    try:
        (tmp / "checkpoints").mkdir()
        checkpoint_snapshot(tmp / "checkpoints", root)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        launched = time.perf_counter()
        server = start_streamlit(port, tmp / "checkpoints", 1, tmp / "server.log", root=root, run_log=tmp / "runs")
        wait_healthy(url, server, tmp / "server.log")
        opened = time.perf_counter() - launched  # the tab's clock starts at its navigation, just after this
        page.goto(url + "/latent", wait_until="commit", timeout=TIMEOUT_MS)
        warm = page.wait_for_function(f"() => ({ANY_CHART_DRAWN})() && performance.now()", polling="raf",
                                      timeout=TIMEOUT_MS).json_value()
        first = page.wait_for_function(f"() => ({FIRST_CHART})() && performance.now()", polling="raf",
                                       timeout=TIMEOUT_MS).json_value()
        loads = page.evaluate(PLOTLY_RESOURCES)
        runs = (tmp / "runs").read_text().split() if (tmp / "runs").is_file() else []
        context.close()
        row = {"health": opened, "warm-up chart drawn": opened + warm / 1000,
               "first chart drawn": opened + first / 1000,
               "first run on the server": float(runs[0]) if runs else float("nan")}
        if loads:
            row["plotly.js requested"] = opened + loads[0][0] / 1000
            row["plotly.js loaded"] = opened + loads[0][1] / 1000
        return row
    finally:
        if server is not None:
            stop_streamlit(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="cold starts per tree")
    parser.add_argument("--app-root", type=Path, action="append", help="a tree of the app (repeat to alternate)")
    args = parser.parse_args()
    roots = args.app_root or [ROOT]
    from playwright.sync_api import sync_playwright

    rows: dict[Path, list[dict]] = {root: [] for root in roots}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for i in range(args.starts):
            for root in roots:
                rows[root].append(one_start(browser, root))
                first = rows[root][-1]["first chart drawn"]
                print(f"start {i + 1} of {args.starts}, {root}: first chart {first:.2f} s", file=sys.stderr, flush=True)
        browser.close()
    print(f"cold starts of /latent, {args.starts} per tree; seconds from launching the server: median (min - max)")
    for root in roots:
        print(f"\n{root}")
        for phase in (*PHASES, "first run on the server"):
            values = [r[phase] for r in rows[root] if phase in r]
            if values:
                print(f"  {phase:26s} {statistics.median(values):5.2f} ({min(values):5.2f} - {max(values):5.2f})")


if __name__ == "__main__":
    main()
