"""Whole-app latency in a real browser: cold start, every page's first view, and every control on the pages it lives on
(issue 15: a control settles within 1 s, a page's first view within 2 s, cold start to the first chart within 4 s).

    python bench/page_latency.py [--repeats 3] [--threads 1] [--app-root PATH] [--pages latent toy ...]
                                 [--controls "model pair" image ...] [--port PORT] [--json PATH]

One fresh ``streamlit run app.py`` (bench/harness.py: a snapshot of the checkpoints in a temporary folder, one torch
thread unless ``--threads``), driven by Playwright and Debian's chromium (launched first, not counted):

1. Cold start: from launching the server to the first chart with data on /latent, and to that page settled.
2. First views: each page's URL opened in a new tab (a new session), home first, then every other page once: the time
   until the page settles. /latent was opened by the cold start just before, so its server-side caches are warm.
3. Controls: for each page, a new tab at the page's URL with ``?k=5000`` (the costliest K on the pages that use it;
   not timed), then ``--repeats`` rounds of the page's controls (PLAN below, which says in what order and why), each
   with a new value where there is one: model pair (a column switched to the next shipped model), image (typed indices
   from a fixed list, distinct per page), K = 1, K middle (a click on the slider track), K = 5000, seed, digit filter,
   preset, manifold tiles, overlay, new draws, toy target, toy K, subset size 10/20/50/100, upload of a digit PNG drawn
   here, lesson Next (and Back after the rounds).

"Settles" (bench/harness.py ``wait_settled``): the server has reported the input's script run finished (its
script_finished message, read in the page), no script run for a while, every plotly chart drawn, every picture loaded,
no spinner or progress bar left; the time is taken to the page's last change (last run end, last websocket message,
last DOM change or picture load in the app), not to the end of the quiet time waited for. Nothing waits on a fixed
sleep. A control whose widget is not on the page is a row saying so; one that shows a Streamlit exception, an error
alert or a dialog, raises a page error, lands on the wrong value or never settles counts as an error (the errors row,
target 0, and the error lines printed under the table).

``--app-root PATH`` measures another tree of the app, e.g. an older commit for the "before" figures::

    mkdir /tmp/old && git archive <commit> | tar -x -C /tmp/old && python bench/page_latency.py --app-root /tmp/old

(the server then runs PATH/app.py in PATH with a snapshot of PATH/checkpoints). Prints one table (control, page, n,
median and maximum seconds, the server's share, target, met?, the issue's previous figures where one applies) and the
load average. The server's share is the median sum of the script runs' durations the app logged for an input
(``$IWAE_RUN_LOG``, explorer.frame; not for an older tree without it): the rest of the wait is the browser drawing. Run
it under ``nice`` on a shared machine, the numbers depend on the load. ``--json PATH`` writes one row per table line
(the median; maximum, n and previous figure in its protocol) and an errors row for bench/run_all.py (``bench_row``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CHANGE_OBSERVER,
    CHROMIUM,
    CHROMIUM_ARGS,
    FIRST_CHART,
    IMAGE_LABEL,
    K_LABEL,
    NEW_DOCUMENT,
    RUN_OBSERVER,
    RUN_TIMEOUT_MS,
    VIEWPORT,
    checkpoint_snapshot,
    close_dialogs,
    first_traceback,
    free_port,
    mark,
    one_line,
    problems,
    start_streamlit,
    stop_streamlit,
    wait_healthy,
    wait_settled,
)
from bench.run_all import bench_row, write_rows  # noqa: E402

BENCHMARK = "page latency"
RUN_LOG_NAME = "runs.log"  # the server's script-run durations ($IWAE_RUN_LOG)
TARGET_CONTROL_S, TARGET_FIRST_VIEW_S, TARGET_COLD_S = 1.0, 2.0, 4.0
LOCATOR_TIMEOUT_MS = 30_000  # finding and clicking a widget (not the app's answer: that is RUN_TIMEOUT_MS)

# page -> words its sidebar link's URL path or title contains; its URL path is /<page> in this tree (home: /), and is
# looked up in the sidebar navigation when that path is not there (an older tree's names)
PAGES = {"home": None, "latent": ("latent",), "posteriors": ("posterior",), "resampling": ("resampl", "sir"),
         "bounds": ("bound",), "toy": ("toy",), "digit": ("digit",), "lesson": ("lesson",)}
NOT_FOUND = """() => Array.from(document.querySelectorAll('[data-testid="stDialog"]'))
  .some(d => d.innerText.toLowerCase().includes('not found'))"""
NAV_LINKS = """() => Array.from(document.querySelectorAll('[data-testid="stSidebarNav"] a'))
  .map(a => [new URL(a.href).pathname, a.innerText.trim()])"""
SIDEBAR = ["model pair", "image", "K = 1", "K middle", "K = 5000", "seed", "digit filter", "preset"]
# The controls measured on each page, in the order of a round: the page's own first, then the sidebar's that change
# what the page shows (K and the seed change nothing on the latent page, K nothing on the bounds page; the toy page
# uses only the seed). The posteriors page takes the pair and the image at K = 5000 (the tab opens there, and each
# round ends there), as the previous figure did; the resampling page takes them at a middle K, so that its
# K = 5000 is a first one for that pair and image (a draw at K = 5000 once made is cached).
PLAN = {
    "home": ["model pair", "image"],
    "latent": ["manifold tiles", "overlay", "model pair", "image", "digit filter", "preset"],
    "posteriors": SIDEBAR,
    "resampling": ["new draws", "K = 1", "K middle", "model pair", "image", "K = 5000", "seed", "digit filter",
                   "preset"],
    "bounds": ["subset size", "model pair", "image", "seed", "digit filter", "preset"],
    "toy": ["toy target", "toy K", "seed"],
    "digit": ["upload"],
    "lesson": ["lesson next", "model pair", "image", "K = 1", "K middle", "K = 5000"],
}
AFTER_ROUNDS = {"lesson": ["lesson back"]}  # revisits, measured after the rounds
# Test images typed into the sidebar, a slice per page (each page computes its own images first-hand).
IMAGES = (1234, 4321, 77, 9000, 2468, 5555, 31, 8080, 6174, 1001, 7007, 3141, 2718, 4242, 9999, 606, 1618, 2500,
          7777, 8421, 350, 6543, 1357, 9753)
DIGITS = ("3", "7", "1", "8", "5", "0", "2", "9", "4", "6")
SUBSETS = (10, 100, 20, 50)
K_MIDDLE = (0.55, 0.75, 0.3)  # where on the K track the middle value is clicked, by round (K = 100, 500, 10 of 12)
TILE_KEYS = ("End", "Home", "ArrowRight")

# The table (idle machine, run 1 / run 2, seconds until the page settles).
PREVIOUS = {
    ("first view", "bounds"): "33 / 27",
    ("model pair", "bounds"): "20 / 27",
    ("image", "bounds"): "5 / 10",
    ("first view", "toy"): "9.5 / 16",
    ("K = 5000", "resampling"): "4.8 / 8.7",
    ("model pair", "posteriors"): "3.8 / 11 (pair and image at K = 5000)",
    ("image", "posteriors"): "3.8 / 11 (pair and image at K = 5000)",
}


def page_paths(links: list[list[str]]) -> dict[str, str | None]:
    """Each page's URL path from the sidebar's navigation links ([path, title] pairs): /<page> when a link goes there,
    else the first link whose path or title has one of the page's words, else None (no such page). Without any link
    (no navigation seen), every page at /<page>."""
    paths = {}
    for name, words in PAGES.items():
        if words is None:
            paths[name] = "/"
            continue
        exact = [path for path, _ in links if path.strip("/") == name]
        fuzzy = [path for path, title in links if any(w in f"{path} {title}".lower() for w in words)]
        paths[name] = (exact or fuzzy or [None if links else f"/{name}"])[0]
    return paths


class Missing(Exception):
    """The control's widget is not on the page (an older tree, a page without it)."""


class Wrong(Exception):
    """The control did not land (another value shown than the one chosen)."""


@dataclass
class Row:
    control: str
    page: str
    target: float
    seconds: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)  # until the server's last run for it had finished
    errors: list[str] = field(default_factory=list)
    missing: str | None = None
    note: str = ""


@dataclass
class Session:
    """One browser tab (one Streamlit session) on one page, with what the controls need to pick new values."""

    page: object  # playwright.sync_api.Page
    name: str  # the page (a key of PAGES)
    models: list[str]
    page_errors: list[str]
    tmp: Path

    @property
    def run_log(self) -> Path:
        return self.tmp / RUN_LOG_NAME

    @property
    def side(self):
        return self.page.locator("[data-testid='stSidebar']")

    @property
    def main(self):
        return self.page.locator("[data-testid='stMain']")


# ------------------------------------------------------------------------------------------------
# Widgets: find one (Missing when absent), read its value


def need(locator, what: str):
    if locator.count() == 0:
        raise Missing(f"no {what}")
    return locator.first


def selectbox(scope, label: str):
    return need(scope.get_by_label(label, exact=True), f"select box '{label}'")


def shown_option(scope, label: str) -> str:
    return selectbox(scope, label).input_value()


def option_action(s: Session, box, pattern) -> Callable[[], None]:
    """Open a select box (not timed) and return the click on the option matching ``pattern`` (the timed input)."""
    box.click()
    option = s.page.get_by_role("option", name=pattern)
    try:
        option.first.wait_for(timeout=LOCATOR_TIMEOUT_MS)
    except Exception:
        s.page.keyboard.press("Escape")
        raise Missing(f"no option {pattern!r}") from None
    return option.first.click


def slider(scope, label: str):
    return need(scope.get_by_role("slider", name=label), f"slider '{label}'")


def slider_index(thumb) -> int:
    return int(thumb.input_value())


def slider_track_click(s: Session, scope, label: str, index: int) -> Callable[[], None]:
    """A click on the track of slider ``label`` at option ``index`` (of the range input's 0..max)."""
    top = int(slider(scope, label).get_attribute("max"))
    group = scope.locator("[data-testid='stSlider']").filter(has=s.page.get_by_role("slider", name=label)).first
    track = group.locator("[data-orientation='horizontal']").nth(1)
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    x, y = box["x"] + box["width"] * index / top, box["y"] + box["height"] / 2
    return lambda: s.page.mouse.click(x, y)


def key_action(s: Session, thumb, key: str) -> Callable[[], None]:
    """A key pressed on a slider's thumb (focused first, not timed)."""
    thumb.focus()
    return lambda: s.page.keyboard.press(key)


def typed_action(s: Session, box, value) -> Callable[[], None]:
    def act() -> None:
        box.fill(str(value))
        box.press("Enter")
    return act


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise Wrong(what)


def settle_unmeasured(s: Session, action: Callable[[], None]) -> None:
    """An input that only sets up a measured one (e.g. moving K off the value the next input chooses)."""
    since = mark(s.page)
    action()
    wait_settled(s.page, since)


# ------------------------------------------------------------------------------------------------
# The controls: each prepares its input for round r (untimed: opening a list, switching a tab) and returns
# (value chosen, the timed input, a check run once the page has settled)

Control = Callable[[Session, int], tuple[str, Callable[[], None], Callable[[], None]]]


def model_pair(s: Session, r: int):
    """One column switched to the next shipped model shown in neither column (right column in even rounds)."""
    label = ("Right column", "Left column")[r % 2]
    shown = [shown_option(s.side, c).split(" (")[0] for c in ("Left column", "Right column")]
    current = shown[1] if label == "Right column" else shown[0]
    start = s.models.index(current) if current in s.models else -1
    candidates = [m for m in s.models[start + 1:] + s.models[:start + 1] if m not in shown]
    if not candidates:
        raise Missing("only one model")
    name = candidates[0]
    act = option_action(s, selectbox(s.side, label), re.compile(rf"^{re.escape(name)}( \(|$)"))

    def check() -> None:
        now = shown_option(s.side, label).split(" (")[0]
        expect(now == name, f"{label} shows {now}, chose {name}")
    return f"{label.split()[0].lower()} {name}", act, check


def image(s: Session, r: int):
    box = need(s.side.get_by_label(IMAGE_LABEL, exact=True), "image index input")
    offset = list(PAGES).index(s.name) * 3
    value = next(i for j, i in enumerate(IMAGES[offset + r:] + IMAGES) if str(i) != box.input_value())

    def check() -> None:
        expect(box.input_value() == str(value), f"image index shows {box.input_value()}, typed {value}")
    return f"#{value}", typed_action(s, box, value), check


def k_control(position: str) -> Control:
    """The sidebar's K: "first" (Home: K = 1), "last" (End: K = 5000) or "middle" (a click on the track)."""
    def control(s: Session, r: int):
        thumb = slider(s.side, K_LABEL)
        top = int(thumb.get_attribute("max"))
        index = {"first": 0, "last": top, "middle": round(top * K_MIDDLE[r % len(K_MIDDLE)])}[position]
        if slider_index(thumb) == index:  # already there: move off it first, so that the input changes K
            settle_unmeasured(s, key_action(s, thumb, "ArrowLeft" if index else "ArrowRight"))
        act = slider_track_click(s, s.side, K_LABEL, index) if position == "middle" else key_action(
            s, thumb, "Home" if position == "first" else "End")

        def check() -> None:
            expect(slider_index(thumb) == index, f"K index {slider_index(thumb)}, chose {index}")
        return f"K {thumb.get_attribute('aria-valuetext')}->", act, check
    return control


def seed(s: Session, r: int):
    box = need(s.side.get_by_label("Random seed", exact=True), "seed input")
    value = r + 1 if box.input_value() != str(r + 1) else r + 11

    def check() -> None:
        expect(box.input_value() == str(value), f"seed shows {box.input_value()}, typed {value}")
    return f"seed {value}", typed_action(s, box, value), check


def digit_filter(s: Session, r: int):
    box = selectbox(s.side, "Digit filter")
    digit = next(d for d in DIGITS[r % len(DIGITS):] + DIGITS if f"only {d}s" != box.input_value())
    act = option_action(s, box, re.compile(rf"^only {digit}s$"))

    def check() -> None:
        expect(box.input_value() == f"only {digit}s", f"digit filter shows {box.input_value()}")
    return f"only {digit}s", act, check


def preset(s: Session, r: int):
    box = selectbox(s.side, "Instructive images")
    box.click()
    options = s.page.get_by_role("option")
    try:
        options.first.wait_for(timeout=LOCATOR_TIMEOUT_MS)
    except Exception:
        s.page.keyboard.press("Escape")
        raise Missing("no preset options") from None
    texts = options.all_inner_texts()
    index_box = s.side.get_by_label(IMAGE_LABEL, exact=True)
    pick = (list(PAGES).index(s.name) * 3 + r) % len(texts)
    if f"#{index_box.input_value()} " in texts[pick]:
        pick = (pick + 1) % len(texts)
    wanted = re.search(r"#(\d+)", texts[pick]).group(1)

    def check() -> None:
        expect(index_box.input_value() == wanted, f"image index {index_box.input_value()} after preset #{wanted}")
    return f"#{wanted}", options.nth(pick).click, check


def manifold_tiles(s: Session, r: int):
    thumb = slider(s.main, "Manifold tiles per side")
    # a number slider (5 ... 30 tiles): Home goes to its minimum, not to 0
    before, bottom, top = slider_index(thumb), int(thumb.get_attribute("min")), int(thumb.get_attribute("max"))
    key = TILE_KEYS[r % len(TILE_KEYS)]
    target = {"End": top, "Home": bottom, "ArrowRight": min(before + 1, top)}[key]
    if target == before:
        key, target = ("Home", bottom) if before != bottom else ("End", top)

    def check() -> None:
        expect(slider_index(thumb) == target, f"tiles index {slider_index(thumb)}, chose {target}")
    return key, key_action(s, thumb, key), check


def overlay(s: Session, r: int):
    name = "Overlay the test means on the decoded manifold"
    switch = need(s.main.get_by_role("switch", name=name), "overlay toggle")
    before = switch.is_checked()
    label = s.main.locator("label").filter(has=s.page.get_by_role("switch", name=name))

    def check() -> None:
        expect(switch.is_checked() != before, "overlay toggle did not change")
    return "on" if not before else "off", label.first.click, check


def button(key: str, what: str) -> Control:
    def control(s: Session, r: int):
        target = need(s.page.locator(f".st-key-{key} button"), what)
        return what, target.click, lambda: None
    return control


def toy_target(s: Session, r: int):
    box = selectbox(s.main, "Target")
    box.click()
    options = s.page.get_by_role("option")
    options.first.wait_for(timeout=LOCATOR_TIMEOUT_MS)
    texts = options.all_inner_texts()
    current = box.input_value()
    pick = next(t for t in texts[r % len(texts):] + texts if t != current)

    def check() -> None:
        expect(box.input_value() == pick, f"target shows {box.input_value()}, chose {pick}")
    return pick.split(" (")[0], options.get_by_text(pick, exact=True).first.click, check


def toy_k(s: Session, r: int):
    label = "K (importance samples) for the IWAE fit and for q_IW"
    thumb = slider(s.main, label)
    before, top = slider_index(thumb), int(thumb.get_attribute("max"))
    index = (top, 0, round(top * 0.5))[r % 3]
    if index == before:
        index = 0 if before else top
    act = slider_track_click(s, s.main, label, index) if 0 < index < top else key_action(
        s, thumb, "Home" if index == 0 else "End")

    def check() -> None:
        expect(slider_index(thumb) == index, f"toy K index {slider_index(thumb)}, chose {index}")
    return f"index {index}", act, check


def subset_size(s: Session, r: int):
    box = selectbox(s.main, "Test images in the average (the first n of the test set)")
    value = next(str(n) for n in SUBSETS[r % len(SUBSETS):] + SUBSETS if str(n) != box.input_value())
    act = option_action(s, box, re.compile(rf"^{value}$"))

    def check() -> None:
        expect(box.input_value() == value, f"subset shows {box.input_value()}, chose {value}")
    return value, act, check


def upload(s: Session, r: int):
    tab = s.page.get_by_role("tab", name="Upload")
    need(tab, "Upload tab").click()
    chooser = need(s.main.locator("input[type='file']"), "file uploader")
    png = digit_png(s.tmp, r)

    def check() -> None:
        expect(s.side.get_by_text("your own digit", exact=False).count() >= 1,
               "the sidebar does not say the pages show your own digit")
    return png.name, lambda: chooser.set_input_files(str(png)), check


def lesson_step(direction: str) -> Control:
    def control(s: Session, r: int):
        target = need(s.page.locator(f".st-key-lesson_{direction} button"), f"lesson {direction} button")
        if target.is_disabled():
            raise Missing(f"lesson {direction} disabled at this step")
        before = re.search(r"step=(\d+)", s.page.url)
        step = int(before.group(1)) if before else 1
        wanted = step + (1 if direction == "next" else -1)

        def check() -> None:
            expect(f"step={wanted}" in s.page.url, f"URL {s.page.url}, expected step={wanted}")
        return f"step {wanted}", target.click, check
    return control


CONTROLS: dict[str, Control] = {
    "model pair": model_pair, "image": image, "K = 1": k_control("first"), "K middle": k_control("middle"),
    "K = 5000": k_control("last"), "seed": seed, "digit filter": digit_filter, "preset": preset,
    "manifold tiles": manifold_tiles, "overlay": overlay, "new draws": button("new_draws", "New draws button"),
    "toy target": toy_target, "toy K": toy_k, "subset size": subset_size, "upload": upload,
    "lesson next": lesson_step("next"), "lesson back": lesson_step("back"),
}


def digit_png(folder: Path, r: int) -> Path:
    """A photo-like digit (dark ink on white, 280 x 280), a different one each round: 1, 0, 7, 4, then thicker."""
    from PIL import Image, ImageDraw

    picture = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(picture)
    width = 22 + 8 * (r // 4)
    shape = r % 4
    if shape == 0:
        draw.line([(150, 40), (130, 240)], fill=0, width=width)
    elif shape == 1:
        draw.ellipse([70, 40, 210, 240], outline=0, width=width)
    elif shape == 2:
        draw.line([(60, 50), (220, 50), (110, 240)], fill=0, width=width, joint="curve")
    else:
        draw.line([(180, 240), (180, 40), (60, 170), (230, 170)], fill=0, width=width, joint="curve")
    path = folder / f"digit-{r}.png"
    picture.save(path)
    return path


# ------------------------------------------------------------------------------------------------
# Measuring


def measure(s: Session, row: Row, r: int) -> None:
    """One input of ``row``'s control in round r: its time until the page settled, or why it has none. Any failure is
    an error of the row (the dropdown a failed input may have left open is closed), never the end of the run."""
    try:
        value, act, check = CONTROLS[row.control](s, r)
    except Missing as exc:
        row.missing = row.missing or str(exc)
        return
    except Exception as exc:  # noqa: BLE001
        row.errors.append(f"round {r + 1}: preparing the input failed: {one_line(str(exc))}")
        s.page.keyboard.press("Escape")
        return
    errors_before = len(s.page_errors)
    try:
        position = run_log_position(s)
        since = mark(s.page)
        act()
        seconds = wait_settled(s.page, since)
    except Exception as exc:  # noqa: BLE001 - a timeout: the app never answered or never settled
        row.errors.append(f"round {r + 1} ({value}): never settled: {one_line(str(exc), 300)}")
        s.page.keyboard.press("Escape")
        return
    row.seconds.append(seconds)
    row.server.append(server_seconds(s, position))
    found = problems(s.page) + s.page_errors[errors_before:]
    try:
        check()
    except Wrong as exc:
        found.append(f"did not land: {exc}")
    row.errors += [f"round {r + 1} ({value}): {p}" for p in found]


def run_log_position(s: Session) -> int:
    return s.run_log.stat().st_size if s.run_log.is_file() else 0


def server_seconds(s: Session, position: int) -> float:
    """The seconds of the server's script runs logged since ``position`` (``$IWAE_RUN_LOG``, explorer.frame): the
    server's share of a wait; the rest is the browser drawing (and the network)."""
    if not s.run_log.is_file():  # an older tree writes no run log
        return float("nan")
    with open(s.run_log) as log:
        log.seek(position)
        return sum(float(line.split("\t")[0]) for line in log if line.strip())


def new_session(context, url: str, name: str, models: list[str], tmp: Path) -> Session:
    page = context.new_page()
    page.set_default_timeout(LOCATOR_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {str(exc)[:200]}"))
    return Session(page, name, models, errors, tmp)


def open_page(s: Session, url: str, path: str) -> tuple[float, str]:
    """Open ``url`` + ``path`` in the session's tab: seconds from the navigation's start until the page settled, and
    how it was opened. When the deep link shows "Page not found" (an older tree's legacy pages/ handling) and the
    sidebar has a link to ``path``, the page is opened with that link instead, timed from the click."""
    s.page.goto(url + path, wait_until="commit", timeout=RUN_TIMEOUT_MS)
    seconds = wait_settled(s.page, NEW_DOCUMENT)
    if not s.page.evaluate(NOT_FOUND):
        return seconds, ""
    link = s.page.locator(f'[data-testid="stSidebarNav"] a[href$="{path.split("?")[0]}"]')
    if link.count() == 0:
        return seconds, ""
    close_dialogs(s.page)
    since = mark(s.page)
    link.first.click()
    return wait_settled(s.page, since), "the deep link showed Page not found: opened from the sidebar link"


def page_missing(s: Session) -> str | None:
    """Why the page just opened is not this tree's page of that name: a "Page not found" dialog (an older tree)."""
    return "page not found" if s.page.evaluate(NOT_FOUND) else None


def cold_start(context, args, url: str, port: int, checkpoints: Path, log: Path, tmp: Path):
    """Launch the server and open /latent in a tab made beforehand: (server process, rows for the first chart and the
    page settled, seconds from launch). The server is left running."""
    s = new_session(context, url, "latent", [], tmp)
    chart = Row("cold start to first chart", "latent", TARGET_COLD_S)
    settled = Row("cold start to page settled", "latent", TARGET_COLD_S)
    t0 = time.perf_counter()
    server = start_streamlit(port, checkpoints, args.threads, log, root=args.app_root, run_log=tmp / RUN_LOG_NAME)
    try:
        wait_healthy(url, server, log)
        opened = time.perf_counter() - t0
        s.page.goto(url + "/latent", wait_until="commit", timeout=RUN_TIMEOUT_MS)
        first = s.page.wait_for_function(f"() => ({FIRST_CHART})() && performance.now() || ({NOT_FOUND})() && -1",
                                         timeout=RUN_TIMEOUT_MS, polling="raf").json_value()
        if first < 0:  # an older tree's legacy pages/ handling: the page from its sidebar link, on the same clock
            wait_settled(s.page, NEW_DOCUMENT)
            close_dialogs(s.page)
            chart.note = settled.note = "the deep link showed Page not found: opened from the sidebar link"
            since = mark(s.page)
            s.page.locator('[data-testid="stSidebarNav"] a[href$="/latent"]').first.click()
            first = s.page.wait_for_function(f"() => ({FIRST_CHART})() && performance.now()", timeout=RUN_TIMEOUT_MS,
                                             polling="raf").json_value()
        else:
            since = NEW_DOCUMENT
        chart.seconds.append(opened + first / 1000)
        settled.seconds.append(opened + since["at"] / 1000 + wait_settled(s.page, since))
        settled.errors += problems(s.page) + s.page_errors
        args.paths = page_paths(s.page.evaluate(NAV_LINKS))
    except Exception:
        stop_streamlit(server)
        raise
    finally:
        s.page.close()
    return server, [chart, settled]


def first_views(context, url: str, args, models: list[str], tmp: Path) -> tuple[list[Row], set[str]]:
    """Each page opened once in a new tab (home first): rows, and the pages this tree does not have."""
    rows, absent = [], set()
    for name in args.pages:
        row = Row("first view", name, TARGET_FIRST_VIEW_S)
        if args.paths[name] is None:
            row.missing = "no such page in the navigation"
            absent.add(name)
            rows.append(row)
            continue
        s = new_session(context, url, name, models, tmp)
        try:
            position = run_log_position(s)
            seconds, row.note = open_page(s, url, args.paths[name])
            row.seconds.append(seconds)
            row.server.append(server_seconds(s, position))
            why = page_missing(s)
            if why:
                row.missing, row.seconds = why, []
                absent.add(name)
            else:
                row.errors += problems(s.page) + s.page_errors
        except Exception as exc:  # noqa: BLE001 - a page that never settles is a row, not the end of the run
            row.errors.append(f"never settled: {one_line(str(exc), 300)}")
        finally:
            s.page.close()
        rows.append(row)
        print(f"first view {name}: {fmt(row.seconds)}", file=sys.stderr, flush=True)
    return rows, absent


def chosen_controls(name: str, args) -> tuple[list[str], list[str]]:
    """The page's controls measured in each round and after the rounds, as ``--controls`` restricts them."""
    def keep(controls: list[str]) -> list[str]:
        return [c for c in controls if not args.controls or c in args.controls]
    return keep(PLAN[name]), keep(AFTER_ROUNDS.get(name, []))


def page_controls(context, url: str, name: str, args, models: list[str], tmp: Path) -> list[Row]:
    """The page's controls, ``--repeats`` rounds in one tab opened at the page (K = 5000 from its URL)."""
    controls, after = chosen_controls(name, args)
    rows = {c: Row(c, name, TARGET_CONTROL_S) for c in controls + after}
    s = new_session(context, url, name, models, tmp)
    try:
        open_page(s, url, args.paths[name] + ("" if name == "lesson" else "?k=5000"))
        opened = problems(s.page) + s.page_errors
        if opened:  # the page itself is broken: its controls' rows would only say their widgets are missing
            return [Row("page opened for its controls", name, TARGET_CONTROL_S, errors=opened)]
        for r in range(args.repeats):
            for c in controls:
                measure(s, rows[c], r)
        for r in range(args.repeats):
            for c in after:
                measure(s, rows[c], r)
    finally:
        s.page.close()
    for row in rows.values():
        print(f"{name} / {row.control}: {fmt(row.seconds)}" + (f" ({len(row.errors)} errors)" if row.errors else "")
              + (f" missing: {row.missing}" if row.missing and not row.seconds else ""), file=sys.stderr, flush=True)
    return list(rows.values())


# ------------------------------------------------------------------------------------------------
# Reporting


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) or "-"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(row: Row) -> str:
    if not row.seconds:
        return "missing" if row.missing else "ERROR"
    if row.errors:
        return "ERROR"
    return "yes" if median(row.seconds) <= row.target else "NO"


def table(rows: list[Row]) -> str:
    head = (f"{'control':<28} {'page':<11} {'n':>2} {'median s':>9} {'max s':>7} {'server s':>8} {'target s':>8} "
            f"{'met?':>7}  previous s")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.control:<28} {r.page:<11} {len(r.seconds):>2} {median(r.seconds):>9.2f} "
            f"{max(r.seconds, default=float('nan')):>7.2f} {median(r.server):>8.2f} {r.target:>8.1f} {verdict(r):>7}  "
            f"{PREVIOUS.get((r.control, r.page), '')}"
            + (f"  [missing: {r.missing}]" if r.missing and not r.seconds else "")
            + (f"  [{r.note}]" if r.note else ""))
    return "\n".join(lines)


def json_rows(rows: list[Row], errors: int, protocol: str) -> list[dict]:
    out = []
    for r in rows:
        notes = [f"n={len(r.seconds)}", f"max {max(r.seconds):.2f} s" if r.seconds else "not measured"]
        if r.server:
            notes.append(f"server {median(r.server):.2f} s")
        if (r.control, r.page) in PREVIOUS:
            notes.append(f"previous {PREVIOUS[(r.control, r.page)]} s")
        if r.missing and not r.seconds:
            notes.append(f"missing: {r.missing}")
        if r.errors:
            notes.append(f"{len(r.errors)} error(s)")
        out.append(bench_row(BENCHMARK, f"{r.control} ({r.page})", median(r.seconds), "s", r.target, "max",
                             "; ".join(notes) + "; " + protocol))
    out.append(bench_row(BENCHMARK, "errors (exceptions, error alerts, failed waits, wrong values)", errors, "",
                         0, "max", protocol))
    return out


# ------------------------------------------------------------------------------------------------


def run(args, tmp: Path) -> tuple[list[Row], list[str], float]:
    """Everything in one server and one Chromium: (rows, the models, chromium launch seconds)."""
    from playwright.sync_api import sync_playwright

    checkpoints = tmp / "checkpoints"
    checkpoints.mkdir()
    models = checkpoint_snapshot(checkpoints, root=args.app_root)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    with sync_playwright() as p:
        t = time.perf_counter()
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        launch = time.perf_counter() - t
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(RUN_OBSERVER)
            context.add_init_script(CHANGE_OBSERVER)
            server, rows = cold_start(context, args, url, port, checkpoints, log, tmp)
            print(f"cold start: {fmt(rows[0].seconds)} (first chart)", file=sys.stderr, flush=True)
            try:
                views, absent = first_views(context, url, args, models, tmp)
                rows += views
                for name in args.pages:
                    controls, after = chosen_controls(name, args)
                    if name in absent:
                        rows += [Row(c, name, TARGET_CONTROL_S, missing="page missing") for c in controls + after]
                    elif controls or after:
                        rows += page_controls(context, url, name, args, models, tmp)
            finally:
                stop_streamlit(server)
        finally:
            browser.close()
    text = log.read_text(errors="replace")
    if "Traceback" in text:
        rows.append(Row("server log", "-", 0.0, errors=[f"{text.count('Traceback')} traceback(s); the first: "
                                                        f"{first_traceback(text)}"]))
    return rows, models, launch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every page's controls")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--app-root", type=Path, default=ROOT,
                        help="the tree whose app.py and checkpoints/ are measured (default: this repository)")
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES),
                        help="pages to open and whose controls to measure (default: all)")
    parser.add_argument("--controls", nargs="+", choices=list(CONTROLS), default=None,
                        help="measure only these controls (default: every control of PLAN)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON for bench/run_all.py")
    args = parser.parse_args(argv)
    args.app_root = args.app_root.resolve()
    args.paths = page_paths([])  # until the cold start has read the app's navigation
    if not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not (args.app_root / "app.py").is_file():
        sys.exit(f"{args.app_root} has no app.py")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="page-latency-") as tmp:
        rows, models, launch = run(args, Path(tmp))
    wall = time.perf_counter() - started
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    errors = sum(len(r.errors) for r in rows)
    print(f"\npage latency: app {args.app_root}; models {', '.join(models)}; {args.repeats} round(s) of controls; "
          f"server torch threads {args.threads}; chromium launch {launch:.1f} s (not counted); {wall:.0f} s in all; "
          f"load average {load} on {os.cpu_count()} CPUs\n")
    print(table(rows))
    print("\nmedian / max: seconds until the page settled (see the module docstring); server: median seconds until the "
          "server had finished its last run for the input (the rest is the browser drawing); previous: the issue's "
          "figures (idle machine, run 1 / run 2). The latent page's first view comes after the cold start opened it.")
    found = [r for r in rows if r.seconds]
    missing = sorted({f"{r.control} ({r.page}): {r.missing}" for r in rows if r.missing and not r.seconds})
    if missing:
        print("not measured: " + "; ".join(missing))
    for r in rows:
        for e in r.errors:
            print(f"ERROR {r.control} ({r.page}): {e}")
    print(f"{len(found)} rows measured, {len(missing)} not measured, {errors} error(s)")
    if args.json:
        protocol = (f"{args.repeats} round(s), {len(models)} models, server threads {args.threads}, "
                    f"load {os.getloadavg()[0]:.1f}" + ("" if args.app_root == ROOT else f", app {args.app_root}"))
        write_rows(args.json, json_rows(rows, errors, protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
