"""End-to-end latency of the explorer in a real browser (Playwright + Debian chromium), against its targets.

    python bench/app_latency.py [--repeats 3] [--port PORT] [--k-changes 8] [--clicks 5] [--threads N]
                                [--no-apptest] [--json PATH]

Each repeat starts a fresh ``streamlit run app.py`` (same command line and checkpoint snapshot as
bench/harness.py) and measures:
- cold start: from launching the server process to the first plotly chart drawn on /latent, split into server ready
  (launch to /_stcore/health ok) and browser (opening /latent to the first chart; the first script run imports
  torch, loads the checkpoints and the test set and encodes the 10,000 test images). Chromium is launched before
  the server and is not counted. Target 5 s.
- K change on /posteriors (after its first load): a key press on the sidebar slider (arrow = neighbouring K;
  Home / End / a click on the slider track = a jump) until both posterior charts show the new K (what the user
  waits for), and until the script run ends. Nothing is pre-computed: q_IW at a new K costs ~12 ms per model, and
  warming the neighbouring K values after each run (tried until 2026-11-21) competed with the browser for the two
  cores and made a K change slower (0.77 s against 0.54 s). Target 0.5 s for the charts.
- cold start with the frontend cached: the same, in a browser that has opened the app before (one priming start
  on the same port and browser context, then ``--repeats`` measured ones): the restart a teacher does in the tab
  that showed the app. ``--no-warm-browser`` skips it.
- scatter click on /latent: a real mouse click on an isolated point of the left scatter until the sidebar's image
  index shows that point's test image, and until the run ends. Target 0.5 s.
In-page times come from performance.now() (a MutationObserver sees every script-state change, and the chart checks
poll on each animation frame). Then, without a browser, AppTest times the server side of a K change on the
posteriors page: the whole script run (``--no-apptest`` skips it).

The server's torch threads are the app's default (one, ``IWAE_APP_THREADS``) unless ``--threads`` is given. Run it
with ``nice`` on a shared machine; the load average is printed with the table, as the numbers depend on it.
``--json PATH`` also writes the headline figures (cold start and its two parts, also with the frontend cached; K change
until the charts are redrawn, all, steps and jumps, and until the run is done; scatter click until the image is chosen
and until the run is done; the AppTest K run) as JSON rows for
bench/run_all.py (``bench_row``), written before the exit on a K change that did not land.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CHART_INFO,
    CHROMIUM,
    CHROMIUM_ARGS,
    K_LABEL,
    RUN_OBSERVER,
    VIEWPORT,
    act,
    checkpoint_snapshot,
    close_dialogs,
    free_port,
    healthy,
    hover,
    scatter_target,
    start_streamlit,
    stop_streamlit,
    wait_idle,
)
from bench.run_all import bench_row, write_rows  # noqa: E402

TARGETS = {"cold": 5.0, "k": 0.5, "click": 0.5}
BENCHMARK = "app latency"
TIMEOUT_MS = 180_000

# Time (performance.now()) at which the page's websocket last delivered a message: the server's last message of a run
# (script finished) arrives at most this late; the rest of the wait is the browser's own processing.
WS_SPY = """
(() => {
  const Native = window.WebSocket;
  window.__wsLast = 0;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => { window.__wsLast = performance.now(); });
    }
  };
})();
"""

# Resolves, on the first animation frame where it holds, to milliseconds since window.__t0.
CHARTS_AT_K = """
k => {
  const titles = Array.from(document.querySelectorAll('.js-plotly-plot'))
    .flatMap(gd => ((gd._fullLayout && gd._fullLayout.annotations) || []).map(a => a.text))
    .filter(t => t.includes('at K ='));
  return titles.length >= 2 && titles.every(t => t.endsWith('at K = ' + k)) && performance.now() - window.__t0;
}
"""
IMAGE_SHOWN = """
([label, index]) => {
  const input = document.querySelector(`[data-testid="stSidebar"] input[aria-label="${label}"]`);
  return input && input.value === String(index) && performance.now() - window.__t0;
}
"""
# A drawn chart with data (app.py's empty warm-up chart does not count).
FIRST_CHART = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
               ".some(gd => gd._fullData && gd._fullData.some(t => (t.x && t.x.length) || (t.z && t.z.length))"
               " && gd.querySelector('.main-svg'))")
# The end of the run started after __t0: its notRunning time, in ms since __t0.
RUN_DONE = """
n => window.__st.runs > n && window.__st.state === 'notRunning' && window.__st.idleAt - window.__t0
"""


def mark(page) -> int:
    """Start the clock in the page; returns the run count before the action."""
    return page.evaluate("() => { window.__t0 = performance.now(); return window.__st.runs; }")


def until(page, script: str, arg) -> float:
    """Seconds since mark() when ``script`` first holds (checked on every animation frame)."""
    return page.wait_for_function(script, arg=arg, timeout=TIMEOUT_MS, polling="raf").json_value() / 1000


def k_value(page) -> int:
    return int(page.locator("[data-testid='stSidebar']").get_by_role("slider", name=K_LABEL)
               .get_attribute("aria-valuetext"))


def k_changes(page, n: int, choices: tuple[int, ...]) -> list[dict]:
    """n K changes on /posteriors: alternately neighbouring steps and jumps (Home, End, clicks on the track)."""
    slider = page.locator("[data-testid='stSidebar']").get_by_role("slider", name=K_LABEL)
    track = page.locator("[data-testid='stSidebar'] [data-testid='stSlider'] [data-orientation='horizontal']").nth(1)
    plan = [("step", "ArrowRight"), ("jump", "End"), ("step", "ArrowLeft"), ("jump", "Home"), ("step", "ArrowRight"),
            ("jump", "track:7"), ("step", "ArrowLeft"), ("jump", "track:2"), ("step", "ArrowRight"),
            ("jump", "track:9")]
    out = []
    for kind, key in (plan * (n // len(plan) + 1))[:n]:
        i = choices.index(k_value(page))
        if key.startswith("track:"):
            j = int(key.split(":")[1])
            if j == i:
                j = (j + 3) % len(choices)
            box = track.bounding_box()
            x, y = box["x"] + box["width"] * j / (len(choices) - 1), box["y"] + box["height"] / 2
        else:
            j = {"ArrowRight": min(i + 1, len(choices) - 1), "ArrowLeft": max(i - 1, 0), "Home": 0,
                 "End": len(choices) - 1}[key]
            if j == i:  # at an end already: go the other way
                key, j = ("ArrowLeft", i - 1) if key in ("ArrowRight", "End") else ("ArrowRight", i + 1)
            slider.focus()
        sent = page.received[0]
        before = mark(page)
        if key.startswith("track:"):
            page.mouse.click(x, y)
        else:
            page.keyboard.press(key)
        charts = until(page, CHARTS_AT_K, choices[j])
        done = until(page, RUN_DONE, before)
        run = page.evaluate("n => [window.__st.runs - n, (window.__st.idleAt - window.__st.startAt) / 1000,"
                            " (window.__wsLast - window.__t0) / 1000, (window.__st.startAt - window.__t0) / 1000]",
                            before)
        shown = k_value(page)
        out.append({"kind": kind, "how": key, "from": choices[i], "to": choices[j], "charts": charts, "done": done,
                    "runs": run[0], "run": run[1], "ws": run[2], "start": run[3], "mb": (page.received[0] - sent) / 1e6,
                    "ok": shown == choices[j]})
        wait_idle(page)
    return out


def clicks(page, n: int) -> list[dict]:
    """n real clicks on isolated points of the left latent scatter (never the same test image twice)."""
    image_input = page.locator("[data-testid='stSidebar'] input[aria-label='Image index (0-9999)']")
    seen = [int(image_input.input_value())]
    out = []
    for _ in range(n):
        target = scatter_target(page, 0, seen)
        hover(page, target)
        sent = page.received[0]
        before = mark(page)
        page.mouse.click(target["x"], target["y"])
        shown = until(page, IMAGE_SHOWN, ["Image index (0-9999)", target["index"]])
        done = until(page, RUN_DONE, before)
        out.append({"index": target["index"], "shown": shown, "done": done, "mb": (page.received[0] - sent) / 1e6})
        seen.append(target["index"])
        wait_idle(page)
    return out


def new_context(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RUN_OBSERVER)
    context.add_init_script(WS_SPY)
    return context


def open_cold(page, server, port: int, log: Path, t0: float) -> dict:
    """Wait for the just-launched server's health, then open /latent until its first chart with data: seconds from
    launch (t0) to health, from opening to the chart, and in all."""
    url = f"http://127.0.0.1:{port}"
    while not healthy(url):
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text(errors='replace')}")
        if time.perf_counter() - t0 > 180:
            raise RuntimeError("streamlit not healthy after 180 s")
        time.sleep(0.05)
    ready = time.perf_counter() - t0
    page.goto(url + "/latent", wait_until="commit")
    page.wait_for_function(FIRST_CHART, timeout=TIMEOUT_MS, polling="raf")
    first_chart = time.perf_counter() - t0
    wait_idle(page)
    return {"ready": ready, "browser": first_chart - ready, "cold": first_chart}


def cold_first_chart(context, checkpoints: Path, port: int, threads, log: Path) -> dict:
    """A fresh server, then /latent opened in ``context``: see open_cold."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    t0 = time.perf_counter()
    server = start_streamlit(port, checkpoints, threads, log)
    try:
        result = open_cold(page, server, port, log, t0)
        page.close()
        return result
    finally:
        stop_streamlit(server)


def warm_browser_cold_starts(args, browser, checkpoints: Path, tmp: Path) -> list[dict]:
    """Cold server starts seen by a browser that has opened the app before (its HTTP cache holds the frontend's
    files): one priming start, then ``--repeats`` measured ones, all on one port and one browser context. What a
    teacher sees when restarting the app in the browser tab that showed it earlier."""
    port = args.port or free_port()
    context = new_context(browser)
    try:
        cold_first_chart(context, checkpoints, port, args.threads, tmp / "prime.log")
        return [cold_first_chart(context, checkpoints, port, args.threads, tmp / f"warm-{r}.log")
                for r in range(args.repeats)]
    finally:
        context.close()


def one_round(args, browser, checkpoints: Path, port: int, log: Path) -> dict:
    from explorer.state import K_CHOICES

    context = new_context(browser)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    received = [0]  # bytes the server sent over the websocket so far

    def count(payload) -> None:
        received[0] += len(payload)

    page.on("websocket", lambda ws: ws.on("framereceived", count))
    page.received = received
    t0 = time.perf_counter()
    server = start_streamlit(port, checkpoints, args.threads, log)
    try:
        result = open_cold(page, server, port, log, t0)
        result["dialogs"] = close_dialogs(page)
        result["clicks"] = clicks(page, args.clicks)
        act(page, page.locator("[data-testid='stSidebarNav'] a", has_text="Posteriors").click)  # first load
        assert page.evaluate(CHART_INFO), "no chart on /posteriors"
        result["k"] = k_changes(page, args.k_changes, K_CHOICES)
        errors = page.locator("[data-testid='stException']").count()
        result["exceptions"] = errors
        context.close()
        return result
    finally:
        stop_streamlit(server)


def apptest_k_changes(checkpoints: Path, threads: int | None) -> list[dict]:
    """Server-side time of K changes on the posteriors page (the whole script run), in this process."""
    os.environ["IWAE_CHECKPOINT_DIR"] = str(checkpoints)
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    import torch
    from streamlit.testing.v1 import AppTest

    from explorer.state import K_CHOICES

    if threads:
        torch.set_num_threads(threads)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    at.run()
    at.switch_page("pages/posteriors.py").run()
    assert not at.exception, [e.value for e in at.exception]
    out = []
    i = K_CHOICES.index(at.select_slider(key="K").value)
    for kind, j in (("step", i + 1), ("step", i + 2), ("step", i + 1), ("jump", len(K_CHOICES) - 1), ("jump", 0),
                    ("step", 1), ("jump", 6), ("step", 7)):
        t = time.perf_counter()
        at.select_slider(key="K").set_value(K_CHOICES[j]).run()
        out.append({"kind": kind, "to": K_CHOICES[j], "seconds": time.perf_counter() - t,
                    "ok": not at.exception and at.title[0].value == "Posteriors"})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers (cold starts), each with all measures")
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument("--k-changes", type=int, default=8)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server (default: torch's)")
    parser.add_argument("--no-apptest", action="store_true", help="skip the server-side AppTest timing")
    parser.add_argument("--no-warm-browser", action="store_true",
                        help="skip the cold starts seen by a browser that has opened the app before")
    parser.add_argument("--json", type=Path, default=None, help="also write the headline figures as JSON rows here")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="app-latency-") as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        checkpoints.mkdir()
        models = checkpoint_snapshot(checkpoints)
        rounds = []
        with sync_playwright() as p:
            t = time.perf_counter()
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            launch = time.perf_counter() - t
            try:
                for r in range(args.repeats):
                    port = args.port or free_port()
                    rounds.append(one_round(args, browser, checkpoints, port, Path(tmp) / f"server-{r}.log"))
                    print(f"round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
                warm = [] if args.no_warm_browser else warm_browser_cold_starts(args, browser, checkpoints, Path(tmp))
            finally:
                browser.close()
        server_side = [] if args.no_apptest else apptest_k_changes(checkpoints, args.threads)

    k_all = [c for r in rounds for c in r["k"]]
    click_all = [c for r in rounds for c in r["clicks"]]
    print(f"\nModels: {', '.join(models)}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs; server torch threads: {args.threads or 'default'}; chromium launch {launch:.2f} s "
          "(not counted)")
    print("\nK changes (s):  " + "  ".join(
        f"{c['from']}->{c['to']} ({c['how']}) "
        f"{c['charts']:.2f}/{c['done']:.2f}/{c['run']:.2f}/{c['ws']:.2f}/{c['mb']:.1f}"
        + ("" if c["runs"] == 1 else f" {c['runs']} runs") + ("" if c["ok"] else " WRONG K")
        for c in k_all) + "   [s: charts updated / run done / script running / last message; MB]")
    print("Clicks (s):     " + "  ".join(f"#{c['index']} {c['shown']:.2f}/{c['done']:.2f}/{c['mb']:.1f}"
                                         for c in click_all) + "   [s: image shown / run done; MB sent]")
    if server_side:
        print("AppTest K (s):  " + "  ".join(f"->{c['to']} ({c['kind']}) {c['seconds']:.2f}" for c in server_side))
    for dialog in sorted({d for r in rounds for d in r["dialogs"]}):
        print(f"NOTE: dialog on the cold deep link to /latent (closed before measuring clicks): {dialog}")
    exceptions = sum(r["exceptions"] for r in rounds)
    if exceptions:
        print(f"WARNING: {exceptions} Streamlit exception element(s) on the page")

    def med(values):
        return statistics.median(values) if values else float("nan")

    # (table row, values, target, name in the one-table summary of bench/run_all.py or None: not a headline figure)
    rows = [
        ("cold: server ready (launch -> health ok)", [r["ready"] for r in rounds], None,
         "cold: server ready (launch -> health ok)"),
        ("cold: browser (open /latent -> first chart)", [r["browser"] for r in rounds], None,
         "cold: browser (open /latent -> first chart)"),
        ("cold start to first chart (launch -> chart)", [r["cold"] for r in rounds], TARGETS["cold"],
         "cold start to first chart (launch -> chart)"),
        ("cold, cached frontend: browser (open -> chart)", [w["browser"] for w in warm], None,
         "cold, frontend cached: browser (open /latent -> chart)"),
        ("cold, cached frontend: launch -> first chart", [w["cold"] for w in warm], TARGETS["cold"],
         "cold, frontend cached: launch -> first chart"),
        ("K change -> charts updated, all", [c["charts"] for c in k_all], TARGETS["k"],
         "K change (rerun) -> charts updated, all"),
        ("  neighbouring step", [c["charts"] for c in k_all if c["kind"] == "step"], TARGETS["k"],
         "K change (rerun) -> charts updated, neighbouring step"),
        ("  jump", [c["charts"] for c in k_all if c["kind"] == "jump"], TARGETS["k"],
         "K change (rerun) -> charts updated, jump"),
        ("K change -> run done", [c["done"] for c in k_all], None,
         "K change (rerun) -> run done"),
        ("K change: rerun started (key -> running)", [c["start"] for c in k_all], None, None),
        ("K change: script running in the page", [c["run"] for c in k_all], None, None),
        ("K change: last server message received", [c["ws"] for c in k_all], None, None),
        ("scatter click -> image chosen", [c["shown"] for c in click_all], TARGETS["click"],
         "scatter click -> image chosen"),
        ("scatter click -> run done", [c["done"] for c in click_all], None, "scatter click -> run done"),
    ]
    if server_side:
        rows += [
            ("server-side K run (AppTest), all", [c["seconds"] for c in server_side], TARGETS["k"],
             "server-side K run (AppTest), all"),
            ("  neighbouring step", [c["seconds"] for c in server_side if c["kind"] == "step"], TARGETS["k"], None),
            ("  jump", [c["seconds"] for c in server_side if c["kind"] == "jump"], TARGETS["k"], None),
        ]
    print(f"\n{'measure':<46} {'n':>3} {'median s':>9} {'max s':>7} {'target s':>9} {'ratio':>6}")
    for name, values, target, _ in rows:
        m = med(values)
        print(f"{name:<46} {len(values):>3} {m:>9.2f} {max(values, default=float('nan')):>7.2f} "
              f"{'' if target is None else f'{target:.1f}':>9} {'' if target is None else f'{m / target:.2f}':>6}")
    if args.json:
        load = os.getloadavg()[0]
        in_browser = (f"{len(models)} models, {args.repeats} cold start{'s' * (args.repeats != 1)}, {args.k_changes} K "
                      f"changes, {args.clicks} clicks; server threads {args.threads or 'default'}; load {load:.1f}")
        apptest = (f"{len(models)} models, AppTest in-process, {len(server_side)} K changes; threads "
                   f"{args.threads or 'default'}; load {load:.1f}")
        write_rows(args.json, [
            bench_row(BENCHMARK, summary, med(values), "s", target, None if target is None else "max",
                      apptest if "AppTest" in summary else in_browser)
            for _, values, target, summary in rows
            if summary and values  # n = 0 (e.g. no jump among very few K changes): no figure
        ])
    wrong = [c for c in k_all if not c["ok"]] + [c for c in server_side if not c["ok"]]
    if wrong:
        sys.exit(f"K changes that did not land: {wrong}")


if __name__ == "__main__":
    main()
