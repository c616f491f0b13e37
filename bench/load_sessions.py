"""Concurrent sessions against one local explorer server (the classroom load of issue 15): action latency, errors,
per-session state, server memory.

    python bench/load_sessions.py [--sessions 30] [--seconds 120 | --lessons 1] [--think 0] [--class-images]
                                  [--client ws|browser] [--threads 1] [--seed 0] [--out bench/results] [--json PATH]

For each session count N: a fresh ``streamlit run app.py`` on 127.0.0.1 (a free port, headless; the same command line
and checkpoint snapshot as bench/harness.py), then N clients, all started at once, for ``--seconds`` of actions (an
action under way at the deadline is finished and counted), or with ``--lessons L`` (ws clients) until every client has
walked the whole lesson L times (no time limit unless ``--seconds`` is given too): a short ``--seconds`` leaves the
later pages of the lesson unvisited (5 clients took 30 s for its first 9 steps on a loaded 2-core box).

``--client ws`` (the default): N lightweight websocket clients in this one Python process, each a Streamlit session
speaking the frontend's protocol on /_stcore/stream (``StreamlitClient``): a rerun request carries the page, the URL
query and the one widget value that changed, as the frontend's does; the server's messages are read for the widget
ids and options, the query the app writes into the URL, and the end of each run. They draw nothing and fetch no
media, so the two cores go to the server, which is what is measured: 20 Chromium sessions spent four times the
server's CPU drawing charts (load-2026-11-21-1720.txt: 327 against 84 CPU seconds), so 30 browsers would measure
the browsers fighting the server for the two cores. Each client walks a scripted lesson (LESSON), again and again
until the deadline: open home; the latent page and an image; the posteriors page, K = 1, 100 and 5000, another
model pair and image; the resampling page (at K = 5000), K = 100 and another image; the bounds page and another pair;
the toy page; the digit page; the lesson page and Next twice. Every client has its own images (the worst case: no
cache is shared); with ``--class-images`` every client takes the same images, in the same order, each at its own pace
(a class told which image to choose). Latency: from sending the request to the end of its last script run (a
callback's rerun included), on this process's clock: the server's time for the action, not the browser's drawing.
After each action: no exception element, error alert or "page not found" in the run, and the URL query the app wrote
shows this client's own models, image and K (cross-talk between sessions would show as a mismatch); a timeout or a
lost connection is an error too.

``--client browser``: N Playwright browser contexts in ONE Chromium (async API), each opened from its own deep link to
the Posteriors page (``/posteriors?image=<i>&k=<K>``, distinct images), repeating random K changes (keyboard on the
sidebar slider) and image changes (previous / next buttons, a typed index) and checking the page after each (URL,
sidebar, chart titles, page text); latency from the key press / click until the app's last script run for it ended
(page clock). The earlier results files (bench/results/load-2026-11-21-*.txt) were made this way.

The server process tree's RSS (VmRSS from /proc, children included; psutil is not needed) is sampled every 0.5 s: the
table gives the RSS before any session, once all sessions are open, its peak, its peak in each half of the action
phase (memory bounded: the second half's peak no higher than the first's), and at the end. The client side is sampled
too (PSS every 2 s: this process for ws clients; Chromium and the Playwright driver for browser ones), and the CPU
seconds both sides use during the action phase. Prints one table (latency p50 / p95 / max, errors, RSS) and writes
it to ``<out>/load-<timestamp>.txt``; ``--json PATH`` also writes the headline figures for bench/run_all.py
(``bench_row``: p95 against 2 s, errors against 0). Run it under ``nice`` on a shared machine; the load average is
printed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import itertools
import os
import platform
import random
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
    SERVER_START_S,
    SETTLE_MS,
    checkpoint_snapshot,
    first_traceback,
    free_port,
    healthy,
    one_line,
    start_streamlit,
    stop_streamlit,
)
from bench.run_all import bench_row, write_rows  # noqa: E402
from explorer.state import K_CHOICES, N_TEST_IMAGES  # noqa: E402

BENCHMARK = "classroom load"
TARGET_P95_S = 2.0
VIEWPORT = {"width": 1280, "height": 800}
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
    """Server tree RSS every RSS_INTERVAL_S; the client side PSS every CLIENT_INTERVAL_S: this process's other
    descendants (Playwright driver, Chromium), and this process itself when it holds the clients (``with_self``: the
    websocket clients)."""

    def __init__(self, server_pid: int, with_self: bool = False):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.with_self = with_self
        self.samples: list[tuple[float, float]] = []  # (monotonic time, server RSS MB)
        self.client_peak = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        next_client = 0.0
        while not self._halt.is_set():
            now = time.monotonic()
            self.samples.append((now, tree_rss_mb(self.server_pid)))
            if now >= next_client:
                self.client_peak = max(self.client_peak, sum(_pss_kb(p) for p in self._client_pids()) / 1024)
                next_client = now + CLIENT_INTERVAL_S
            self._halt.wait(RSS_INTERVAL_S)

    def _client_pids(self) -> list[int]:
        server = set(process_tree(self.server_pid))
        return [p for p in process_tree(os.getpid())
                if p not in server and (p != os.getpid() or self.with_self)]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the server tree and of the client side."""
        return sum(map(_cpu_s, process_tree(self.server_pid))), sum(map(_cpu_s, self._client_pids()))

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
# One session (both kinds of client)


@dataclass
class SessionResult:
    sid: int
    open_s: float = float("nan")
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # action kind -> latencies (s)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    late_charts: int = 0  # browser clients: checks where the charts were drawn only after the run had ended
    lessons: int = 0  # ws clients: whole lessons walked

    @property
    def latencies(self) -> list[float]:
        return [x for values in self.by_kind.values() for x in values]

    def add(self, kind: str, seconds: float) -> None:
        self.by_kind.setdefault(kind, []).append(seconds)


# ------------------------------------------------------------------------------------------------
# Browser clients (--client browser)


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
            result.add(kind, await page.evaluate("() => (window.__st.idleAt - window.__t0) / 1000"))
            problems, late = await check(page, image, K_CHOICES[ki])
            result.errors += [f"{kind}: {p}" for p in problems]
            result.late_charts += late
        except Exception as exc:  # noqa: BLE001 - a timeout or a lost page is an error of this session
            result.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
            if page.is_closed():
                return


# ------------------------------------------------------------------------------------------------
# Lightweight clients (--client ws, the default): the frontend's websocket protocol, no browser

WS_OPEN_TIMEOUT_S = 120
WS_RUN_TIMEOUT_S = 600  # one action's runs on a server shared by 30 clients on 2 cores
# The scripted lesson every ws client walks, again and again: (what, argument).
LESSON = (
    ("page", "latent"), ("image", None),
    ("page", "posteriors"), ("K", 1), ("K", 100), ("K", 5000), ("pair", None), ("image", None),
    ("page", "resampling"), ("K", 100), ("image", None),
    ("page", "bounds"), ("pair", None),
    ("page", "toy"),
    ("page", "digit"),
    ("page", "lesson"), ("lesson next", None), ("lesson next", None),
)
STATE_KEYS = ("a", "b", "image", "k")  # URL query values a client's own actions decide


@dataclass
class Widget:
    id: str
    options: list[str]


def widget_value(kind: str, element) -> dict | None:
    """What the frontend holds for a widget drawn from ``element`` (a Selectbox, NumberInput, Slider or Checkbox
    proto): the value the server set (``set_value``) or else its default, as WidgetState fields ({}: no value; None:
    not a widget whose state is kept, e.g. a button's trigger)."""
    from streamlit.proto.NumberInput_pb2 import NumberInput
    from streamlit.proto.Slider_pb2 import Slider

    if kind == "selectbox":
        if element.set_value:
            return {"string_value": element.raw_value} if element.HasField("raw_value") else {}
        has_default = element.HasField("default") and element.default < len(element.options)
        return {"string_value": element.options[element.default]} if has_default else {}
    if kind == "number_input":
        value = element.value if element.set_value and element.HasField("value") else (
            element.default if element.HasField("default") else None)
        if value is None:
            return {}
        return {"int_value": int(value)} if element.data_type == NumberInput.INT else {"double_value": value}
    if kind == "slider":
        values = list(element.value if element.set_value else element.default)
        if element.type == Slider.SELECT_SLIDER:
            if element.set_value and element.raw_value:
                return {"string_array_value": list(element.raw_value)}
            return {"string_array_value": [element.options[int(i)] for i in values]}
        return {"double_array_value": values}
    if kind == "checkbox":
        return {"bool_value": element.value if element.set_value else element.default}
    return None


class StreamlitClient:
    """One Streamlit session over the app's websocket (/_stcore/stream) without a browser. ``run`` sends what the
    frontend sends for a page switch or an input (BackMsg.rerun_script: the page's script hash, the URL query, and the
    state of every widget drawn by the last run, with the input's new value) and waits until the app's last run for it
    has finished. Like the frontend it keeps each widget's value: the one it last sent, or the one the server set. The
    server's messages are also read for the widgets' ids and options by user key, the pages (URL path -> script hash),
    the current page, the query the app writes into the URL, and problems: exception elements, error alerts, "page
    not found"."""

    def __init__(self, url: str):
        self.ws_url = url.replace("http://", "ws://", 1) + "/_stcore/stream"
        self.widgets: dict[str, Widget] = {}  # user key -> id, options
        self.values: dict[str, dict] = {}  # widget id -> WidgetState value fields
        self.drawn: list[str] = []  # widget ids drawn by the current (or last) run
        self.pages: dict[str, str] = {}
        self.page_hash = ""
        self.query = ""
        self.problems: list[str] = []  # of the latest action's runs
        self.received = 0  # bytes
        self.closed: str | None = None
        self._done = asyncio.Event()
        self._ws = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self._ws = await connect(self.ws_url, subprotocols=["streamlit"], max_size=None,
                                 open_timeout=WS_OPEN_TIMEOUT_S, ping_interval=None)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            async for data in self._ws:
                self.received += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - a lost connection is reported by the action waiting on it
            self.closed = f"{type(exc).__name__}: {exc}"
        self.closed = self.closed or "connection closed by the server"
        self._done.set()

    def _handle(self, msg) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        kind = msg.WhichOneof("type")
        if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            self._element(msg.delta.new_element)
        elif kind == "new_session":  # sent as every script run starts
            self.drawn = []
        elif kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "page_not_found":
            self.problems.append(f"page not found: {msg.page_not_found.page_name!r}")
        elif kind == "script_finished":
            if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                self.problems.append("script compile error")
            if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # else a callback's rerun follows
                self._done.set()

    def _element(self, element) -> None:
        from streamlit.proto.Alert_pb2 import Alert

        kind = element.WhichOneof("type")
        if kind == "exception":
            e = element.exception
            self.problems.append(f"{'warning' if e.is_warning else 'exception'}: {e.type}: {one_line(e.message)}")
            return
        if kind == "alert" and element.alert.format == Alert.ERROR:
            self.problems.append(f"error alert: {one_line(element.alert.body)}")
            return
        proto = getattr(element, kind) if kind else None
        wid = getattr(proto, "id", "")
        if not (isinstance(wid, str) and wid.startswith("$$ID-") and wid.count("-") >= 2):
            return
        self.widgets[wid.split("-", 2)[2]] = Widget(wid, list(getattr(proto, "options", [])))  # $$ID-<hash>-<key>
        value = widget_value(kind, proto)
        if value is not None:
            if getattr(proto, "set_value", False) or wid not in self.values:
                self.values[wid] = value
            self.drawn.append(wid)

    def state(self) -> dict[str, str]:
        """The URL query's models, image and K, as the app last wrote them."""
        query = parse_qs(self.query)
        return {key: query.get(key, [""])[-1] for key in STATE_KEYS}

    def widget_state(self, key: str, **value):
        """A widget's new state (WidgetState with one value field set), by its user key; KeyError if unseen."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        state = WidgetState(id=self.widgets[key].id)
        for name, v in value.items():
            if name == "string_array_value":
                state.string_array_value.data.extend(v)
            else:
                setattr(state, name, v)
        return state

    def _widget_states(self, changed) -> list:
        """Every drawn widget's state, ``changed`` (a WidgetState) in place of its own or added (a trigger)."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        out = []
        for wid in dict.fromkeys(self.drawn):
            if changed is not None and wid == changed.id:
                continue
            state = WidgetState(id=wid)
            for name, v in self.values[wid].items():
                if name.endswith("_array_value"):
                    getattr(state, name).data.extend(v)
                else:
                    setattr(state, name, v)
            out.append(state)
        if changed is not None:
            out.append(changed)
            if changed.WhichOneof("value") != "trigger_value":
                self.values[changed.id] = {changed.WhichOneof("value"): _field_value(changed)}
        return out

    async def run(self, page: str | None = None, widget=None, timeout_s: float = WS_RUN_TIMEOUT_S) -> float:
        """Switch to ``page`` (a URL path; "" is home), or rerun the current page with ``widget``'s new state; wait
        for the end of the last run it caused. Returns the seconds from sending; TimeoutError / ConnectionError."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        if self.closed:
            raise ConnectionError(self.closed)
        msg = BackMsg()
        request = msg.rerun_script
        if page is not None:  # the frontend's page switch: the page's hash and name, no query
            request.page_script_hash = self.pages.get(page, "")
            request.page_name = page
        else:
            request.page_script_hash = self.page_hash
            request.query_string = self.query
        request.widget_states.widgets.extend(self._widget_states(widget))
        self.problems = []
        self._done.clear()
        started = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        await asyncio.wait_for(self._done.wait(), timeout_s)
        if self.closed:
            raise ConnectionError(self.closed)
        return time.perf_counter() - started


def _field_value(state):
    """The value of a WidgetState's set field, as widget_value gives it (array values as lists)."""
    name = state.WhichOneof("value")
    value = getattr(state, name)
    return list(value.data) if name.endswith("_array_value") else value


def lesson_action(client: StreamlitClient, what: str, argument, images, expected: dict[str, str]):
    """One step of LESSON for this client: (kind for the report, ``run`` keyword arguments, the URL state expected
    after it, or None when the app decides it: the lesson's steps set their own models, image and K)."""
    if what == "page":
        return f"open {argument}", {"page": argument}, None if argument == "lesson" else dict(expected)
    if what == "image":
        image = next(images)
        return "image", {"widget": client.widget_state("image", int_value=image)}, expected | {"image": str(image)}
    if what == "K":
        return f"K {argument}", {"widget": client.widget_state("K", string_array_value=[str(argument)])}, \
            expected | {"k": str(argument)}
    if what == "pair":  # the right column to the next model in neither column
        options = client.widgets["model_b"].options
        names = [o.split(" (")[0] for o in options]
        start = names.index(expected["b"]) if expected["b"] in names else 0
        order = names[start + 1:] + names[:start + 1]
        name = next((n for n in order if n not in (expected["a"], expected["b"])), order[0])
        option = options[names.index(name)]
        return "pair", {"widget": client.widget_state("model_b", string_value=option)}, expected | {"b": name}
    if what == "lesson next":
        return "lesson next", {"widget": client.widget_state("lesson_next", trigger_value=True)}, None
    raise ValueError(what)


def client_images(sid: int):
    """This client's own test images, spread over the test set."""
    return ((997 * sid + 500 + 7919 * j) % N_TEST_IMAGES for j in itertools.count())


async def run_ws_session(sid: int, url: str, opened: asyncio.Event, all_open: asyncio.Event, deadline: list[float],
                         result: SessionResult, lessons: int | None, think: float = 0.0,
                         class_images: bool = False) -> None:
    """One student: connect and open home, then walk LESSON until the deadline, checking after each action."""
    client = StreamlitClient(url)
    started = time.perf_counter()
    try:
        try:
            await client.connect()
            await client.run(page="", timeout_s=OPEN_TIMEOUT_MS / 1000)
            result.open_s = time.perf_counter() - started
            result.errors += [f"open: {p}" for p in client.problems]
        except Exception as exc:  # noqa: BLE001 - reported, the other sessions go on
            result.errors.append(f"open: {type(exc).__name__}: {str(exc)[:300]}")
            return
        finally:
            opened.set()
        await all_open.wait()
        await walk_lesson(client, result, deadline, lessons, think, class_images)
    finally:
        await client.close()


async def walk_lesson(client: StreamlitClient, result: SessionResult, deadline: list[float],
                      lessons: int | None, think: float = 0.0, class_images: bool = False) -> None:
    """LESSON again and again until the deadline, or until ``lessons`` whole lessons are walked; with ``think`` > 0,
    a pause before each action, uniform in [0.5, 1.5] x think seconds (a student reading the page), seeded by the
    client so that runs repeat. ``class_images``: the first client's images instead of this client's own."""
    images = client_images(0 if class_images else result.sid)
    reading = random.Random(result.sid)
    expected = client.state()
    for step, (what, argument) in enumerate(itertools.cycle(LESSON)):
        if time.monotonic() >= deadline[0] or (lessons and result.lessons >= lessons):
            return
        kind = what
        if think > 0:
            await asyncio.sleep(think * reading.uniform(0.5, 1.5))
        try:
            kind, request, wanted = lesson_action(client, what, argument, images, expected)
            result.add(kind, await client.run(**request))
        except KeyError as exc:
            result.errors.append(f"{kind}: no widget {exc} seen on this page")
            continue
        except (TimeoutError, ConnectionError, OSError) as exc:
            result.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
            if client.closed:
                return
            continue
        shown = client.state()
        problems = list(client.problems)
        if wanted is not None and shown != wanted:
            problems.append(f"URL state {shown}, expected {wanted}")
        result.errors += [f"{kind}: {p}" for p in problems]
        expected = shown
        if (step + 1) % len(LESSON) == 0:
            result.lessons += 1


# ------------------------------------------------------------------------------------------------
# One session count


async def wait_server(url: str, server, log: Path) -> None:
    started = time.monotonic()
    while not healthy(url):
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text(errors='replace')}")
        if time.monotonic() - started > SERVER_START_S:
            raise RuntimeError(f"streamlit not healthy after {SERVER_START_S} s")
        await asyncio.sleep(0.25)


def start_images(n: int) -> list[int]:
    """Distinct images for the browser clients, spread over the test set (not multiples of 7 plus 1, which their
    typed indices use)."""
    return [(997 * i + 500) % N_TEST_IMAGES for i in range(n)]


async def run_count(n: int, args, browser, checkpoints: Path, log: Path) -> dict:
    """A fresh server, N clients (ws, or browser contexts in ``browser``) opened at once, ``--seconds`` of actions."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_streamlit(port, checkpoints, args.threads, log)
    sampler = MemorySampler(server.pid, with_self=browser is None)
    sampler.start()
    contexts: list = []
    try:
        await wait_server(url, server, log)
        idle_rss = tree_rss_mb(server.pid)
        results = [SessionResult(i) for i in range(n)]
        opened = [asyncio.Event() for _ in range(n)]
        all_open = asyncio.Event()
        deadline = [float("inf")]
        if browser is None:
            tasks = [asyncio.create_task(run_ws_session(i, url, opened[i], all_open, deadline, results[i],
                                                        args.lessons, args.think, args.class_images))
                     for i in range(n)]
        else:
            starts = start_images(n)
            tasks = [asyncio.create_task(run_session(i, browser, url, args.seed, starts[i], opened[i], all_open,
                                                     deadline, results[i], contexts)) for i in range(n)]
        t_open = time.monotonic()
        await asyncio.gather(*(e.wait() for e in opened))
        open_wall = time.monotonic() - t_open
        t_start = time.monotonic()
        cpu_start = sampler.cpu()
        deadline[0] = t_start + (args.seconds or float("inf"))
        all_open.set()
        await asyncio.gather(*tasks)
        t_end = time.monotonic()
        cpu_end = sampler.cpu()
        for context in contexts:
            await context.close()
    finally:
        sampler.stop()
        stop_streamlit(server, timeout=30)
    return summary(n, args, results, log, sampler, {
        "open_wall": open_wall, "t_start": t_start, "t_end": t_end, "idle_rss": idle_rss,
        "cpu": (cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1])})


def slowest_kinds(by_kind: dict[str, list[float]], share: float = 0.05) -> str:
    """Which actions make up the slowest ``share`` of all (what sets the p95): "open resampling 14, image 9"."""
    ranked = sorted(((s, kind) for kind, values in by_kind.items() for s in values), reverse=True)
    slowest = ranked[:max(1, round(share * len(ranked)))]
    return ", ".join(f"{kind} {n}" for kind, n in collections.Counter(kind for _, kind in slowest).most_common())


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(n: int, args, results: list[SessionResult], log: Path, sampler: MemorySampler, phase: dict) -> dict:
    text = log.read_text(errors="replace")
    latencies = [x for r in results for x in r.latencies]
    errors = [f"session {r.sid}: {e}" for r in results for e in r.errors]
    if "Traceback" in text:
        errors.append(f"server log: {text.count('Traceback')} traceback(s); the first: {first_traceback(text)}")
    by_kind: dict[str, list[float]] = {}
    for r in results:
        for kind, values in r.by_kind.items():
            by_kind.setdefault(kind, []).extend(values)
    t_start, t_end = phase["t_start"], phase["t_end"]
    return {
        "sessions": n, "client": args.client, "seconds": t_end - t_start, "open_wall": phase["open_wall"],
        "actions": len(latencies), "per_session": [len(r.latencies) for r in results], "by_kind": by_kind,
        "lessons": [r.lessons for r in results], "errors": errors,
        "dialogs": sorted({d for r in results for d in r.dialogs}),
        "dialog_sessions": sum(1 for r in results if r.dialogs),
        "late_charts": sum(r.late_charts for r in results),
        "lat_median": percentile(latencies, 50), "lat_p95": percentile(latencies, 95),
        "lat_max": max(latencies, default=float("nan")),
        "rss_idle": phase["idle_rss"], "rss_open": sampler.at(t_start), "rss_peak": sampler.peak(),
        "rss_end": sampler.at(t_end), "rss_first_half_peak": sampler.peak(t_start, (t_start + t_end) / 2),
        "rss_second_half_peak": sampler.peak((t_start + t_end) / 2, t_end), "client_peak": sampler.client_peak,
        "cpu_server": phase["cpu"][0], "cpu_client": phase["cpu"][1], "load": os.getloadavg(),
    }


async def run_all(args) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory(prefix="load-sessions-") as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        checkpoints.mkdir()
        models = checkpoint_snapshot(checkpoints)
        print(f"models: {', '.join(models)}", file=sys.stderr, flush=True)
        if args.client == "ws":
            for n in args.sessions:
                out.append(await one_count(n, args, None, checkpoints, Path(tmp)))
            return out
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for n in args.sessions:
                    out.append(await one_count(n, args, browser, checkpoints, Path(tmp)))
            finally:
                await browser.close()
    return out


async def one_count(n: int, args, browser, checkpoints: Path, tmp: Path) -> dict:
    print(f"{n} {args.client} session(s), {phase(args)} ...", file=sys.stderr, flush=True)
    row = await run_count(n, args, browser, checkpoints, tmp / f"server-{n}.log")
    print(f"  {row['actions']} actions, {len(row['errors'])} errors, p95 {row['lat_p95']:.2f} s, peak RSS "
          f"{row['rss_peak']:.0f} MB", file=sys.stderr, flush=True)
    return row


# ------------------------------------------------------------------------------------------------
# Reporting


def phase(args) -> str:
    """How long the action phase lasts, in words."""
    parts = ([f"--lessons {args.lessons}"] if args.lessons else []) + (
        [f"--seconds {args.seconds:g}"] if args.seconds else []) + (
        [f"--think {args.think:g} (reading time between actions)"] if args.think else []) + (
        ["--class-images (every client the same images)"] if args.class_images else [])
    return ", ".join(parts)


def table(rows: list[dict], args) -> str:
    client = {"ws": "websocket clients (no browser), the scripted lesson",
              "browser": "browser contexts in one Chromium, the posteriors page"}[args.client]
    lines = [
        f"# bench/load_sessions.py {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} "
        f"({os.cpu_count()} CPUs); {client}; {phase(args)}, server torch threads {args.threads}, "
        f"seed {args.seed}",
        "",
        f"{'sessions':>8} {'s':>5} {'actions':>7} {'errors':>6} {'open s':>7} {'p50 s':>6} {'p95 s':>6} "
        f"{'max s':>6} {'RSS idle':>8} {'RSS open':>8} {'RSS peak':>8} {'RSS end':>8} {'1st/2nd half peak':>17} "
        f"{'client':>7} {'CPU s srv/cli':>13} {'load avg':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r['sessions']:>8} {r['seconds']:>5.0f} {r['actions']:>7} {len(r['errors']):>6} {r['open_wall']:>7.1f} "
            f"{r['lat_median']:>6.2f} {r['lat_p95']:>6.2f} {r['lat_max']:>6.2f} {r['rss_idle']:>8.0f} "
            f"{r['rss_open']:>8.0f} {r['rss_peak']:>8.0f} {r['rss_end']:>8.0f} "
            f"{r['rss_first_half_peak']:>8.0f}/{r['rss_second_half_peak']:<8.0f} {r['client_peak']:>7.0f} "
            f"{r['cpu_server']:>6.0f}/{r['cpu_client']:<6.0f} "
            f"{' '.join(f'{x:.1f}' for x in r['load']):>14}")
    lines += [
        "",
        "s: seconds of actions after all sessions were open; actions: completed (each waited for and checked);",
        "errors: failed checks, exceptions, error alerts, timeouts, lost connections, page errors, server",
        "tracebacks; open s: wall time until all N sessions had run their first page; p50/p95/max s: action latency",
        f"(the input until the app's last run for it ended; target p95 <= {TARGET_P95_S:g} s); RSS (MB): server",
        "process tree, idle before any session / once all were open / peak / at the end, and the peak in the first",
        "and second half of the action phase; client: peak PSS (MB) of the client side; CPU s: CPU seconds used",
        "during the action phase by the server and by the client side.",
        "",
    ]
    for r in rows:
        lines.append(f"{r['sessions']} session(s): actions per session {r['per_session']}"
                     + (f"; whole lessons walked per session {r['lessons']}" if r["client"] == "ws" else "")
                     + (f"; charts drawn after the run had ended (waited for, up to {CHART_WAIT_MS / 1000:.0f} s): "
                        f"{r['late_charts']} of {r['actions'] + r['sessions']} checks" if r["client"] == "browser"
                        else ""))
        lines.append("  per action (n, p50 / p95 / max s): " + ", ".join(
            f"{kind} {len(v)}, {percentile(v, 50):.2f} / {percentile(v, 95):.2f} / {max(v):.2f}"
            for kind, v in sorted(r["by_kind"].items())))
        lines.append("  the slowest 5% of actions, by kind: " + slowest_kinds(r["by_kind"]))
        if r["dialogs"]:
            lines.append(f"  dialogs on opening (closed) in {r['dialog_sessions']} session(s): {r['dialogs']}")
        for e in r["errors"][:MAX_DETAILS]:
            lines.append(f"  ERROR {e}")
        if len(r["errors"]) > MAX_DETAILS:
            lines.append(f"  ... and {len(r['errors']) - MAX_DETAILS} more")
    return "\n".join(lines) + "\n"


def json_rows(rows: list[dict], args) -> list[dict]:
    out = []
    for r in rows:
        protocol = (f"{r['sessions']} {args.client} session(s), {r['seconds']:.0f} s of actions, {r['actions']} "
                    f"actions; {f'reading time {args.think:g} s; ' if args.think else 'no reading time; '}"
                    f"{'every client the same images; ' if args.class_images else ''}"
                    f"server threads {args.threads}; load {r['load'][0]:.1f}")
        name = (f"{r['sessions']} sessions" + (f", {args.think:g} s reading" if args.think else "")
                + (", the same images" if args.class_images else ""))
        out += [
            bench_row(BENCHMARK, f"{name}: action latency p50", r["lat_median"], "s", protocol=protocol),
            bench_row(BENCHMARK, f"{name}: action latency p95", r["lat_p95"], "s", TARGET_P95_S, "max", protocol),
            bench_row(BENCHMARK, f"{name}: action latency max", r["lat_max"], "s", protocol=protocol),
            bench_row(BENCHMARK, f"{name}: errors", len(r["errors"]), "", 0, "max", protocol),
            bench_row(BENCHMARK, f"{name}: server peak RSS", r["rss_peak"], "MB", protocol=protocol),
            bench_row(BENCHMARK, f"{name}: server peak RSS, 2nd half of the actions", r["rss_second_half_peak"], "MB",
                      protocol=f"1st half {r['rss_first_half_peak']:.0f} MB; " + protocol),
        ]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[30], help="session counts, one server each")
    parser.add_argument("--seconds", type=float, default=None,
                        help="action phase per session count (default 120 s, none with --lessons)")
    parser.add_argument("--lessons", type=int, default=None,
                        help="ws clients: stop once every client has walked the whole lesson this many times")
    parser.add_argument("--client", choices=("ws", "browser"), default="ws",
                        help="websocket clients walking the lesson (default) or browser contexts on /posteriors")
    parser.add_argument("--think", type=float, default=0.0,
                        help="ws clients: mean seconds a student reads before each action (uniform 0.5-1.5 x; "
                             "default 0: every client acts as soon as its last action ended, the worst case)")
    parser.add_argument("--class-images", action="store_true",
                        help="ws clients: every client chooses the same images (a class told which image to choose)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server (as the browser tests)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the browser sessions' choice of actions")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--json", type=Path, default=None, help="also write the headline figures as JSON rows here")
    args = parser.parse_args(argv)
    if (args.lessons or args.think or args.class_images) and args.client != "ws":
        parser.error("--lessons, --think and --class-images are for ws clients (the browser clients walk no lesson)")
    if args.seconds is None and not args.lessons:
        args.seconds = 120.0
    if args.client == "browser" and not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    rows = asyncio.run(run_all(args))
    text = table(rows, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"load-{datetime.datetime.now():%Y-%m-%d-%H%M}.txt"
    path.write_text(text)
    print(f"wrote {path}")
    if args.json:
        write_rows(args.json, json_rows(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
