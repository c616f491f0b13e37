"""Concurrent sessions against one local explorer server: errors, per-session state, server memory, latency.

    python bench/load_sessions.py [--sessions 1 5 20] [--seconds 60] [--threads 1] [--seed 0] [--out bench/results]

For each session count N: a fresh ``streamlit run app.py`` on 127.0.0.1 (a free port, headless; the same command
line and checkpoint snapshot as bench/harness.py), then N Playwright browser contexts in ONE Chromium (async
API), each a separate Streamlit session opened from its own deep link to the Posteriors page
(``/posteriors?image=<i>&k=<K>``, distinct images). Once all N are open, for ``--seconds`` every session repeats
actions as a user does, one at a time:
- K through the sidebar slider with the keyboard (ArrowLeft / ArrowRight / Home / End on the focused thumb),
- another test image: the sidebar's previous / next buttons, or a typed index in its number input (+ Enter).
After each action it waits until the app has run and is idle (the script-state observer of bench/harness.py)
and checks: no Streamlit exception element and no error alert; the page's URL query shows this session's own
``image`` and ``k``; the sidebar shows them too; the posterior charts are titled with its K (plotly draws after the
run, so this waits up to CHART_WAIT_MS for them); the page text names its image. A session's expected state is only
ever changed by its own actions, so cross-talk between sessions shows as a mismatch. The first page load of each
session is checked the same way.

The server process tree's RSS (VmRSS from /proc, children included; psutil is not needed) is sampled every 0.5 s:
the table gives the RSS before any session, once all sessions are open, its peak, and at the end. The browser side
(Chromium, the Playwright driver) is sampled too (PSS, every 2 s), and the CPU seconds both sides use during the
action phase, to show what the browser itself costs. Latency: from the key press / click until the app's last
script run for it ended (page clock), median and 90th percentile. Prints one table and writes it to
``<out>/load-<timestamp>.txt``. Run it under ``nice`` on a shared machine; the load average is printed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CHART_INFO,
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE_LABEL,
    K_LABEL,
    RUN_OBSERVER,
    SETTLE_MS,
    checkpoint_snapshot,
    free_port,
    healthy,
    start_streamlit,
    stop_streamlit,
)
from explorer.state import K_CHOICES, N_TEST_IMAGES  # noqa: E402

VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_S = 180
OPEN_TIMEOUT_MS = 600_000  # N sessions opening at once on a loaded 2-core box: quadrature for N images first
ACTION_TIMEOUT_MS = 300_000
RERUN_START_MS = 120_000  # a busy server may take a while to start the rerun
RSS_INTERVAL_S = 0.5
CLIENT_INTERVAL_S = 2.0
MAX_DETAILS = 20  # error details kept per session count
CHART_WAIT_MS = 120_000  # how long after the run the charts may take to show the new K

CHARTS_AT_K = """
k => {
  const titles = Array.from(document.querySelectorAll('.js-plotly-plot'))
    .flatMap(gd => ((gd._fullLayout && gd._fullLayout.annotations) || []).map(a => a.text))
    .filter(t => t.includes('at K ='));
  return titles.length >= 2 && titles.every(t => t.endsWith('at K = ' + k));
}
"""

IDLE = """
settle => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-connection-state') === 'CONNECTED' && window.__st.runs > 0
    && window.__st.state === 'notRunning' && performance.now() - window.__st.idleAt > settle;
}
"""


# ------------------------------------------------------------------------------------------------
# Memory of a process tree, from /proc


def _children(pid: int) -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


def _status_kb(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return _status_kb(pid, "VmRSS")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its reaped children not included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_rss_mb(pid: int) -> float:
    return sum(_status_kb(p, "VmRSS") for p in process_tree(pid)) / 1024


class MemorySampler(threading.Thread):
    """Server tree RSS every RSS_INTERVAL_S; this process's other descendants (Playwright driver, Chromium) PSS every
    CLIENT_INTERVAL_S."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.samples: list[tuple[float, float]] = []  # (monotonic time, server RSS MB)
        self.client_peak = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        next_client = 0.0
        while not self._halt.is_set():
            now = time.monotonic()
            self.samples.append((now, tree_rss_mb(self.server_pid)))
            if now >= next_client:
                server = set(process_tree(self.server_pid))
                client = [p for p in process_tree(os.getpid()) if p not in server and p != os.getpid()]
                self.client_peak = max(self.client_peak, sum(_pss_kb(p) for p in client) / 1024)
                next_client = now + CLIENT_INTERVAL_S
            self._halt.wait(RSS_INTERVAL_S)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the server tree and of the browser side (Chromium, Playwright driver)."""
        server = process_tree(self.server_pid)
        client = [p for p in process_tree(os.getpid()) if p not in set(server) and p != os.getpid()]
        return sum(map(_cpu_s, server)), sum(map(_cpu_s, client))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, since: float = 0.0, until: float = float("inf")) -> float:
        return max((r for t, r in self.samples if since <= t <= until), default=float("nan"))

    def at(self, when: float) -> float:
        """The last sample at or before ``when``."""
        before = [r for t, r in self.samples if t <= when]
        return before[-1] if before else float("nan")


# ------------------------------------------------------------------------------------------------
# The server


# ------------------------------------------------------------------------------------------------
# One session


@dataclass
class SessionResult:
    sid: int
    open_s: float = float("nan")
    latencies: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    late_charts: int = 0  # checks where the charts were drawn only after the run had ended


async def wait_idle(page, timeout_ms: int) -> None:
    await page.wait_for_function(IDLE, arg=SETTLE_MS, timeout=timeout_ms, polling=100)


async def check(page, image: int, k: int) -> tuple[list[str], bool]:
    """What is wrong with this session's page, given its own image and K; and whether its charts were drawn only
    after the app was idle."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    problems, late = [], False
    exceptions = page.locator("[data-testid='stException']")
    if await exceptions.count():
        problems.append("exception: " + " | ".join(t[:200] for t in await exceptions.all_inner_texts()))
    alerts = page.locator("[data-testid='stAlertContentError']")
    if await alerts.count():
        problems.append("error alert: " + " | ".join(t[:200] for t in await alerts.all_inner_texts()))
    query = {key: v[-1] for key, v in parse_qs(urlparse(page.url).query).items()}
    if (query.get("image"), query.get("k")) != (str(image), str(k)):
        problems.append(f"URL shows image={query.get('image')} k={query.get('k')}, expected image={image} k={k}")
    side = page.locator("[data-testid='stSidebar']")
    shown_image = await side.get_by_label(IMAGE_LABEL, exact=True).input_value()
    shown_k = await side.get_by_role("slider", name=K_LABEL).get_attribute("aria-valuetext")
    if (shown_image, shown_k) != (str(image), str(k)):
        problems.append(f"sidebar shows image {shown_image} K {shown_k}, expected {image} / {k}")
    try:  # plotly draws after the run, in the browser: on a starved CPU, seconds later
        late = not await page.evaluate(CHARTS_AT_K, k)
        await page.wait_for_function(CHARTS_AT_K, arg=k, timeout=CHART_WAIT_MS, polling=100)
    except PlaywrightTimeout:
        titles = [t for chart in await page.evaluate(CHART_INFO) for t in chart["annotations"] if "at K =" in t]
        problems.append(f"chart titles {titles} {CHART_WAIT_MS / 1000:.0f} s after the run, expected 'at K = {k}'")
    if not await page.locator("[data-testid='stMain']").get_by_text(f"test image #{image} (digit").count():
        problems.append(f"page text does not name test image #{image}")
    return problems, late


async def close_dialogs(page) -> list[str]:
    dialogs = page.locator("[data-testid='stDialog']")
    texts = [" ".join(t.split())[:120] for t in await dialogs.all_inner_texts()]
    for closed in range(1, len(texts) + 1):
        await dialogs.first.get_by_role("button", name="Close").click()
        await page.wait_for_function("n => document.querySelectorAll('[data-testid=\"stDialog\"]').length <= n",
                                     arg=len(texts) - closed, timeout=10_000)
    return texts


async def run_session(sid: int, browser, url: str, seed: int, start_image: int, opened: asyncio.Event,
                      all_open: asyncio.Event, deadline: list[float], result: SessionResult, contexts: list) -> None:
    """One user: open the deep link, then act and check until the deadline. The context stays open (the caller
    closes them all after reading the CPU counters of the renderers)."""
    rng = random.Random(f"{seed}-{sid}")
    image, ki = start_image, rng.randrange(len(K_CHOICES))
    t0 = time.perf_counter()
    try:
        context = await browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        await context.add_init_script(RUN_OBSERVER)
        page = await context.new_page()
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        page.on("pageerror", lambda exc: result.errors.append(f"page error: {exc}"[:300]))
        await page.goto(f"{url}/posteriors?image={image}&k={K_CHOICES[ki]}", timeout=OPEN_TIMEOUT_MS)
        await wait_idle(page, OPEN_TIMEOUT_MS)
        result.open_s = time.perf_counter() - t0
        result.dialogs = await close_dialogs(page)
        problems, late = await check(page, image, K_CHOICES[ki])
        result.errors += [f"open: {p}" for p in problems]
        result.late_charts += late
    except Exception as exc:  # noqa: BLE001 - reported, the other sessions go on
        result.errors.append(f"open: {type(exc).__name__}: {str(exc)[:300]}")
        opened.set()
        return
    opened.set()
    await all_open.wait()

    side = page.locator("[data-testid='stSidebar']")
    slider = side.get_by_role("slider", name=K_LABEL)
    number = side.get_by_label(IMAGE_LABEL, exact=True)
    while time.monotonic() < deadline[0]:
        if rng.random() < 0.5:  # K with the keyboard
            key = rng.choice(["ArrowRight", "ArrowLeft", "Home", "End"])
            target = {"ArrowRight": min(ki + 1, len(K_CHOICES) - 1), "ArrowLeft": max(ki - 1, 0), "Home": 0,
                      "End": len(K_CHOICES) - 1}[key]
            if target == ki:  # at that end already: the other way
                key, target = ("ArrowLeft", ki - 1) if ki == len(K_CHOICES) - 1 else ("ArrowRight", ki + 1)
            kind, new_image, new_ki = f"K {key}", image, target

            async def act(key=key):
                await slider.focus()
                await page.keyboard.press(key)
        else:  # another image
            how = rng.choice(["next", "previous", "typed"])
            if how == "typed":
                new_image = rng.choice([i for i in range(1, N_TEST_IMAGES - 1, 7) if i != image])

                async def act(value=new_image):
                    await number.fill(str(value))
                    await number.press("Enter")
            else:
                new_image = (image + (1 if how == "next" else -1)) % N_TEST_IMAGES

                async def act(button=f".st-key-{'next' if how == 'next' else 'prev'}_image button"):
                    await page.locator(button).first.click()
            kind, new_ki = f"image {how}", ki
        try:
            runs = await page.evaluate("() => { window.__t0 = performance.now(); return window.__st.runs; }")
            await act()
            image, ki = new_image, new_ki  # what this session expects from now on
            await page.wait_for_function("n => window.__st.runs > n", arg=runs, timeout=RERUN_START_MS,
                                         polling=50)
            await wait_idle(page, ACTION_TIMEOUT_MS)
            result.latencies.append(
                await page.evaluate("() => (window.__st.idleAt - window.__t0) / 1000"))
            result.kinds[kind] = result.kinds.get(kind, 0) + 1
            problems, late = await check(page, image, K_CHOICES[ki])
            result.errors += [f"{kind}: {p}" for p in problems]
            result.late_charts += late
        except Exception as exc:  # noqa: BLE001 - a timeout or a lost page is an error of this session
            result.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
            if page.is_closed():
                return


# ------------------------------------------------------------------------------------------------
# One session count


async def run_count(n: int, args, browser, checkpoints: Path, log: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_streamlit(port, checkpoints, args.threads, log)
    sampler = MemorySampler(server.pid)
    sampler.start()
    try:
        t = time.monotonic()
        while not healthy(url):
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text(errors='replace')}")
            if time.monotonic() - t > SERVER_START_S:
                raise RuntimeError(f"streamlit not healthy after {SERVER_START_S} s")
            await asyncio.sleep(0.25)
        idle_rss = tree_rss_mb(server.pid)
        results = [SessionResult(i) for i in range(n)]
        opened = [asyncio.Event() for _ in range(n)]
        contexts: list = []
        all_open = asyncio.Event()
        deadline = [float("inf")]
        # Distinct images, spread over the test set (not multiples of 7 plus 1, which typed indices use).
        starts = [(997 * i + 500) % N_TEST_IMAGES for i in range(n)]
        tasks = [asyncio.create_task(run_session(i, browser, url, args.seed, starts[i], opened[i], all_open,
                                                 deadline, results[i], contexts)) for i in range(n)]
        t_open = time.monotonic()
        await asyncio.gather(*(e.wait() for e in opened))
        open_wall = time.monotonic() - t_open
        t_start = time.monotonic()
        cpu_start = sampler.cpu()
        deadline[0] = t_start + args.seconds
        all_open.set()
        await asyncio.gather(*tasks)
        t_end = time.monotonic()
        cpu_end = sampler.cpu()
        for context in contexts:
            await context.close()
    finally:
        sampler.stop()
        stop_streamlit(server, timeout=30)
    text = log.read_text(errors="replace")
    latencies = [x for r in results for x in r.latencies]
    errors = [f"session {r.sid}: {e}" for r in results for e in r.errors]
    if "Traceback" in text:
        first = text[text.index("Traceback"):][:3000]
        errors.append(f"server log: {text.count('Traceback')} traceback(s); the first:\n{first}")
    kinds: dict[str, int] = {}
    for r in results:
        for key, v in r.kinds.items():
            kinds[key] = kinds.get(key, 0) + v
    return {
        "sessions": n,
        "seconds": t_end - t_start,
        "open_wall": open_wall,
        "open_median": statistics.median([r.open_s for r in results]),
        "actions": len(latencies),
        "per_session": [len(r.latencies) for r in results],
        "kinds": kinds,
        "errors": errors,
        "dialogs": sorted({d for r in results for d in r.dialogs}),
        "dialog_sessions": sum(1 for r in results if r.dialogs),
        "late_charts": sum(r.late_charts for r in results),
        "lat_median": statistics.median(latencies) if latencies else float("nan"),
        "lat_p90": statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 2 else float("nan"),
        "lat_max": max(latencies, default=float("nan")),
        "rss_idle": idle_rss,
        "rss_open": sampler.at(t_start),
        "rss_peak": sampler.peak(),
        "rss_end": sampler.at(t_end),
        "rss_first_half_peak": sampler.peak(t_start, (t_start + t_end) / 2),
        "rss_second_half_peak": sampler.peak((t_start + t_end) / 2, t_end),
        "client_peak": sampler.client_peak,
        "cpu_server": cpu_end[0] - cpu_start[0],
        "cpu_browser": cpu_end[1] - cpu_start[1],
        "load": os.getloadavg(),
    }


async def run_all(args) -> list[dict]:
    from playwright.async_api import async_playwright

    out = []
    with tempfile.TemporaryDirectory(prefix="load-sessions-") as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        checkpoints.mkdir()
        models = checkpoint_snapshot(checkpoints)
        print(f"models: {', '.join(models)}", file=sys.stderr, flush=True)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for n in args.sessions:
                    print(f"{n} session(s), {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
                    row = await run_count(n, args, browser, checkpoints, Path(tmp) / f"server-{n}.log")
                    print(f"  {row['actions']} actions, {len(row['errors'])} errors, peak RSS "
                          f"{row['rss_peak']:.0f} MB", file=sys.stderr, flush=True)
                    out.append(row)
            finally:
                await browser.close()
    return out


def table(rows: list[dict], args) -> str:
    lines = [
        f"# bench/load_sessions.py {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} "
        f"({os.cpu_count()} CPUs); --seconds {args.seconds:g}, server torch threads {args.threads}, seed {args.seed}",
        "",
        f"{'sessions':>8} {'s':>5} {'actions':>7} {'errors':>6} {'open s':>7} {'median s':>8} {'p90 s':>6} "
        f"{'max s':>6} {'RSS idle':>8} {'RSS open':>8} {'RSS peak':>8} {'RSS end':>8} {'1st/2nd half peak':>17} "
        f"{'browser':>8} {'CPU s srv/brw':>13} {'load avg':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r['sessions']:>8} {r['seconds']:>5.0f} {r['actions']:>7} {len(r['errors']):>6} {r['open_wall']:>7.1f} "
            f"{r['lat_median']:>8.2f} {r['lat_p90']:>6.2f} {r['lat_max']:>6.2f} {r['rss_idle']:>8.0f} "
            f"{r['rss_open']:>8.0f} {r['rss_peak']:>8.0f} {r['rss_end']:>8.0f} "
            f"{r['rss_first_half_peak']:>8.0f}/{r['rss_second_half_peak']:<8.0f} {r['client_peak']:>8.0f} "
            f"{r['cpu_server']:>6.0f}/{r['cpu_browser']:<6.0f} "
            f"{' '.join(f'{x:.1f}' for x in r['load']):>14}")
    lines += [
        "",
        "s: seconds of actions after all sessions were open; actions: completed (each waited for and checked);",
        "errors: failed checks, timeouts, page errors, server tracebacks; open s: wall time until all N sessions had",
        "loaded their deep link; median/p90/max s: action latency (key press or click until the app's last run for",
        "it ended); RSS (MB): server process tree, idle before any session / once all were open / peak / at the end,",
        "and the peak in the first and second half of the action phase; browser: peak PSS (MB) of Chromium and the",
        "Playwright driver; CPU s: CPU seconds used during the action phase by the server and by the browser side.",
        "",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["kinds"].items()))
        lines.append(f"{r['sessions']} session(s): actions per session {r['per_session']}; {kinds}; charts drawn "
                     f"after the run had ended (waited for, up to {CHART_WAIT_MS / 1000:.0f} s): {r['late_charts']} "
                     f"of {r['actions'] + r['sessions']} checks")
        if r["dialogs"]:
            lines.append(f"  dialogs on opening (closed; a known issue of deep links on a fresh server) in "
                         f"{r['dialog_sessions']} session(s): {r['dialogs']}")
        for e in r["errors"][:MAX_DETAILS]:
            lines.append(f"  ERROR {e}")
        if len(r["errors"]) > MAX_DETAILS:
            lines.append(f"  ... and {len(r['errors']) - MAX_DETAILS} more")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 20], help="session counts, one server each")
    parser.add_argument("--seconds", type=float, default=60.0, help="action phase per session count")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server (as the browser tests)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every session's choice of actions")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    rows = asyncio.run(run_all(args))
    text = table(rows, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"load-{datetime.datetime.now():%Y-%m-%d-%H%M}.txt"
    path.write_text(text)
    print(f"wrote {path}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
