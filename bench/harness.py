"""The harness the browser tests (tests/test_browser.py) and the app benchmarks (bench/app_latency.py,
bench/load_sessions.py) share: starting and stopping ``streamlit run app.py`` over a snapshot of the checkpoints, the
Chromium launch, and waiting on the app's own state (script runs observed in the page, elements present, charts
drawn), never on a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from explorer.chart import CHART_CLASS

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"  # where the browser tests put their full-page screenshots
SERVER_START_S = 180  # launch to /_stcore/health ok: torch imports slowly on a loaded box
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
RUN_TIMEOUT_MS = 180_000  # one script run (first quadrature of an image, the subset bound curves)
RERUN_START_MS = 60_000  # how long an action may take to start a rerun: on a loaded box the browser's main thread
# can be busy for many seconds (WebGL scatters redrawn) before it handles the input and asks for the run
SETTLE_MS = 400  # idle for this long after a run counts as idle (a callback may start another run)
VIEWPORT = {"width": 1600, "height": 1000}
K_LABEL = "K (importance samples)"
IMAGE_LABEL = "Image index (0-9999)"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
STATE_SUFFIXES = (".resume.safetensors", ".eval-state.npz")  # resumable job states, not read by the app

# Counts the app's script runs: Streamlit sets data-test-script-state on stApp to "running" / "notRunning". The
# observer reads every recorded change (a short run's "running" is seen even when the browser delivers it in one batch
# with the "notRunning" after it), and the time of the last message on the app's websocket: on a loaded box React may
# draw a whole run in one commit, so that the state attribute never shows "running", but the run's messages arrive.
RUN_OBSERVER = """
(() => {
  window.__st = {runs: 0, state: null, startAt: 0, idleAt: 0, msgAt: 0};
  const seen = (s) => {
    if (s === window.__st.state) return;
    if (s === 'running') { window.__st.runs += 1; window.__st.startAt = performance.now(); }
    if (s === 'notRunning') window.__st.idleAt = performance.now();
    window.__st.state = s;
  };
  const ATTR = 'data-test-script-state';
  new MutationObserver(records => {
    const app = document.querySelector('[data-testid="stApp"]');
    const changes = records.filter(r => r.type === 'attributes' && r.attributeName === ATTR && r.target === app);
    // each record holds the value before it: the values taken are the next records' old values, then the current one
    for (let i = 1; i < changes.length; i++) seen(changes[i].oldValue);
    seen(app ? app.getAttribute(ATTR) : null);
  }).observe(document, {subtree: true, childList: true, attributes: true, attributeOldValue: true,
                        attributeFilter: [ATTR]});
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => { window.__st.msgAt = performance.now(); });
    }
  };
})();
"""

# For each plotly chart on the page: its traces and points, and per cartesian subplot its plot area in
# CSS pixels relative to the chart (for the pixel check).
CHART_INFO = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
  const data = gd._fullData || [];
  const size = (a) => (a && a.length) || 0;
  const plots = Object.values((gd._fullLayout && gd._fullLayout._plots) || {}).map(p => ({
    x: p.xaxis._offset, y: p.yaxis._offset, w: p.xaxis._length, h: p.yaxis._length}));
  const r = gd.getBoundingClientRect();
  return {traces: data.length, points: data.reduce((s, t) => s + Math.max(size(t.x), size(t.z)), 0),
          plots, width: r.width, height: r.height,
          annotations: ((gd._fullLayout && gd._fullLayout.annotations) || []).map(a => a.text)};
})
"""

# The most isolated point of the per-digit traces in one latent scatter, in page (viewport) pixels, so that a
# click there selects exactly that point; skips the excluded test indices (the chosen image) and the plot's edges.
ISOLATED_POINT = """
([chart, meta, excluded]) => {
  const gd = document.querySelectorAll('.js-plotly-plot')[chart];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
  const all = [];
  gd._fullData.forEach((t, cn) => {
    for (let i = 0; i < t.x.length; i++) {
      all.push({px: xa._offset + xa.l2p(t.x[i]), py: ya._offset + ya.l2p(t.y[i]), cn, i,
                index: t.meta === meta && t.customdata ? Number(t.customdata[i]) : null});
    }
  });
  const margin = 25;
  const inside = (p) => p.px > xa._offset + margin && p.px < xa._offset + xa._length - margin &&
                        p.py > ya._offset + margin && p.py < ya._offset + ya._length - margin;
  const candidates = all.filter(p => p.index !== null && !excluded.includes(p.index) && inside(p));
  const step = Math.max(1, Math.floor(candidates.length / 600));
  let best = null;
  for (let c = 0; c < candidates.length; c += step) {
    const p = candidates[c];
    let d2 = Infinity;
    for (const q of all) {
      if (q === p) continue;
      const d = (q.px - p.px) ** 2 + (q.py - p.py) ** 2;
      if (d < d2) d2 = d;
    }
    if (best === null || d2 > best.d2) best = {...p, d2};
  }
  return best && {x: r.left + best.px, y: r.top + best.py, index: best.index, curve: best.cn, point: best.i,
                  separation_px: Math.sqrt(best.d2)};
}
"""


# True once the app is connected, has sent something (a page just opened is connected and "notRunning" before its
# first run's messages arrive, which on a loaded box can take longer than ``settle``), no script runs, and neither a
# run nor a message has ended for ``settle`` ms.
IDLE = """settle => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && (window.__st.runs > 0 || window.__st.msgAt > 0)
    && window.__st.state === 'notRunning'
    && performance.now() - Math.max(window.__st.idleAt, window.__st.msgAt) > settle;
}"""

# True once the app answered an action taken at ``mark`` (argument): a run was seen, a message arrived, or the page
# is a new document.
ANSWERED = """mark => performance.timeOrigin !== mark.origin || window.__st.runs > mark.runs
  || window.__st.msgAt > mark.at"""

# Resolves once the plotly charts' sizes have not changed for ``frames`` animation frames (argument): the layout has
# settled after a resize, on the page's own clock rather than a fixed delay.
CHARTS_SETTLED = """async frames => {
  const sizes = () => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(g => { const r = g.getBoundingClientRect(); return `${r.width}x${r.height}`; }).join();
  let last = sizes(), same = 0;
  while (same < frames) {
    await new Promise(r => requestAnimationFrame(r));
    const now = sizes();
    same = now === last ? same + 1 : 0;
    last = now;
  }
}"""

# What says when a page settled (bench/page_latency.py), in window.__settle: the number of script runs the server has
# reported finished (its ForwardMsg.script_finished, read from each websocket message's top-level protobuf fields; a run
# ended early for a rerun that follows does not count) and when the last one arrived, so that a wait starts only once
# the server has finished the action's run (the page's run-state attribute can lag or never show a short run); and the
# time of the page's last visible change: every DOM change inside the app's main area or sidebar (a chart drawn, a
# picture inserted, an element removed) and every picture loaded there. Tooltips and menus (drawn outside both) do not
# count. Times are on the page's clock. Add it as an init script after RUN_OBSERVER.
CHANGE_OBSERVER = """
(() => {
  window.__settle = {finished: 0, finishedAt: 0, changeAt: 0};
  const FIELD = %(field)d, EARLY = %(early)d;  // ForwardMsg.script_finished, FINISHED_EARLY_FOR_RERUN
  const finishedStatus = (buffer) => {
    const b = new Uint8Array(buffer);
    let i = 0;
    const varint = () => { let v = 0, f = 1, x; do { x = b[i++]; v += (x & 0x7f) * f; f *= 128; }
                           while ((x & 0x80) && i < b.length); return v; };
    while (i < b.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) { const v = varint(); if (field === FIELD) return v; }
      else if (wire === 2) { const n = varint(); i += n; }  // (i += varint() would add to i's old value)
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else return null;
    }
    return null;
  };
  const seen = (buffer) => {
    const status = finishedStatus(buffer);
    if (status !== null && status !== EARLY) {
      window.__settle.finished += 1;
      window.__settle.finishedAt = performance.now();
    }
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => {
        if (e.data instanceof ArrayBuffer) seen(e.data);
        else if (e.data && e.data.arrayBuffer) e.data.arrayBuffer().then(seen);
      });
    }
  };
  const AREA = '[data-testid="stMain"], [data-testid="stSidebar"]';
  const inArea = (node) => {
    const el = node && (node.nodeType === 1 ? node : node.parentElement);
    return !!(el && el.closest && el.closest(AREA));
  };
  new MutationObserver(records => {
    if (records.some(r => inArea(r.target))) window.__settle.changeAt = performance.now();
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('load', e => {
    if (e.target && e.target.tagName === 'IMG' && inArea(e.target)) window.__settle.changeAt = performance.now();
  }, true);
})();
""" % {"field": ForwardMsg.DESCRIPTOR.fields_by_name["script_finished"].number,
       "early": ForwardMsg.FINISHED_EARLY_FOR_RERUN}

# Progress bars that are part of a page's layout, not a sign of work going on: the lesson's step counter.
STATIC_PROGRESS = r"^Step \d+ of \d+"

# True when nothing on the page is still being drawn or computed: no spinner, no progress bar other than
# STATIC_PROGRESS, no skeleton (the placeholder of an element whose frontend code is still loading: in a new tab, a
# Streamlit plotly element is a skeleton until its 4.7 MB plotly chunk has been evaluated, 1-2.5 s after the run ended
# on this machine, and the page is quiet meanwhile), every plotly chart drawn (its layout computed and its SVG made:
# Streamlit's elements and the app's chart component, whose div stays empty until plotly.js has loaded), every
# picture in the main area loaded. A page that is not drawn at all (no main area) is not settled.
PAGE_DRAWN = """staticProgress => {
  if (!document.querySelector('[data-testid="stMain"]')) return false;
  if (document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]')) return false;
  const still = new RegExp(staticProgress);
  if (Array.from(document.querySelectorAll('[data-testid="stProgress"]'))
        .some(p => !still.test((p.innerText || '').trim()))) return false;
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'));
  if (!charts.every(c => { const gd = c.querySelector('.js-plotly-plot');
                           return gd && gd._fullLayout && gd.querySelector('.main-svg'); })) return false;
  // the app's own chart component (explorer/chart.py): its div is the plotly chart
  if (!Array.from(document.querySelectorAll('.%s'))
        .every(gd => gd._fullLayout && gd.querySelector('.main-svg'))) return false;
  return Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
    .every(i => i.complete && i.naturalWidth > 0);
}""" % CHART_CLASS

# A drawn chart with data (app.py's empty warm-up chart does not count).
FIRST_CHART = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
               ".some(gd => gd._fullData && gd._fullData.some(t => (t.x && t.x.length) || (t.z && t.z.length))"
               " && gd.querySelector('.main-svg'))")

# Where the page stands for an action: run counts and clock (see ANSWERED, FINISHED, wait_settled).
MARK = """() => ({runs: window.__st.runs, at: performance.now(), origin: performance.timeOrigin,
                 finished: window.__settle ? window.__settle.finished : 0})"""
# A mark for a page about to be opened in a fresh tab: any new document answers it, and its clock starts at 0.
NEW_DOCUMENT = {"runs": -1, "at": 0, "origin": -1, "finished": 0}
# True once the server has finished a run since ``mark`` (in a new document: any run).
FINISHED = """mark => window.__settle.finished > (performance.timeOrigin !== mark.origin ? 0 : mark.finished)"""




# ------------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def checkpoint_snapshot(folder: Path, root: Path = ROOT) -> list[str]:
    """Copy what the app reads from ``root``/checkpoints/ into ``folder``: the model checkpoints and every shipped file
    beside them (per-image evaluations, precomputed views, presets, the gradient-SNR file), not the training and
    evaluation states nor the subfolders; write two small untrained models when there are none. Returns the model
    names. ``root``: this repository, or an exported older tree (bench/page_latency.py --app-root)."""
    from iwae import catalog

    for path in sorted((Path(root) / "checkpoints").iterdir()):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(STATE_SUFFIXES):
            shutil.copy2(path, folder / path.name)
    if not catalog.discover(folder):
        write_untrained_models(folder)
    return [catalog.checkpoint_name(p) for p in catalog.discover(folder)]


def write_untrained_models(folder: Path) -> None:
    import torch

    from iwae import testset
    from iwae.checkpoints import save_checkpoint
    from iwae.model import VAE, ModelConfig

    images, _ = testset.load()
    for seed, (name, objective, k) in enumerate((("vae-k1", "vae", 1), ("iwae-k50", "iwae", 50))):
        torch.manual_seed(seed)
        model = VAE(ModelConfig())
        model.init_output_bias(images[:2000].mean(0))
        history = [{"epoch": 1, "lr": 1e-3, "train_bound": -200.0, "test_bound": -205.0, "test_images": 100,
                    "seconds": 1.0}]
        metadata = {"config": ModelConfig().to_dict(), "objective": objective, "k": k, "estimator": "standard",
                    "epochs": 1, "seed": seed, "data": {"dataset": "untrained browser-test model"},
                    "history": history, "metrics": {}}
        save_checkpoint(model, metadata, folder / f"{name}.safetensors")


def start_streamlit(port: int, checkpoints: Path, threads: int | str | None, log: Path,
                    root: Path = ROOT, run_log: Path | None = None) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:port over a checkpoint folder, output to ``log``; the app (and the
    packages it imports) of ``root``: this repository, or an exported older tree. ``run_log``: where the app appends
    each script run's duration (explorer.frame, ``$IWAE_RUN_LOG``)."""
    env = os.environ | {"IWAE_CHECKPOINT_DIR": str(checkpoints)}
    if run_log is not None:
        env |= {"IWAE_RUN_LOG": str(run_log)}
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "IWAE_APP_THREADS": str(threads)}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = SERVER_START_S) -> float:
    """Poll ``url``'s /_stcore/health until it answers ok; returns the seconds waited. RuntimeError (with the server's
    output) when the process exits first or after ``timeout_s``."""
    started = time.monotonic()
    while not healthy(url):
        if process.poll() is not None:
            text = Path(log).read_text(errors="replace") if Path(log).is_file() else ""
            raise RuntimeError(f"streamlit exited with {process.returncode} before it was healthy:\n{text}")
        if time.monotonic() - started > timeout_s:
            text = Path(log).read_text(errors="replace") if Path(log).is_file() else ""
            raise RuntimeError(f"streamlit not healthy after {timeout_s:.0f} s:\n{text[-5000:]}")
        time.sleep(0.05)
    return time.monotonic() - started


def stop_streamlit(process: subprocess.Popen, timeout: float = 20) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line (whitespace runs as one space), at most ``limit`` characters."""
    return " ".join(text.split())[:limit]


def first_traceback(log: str) -> str:
    """The first traceback in a server log, short: its last frame outside site-packages and the exception line."""
    lines = log[log.index("Traceback"):].splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line and not line.startswith(" ")), len(lines) - 1)
    frames = [line.strip() for line in lines[1:end] if line.strip().startswith("File ")]
    own = [f for f in frames if "site-packages" not in f] or frames
    return " | ".join(own[-1:] + [one_line(lines[end], 300)])



# ------------------------------------------------------------------------------------------------
# Waiting on the app (Playwright's sync API)


def runs(page) -> int:
    return page.evaluate("() => window.__st.runs")


def wait_idle(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Connected, no script running, and none for SETTLE_MS."""
    page.wait_for_function(IDLE, arg=SETTLE_MS, timeout=timeout_ms, polling=100)


def act(page, action, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Do ``action`` (a callable), wait until the app answers it (a rerun), then until the app is idle."""
    mark = page.evaluate("() => ({runs: window.__st.runs, at: performance.now(), origin: performance.timeOrigin})")
    action()
    page.wait_for_function(ANSWERED, arg=mark, timeout=RERUN_START_MS, polling=50)
    wait_idle(page, timeout_ms)


def close_dialogs(page) -> list[str]:
    """Close every open Streamlit dialog; returns their texts."""
    dialogs = page.locator("[data-testid='stDialog']")
    texts = [" ".join(t.split()) for t in dialogs.all_inner_texts()]
    for closed in range(1, len(texts) + 1):
        dialogs.first.get_by_role("button", name="Close").click()
        page.wait_for_function("n => document.querySelectorAll('[data-testid=\"stDialog\"]').length <= n",
                               arg=len(texts) - closed, timeout=10_000)
    return texts


def wait_for_count(page, selector: str, minimum: int, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Until at least ``minimum`` elements match ``selector`` (the frontend may draw an element after the run that
    sent it has ended: a data grid, a chart)."""
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=[selector, minimum],
                           timeout=timeout_ms, polling=100)


def wait_charts_settled(page, frames: int = 5) -> None:
    """Until the charts' sizes have held for ``frames`` animation frames."""
    page.evaluate(CHARTS_SETTLED, frames)


def mark(page) -> dict:
    """Where the page stands before an action: pass it to ``wait_settled``."""
    return page.evaluate(MARK)


def wait_settled(page, since: dict, timeout_ms: int = RUN_TIMEOUT_MS) -> float:
    """After an action taken at ``since`` (``mark`` just before it, or NEW_DOCUMENT for a page being opened): wait
    until the app answered it, the server has finished a run since (FINISHED), the page is idle (no script run for
    SETTLE_MS) and has drawn everything (PAGE_DRAWN; the charts' sizes held for a few frames); then, if a run started
    meanwhile, wait again. Returns the seconds from ``since`` to
    the page's last change before that (the last run's end, the last message, the last DOM change or picture load in
    the app: CHANGE_OBSERVER, which the page's context must have as an init script besides RUN_OBSERVER), not to the
    end of the quiet time waited for."""
    page.wait_for_function(ANSWERED, arg=since, timeout=RERUN_START_MS, polling=50)
    page.wait_for_function(FINISHED, arg=since, timeout=timeout_ms, polling=50)
    while True:
        wait_idle(page, timeout_ms)
        page.wait_for_function(PAGE_DRAWN, arg=STATIC_PROGRESS, timeout=timeout_ms, polling=50)
        wait_charts_settled(page)
        if page.evaluate(IDLE, SETTLE_MS):
            break
    last = page.evaluate("() => Math.max(window.__st.idleAt, window.__st.msgAt, window.__settle.changeAt)")
    return (last - since["at"]) / 1000


def problems(page) -> list[str]:
    """What the page shows that is wrong: Streamlit exception elements, error alerts and dialogs (e.g. "Page not
    found"), with the start of their text."""
    out = []
    for selector, what in (("[data-testid='stException']", "exception"), ("[data-testid='stAlertContentError']",
                                                                          "error alert"),
                           ("[data-testid='stDialog']", "dialog")):
        out += [f"{what}: {' '.join(t.split())[:300]}" for t in page.locator(selector).all_inner_texts()]
    return out


def external_requests(urls: list[str]) -> list[str]:
    """The URLs among ``urls`` that leave this machine (any host but 127.0.0.1 / localhost; data: and blob: URLs
    stay in the page)."""
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob", "about")
            and urlparse(u).hostname not in LOCAL_HOSTS]


def scatter_target(page, chart: int, excluded: list[int]) -> dict | None:
    """An isolated point of latent scatter number ``chart`` (scrolled into view): its viewport position, test
    index, trace and point number, and the distance in pixels to its nearest neighbour."""
    from iwae.figures import DIGIT_META

    page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
    return page.evaluate(ISOLATED_POINT, [chart, DIGIT_META, list(excluded)])


HOVERED = """
([chart, curve, point]) => {
  const gd = document.querySelectorAll('.js-plotly-plot')[chart];
  const h = gd && gd._hoverdata;
  return !!(h && h.length && h[0].curveNumber === curve && h[0].pointNumber === point);
}
"""


def hover(page, target: dict, chart: int = 0, timeout_s: float = 30) -> None:
    """Move the mouse onto the point as a user does, until plotly's hover state holds that point: its click
    handler reads it, and a fresh WebGL scatter builds its point index on the first hover (slow on a loaded box:
    a click before that selects nothing)."""
    deadline = time.monotonic() + timeout_s
    for attempt in range(1000):
        page.mouse.move(target["x"] - 8 + attempt % 2, target["y"] - 8)
        page.mouse.move(target["x"], target["y"], steps=4)
        try:
            page.wait_for_function(HOVERED, arg=[chart, target["curve"], target["point"]], timeout=1000, polling=50)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"plotly never reported hovering {target}") from None
