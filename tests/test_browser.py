"""The explorer in a real browser: ``streamlit run app.py`` in a subprocess, driven by Playwright (sync API) and
Debian's chromium. Run with ``python -m pytest tests/test_browser.py -m browser``.

What AppTest cannot check (tests/test_app.py): the pages as a browser builds them from the sidebar navigation,
plotly charts actually drawn (WebGL scatter included), a real mouse click on a scatter point reaching the
selection callback, the K slider driven from the keyboard, sidebar state kept across client-side page switches,
and the URL query parameters. Full-page screenshots go to artifacts/screenshots/browser-<page>.png.

The server reads a snapshot of the model checkpoints in checkpoints/ (copied to a temporary folder through
``IWAE_CHECKPOINT_DIR``), so training runs that rewrite them cannot change models under a running test; with no
checkpoint there (a fresh CI checkout), two small untrained models are written instead. Its torch uses
``IWAE_TEST_THREADS`` threads (default 1), like the in-process tests (tests/conftest.py).
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from bench.harness import (
    CHANGE_OBSERVER,
    CHART_INFO,
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE_LABEL,
    K_LABEL,
    NEW_DOCUMENT,
    RUN_OBSERVER,
    RUN_TIMEOUT_MS,
    SCREENSHOTS,
    VIEWPORT,
    act,
    checkpoint_snapshot,
    close_dialogs,
    external_requests,
    free_port,
    hover,
    mark,
    scatter_target,
    start_streamlit,
    stop_streamlit,
    wait_charts_settled,
    wait_for_count,
    wait_healthy,
    wait_idle,
    wait_settled,
)

pytestmark = pytest.mark.browser

INK_WAIT_S = 30  # how long a drawn chart may take to show ink in every subplot (WebGL on a loaded box)

# page name -> (sidebar link title, URL path, title shown on the page)
PAGES = {
    "home": ("Home", "/", "IWAE visual explorer"),
    "latent": ("Latent space", "/latent", "Latent space"),
    "posteriors": ("Posteriors", "/posteriors", "Posteriors"),
    "resampling": ("Resampling", "/resampling", "Resampling"),
    "bounds": ("Bounds and comparison", "/bounds", "Bounds and comparison"),
    "toy": ("Toy targets", "/toy", "Toy targets"),
    "digit": ("Your own digit", "/digit", "Your own digit"),
}
FIRST_LINK = "/latent?image=3"  # what the browser opens first: a deep link with state in its query
MIN_CHARTS = {"home": 0, "latent": 4, "posteriors": 4, "resampling": 0, "bounds": 7, "toy": 2, "digit": 0}


# ------------------------------------------------------------------------------------------------
# The server


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    checkpoints: Path
    models: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) for browser tests")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    from iwae import testset

    if not testset.DEFAULT_PATH.is_file():
        pytest.skip("the shipped binarized test set is missing")
    folder = tmp_path_factory.mktemp("browser-checkpoints")
    models = checkpoint_snapshot(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("browser-server") / "streamlit.log"
    process = start_streamlit(port, folder, os.environ.get("IWAE_TEST_THREADS", "1"), log)
    srv = Server(url, process, log, folder, models)
    try:
        try:
            wait_healthy(url, process, log)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield srv
    finally:
        stop_streamlit(process)


# ------------------------------------------------------------------------------------------------
# The browser


@dataclass
class Browser:
    page: object  # playwright.sync_api.Page
    url: str
    errors: list[str]
    first_dialogs: list[str]  # dialogs shown when the session opened (a deep link, the server's first session)
    requests: list[str] = field(default_factory=list)  # every URL any page of the browser requested, from the start


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport=VIEWPORT)
            context.add_init_script(RUN_OBSERVER)
            context.add_init_script(CHANGE_OBSERVER)
            requests: list[str] = []
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.set_default_timeout(RUN_TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # The first session of a fresh server, opened from a shared link to a page other than home.
            page.goto(server.url + FIRST_LINK)
            # Settled, not merely idle: on a slow box the first session's runs can pause longer than the idle wait
            # between the deep link's hand-over and the run that draws the linked state.
            wait_settled(page, NEW_DOCUMENT)
            dialogs = close_dialogs(page)
            yield Browser(page, server.url, errors, dialogs, requests)
        finally:
            chromium.close()


def open_page(b: Browser, name: str) -> None:
    """Switch page with the sidebar navigation link, as a user does."""
    title, path, heading = PAGES[name]
    link = b.page.locator("[data-testid='stSidebarNav'] a[data-testid='stSidebarNavLink']", has_text=title)
    act(b.page, link.click)
    # The page's own state, not a time: the URL moved to the page, its title is drawn, and the app is idle.
    b.page.wait_for_function(
        "([p, h]) => location.pathname === p && document.querySelector('h1')?.innerText.trim() === h",
        arg=[path, heading], timeout=RUN_TIMEOUT_MS, polling=100)
    wait_idle(b.page)


def sidebar_state(page) -> dict:
    """The sidebar's shown values: models (names), image index, K."""
    side = page.locator("[data-testid='stSidebar']")

    def model(label: str) -> str:
        return side.get_by_label(label, exact=True).input_value().split(" (")[0]

    return {
        "a": model("Left column"),
        "b": model("Right column"),
        "image": int(side.get_by_label(IMAGE_LABEL, exact=True).input_value()),
        "k": int(k_slider(page).get_attribute("aria-valuetext")),
    }


def k_slider(page):
    return page.locator("[data-testid='stSidebar']").get_by_role("slider", name=K_LABEL)


def query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def assert_state_in_url(page, state: dict) -> None:
    q = query(page)
    assert {k: q.get(k) for k in ("a", "b", "image", "k")} == {k: str(v) for k, v in state.items()}, page.url


def assert_no_exception(b: Browser) -> None:
    """No exception element, no dialog (e.g. "Page not found") and no uncaught error in the page."""
    exceptions = b.page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.all_inner_texts()
    dialogs = b.page.locator("[data-testid='stDialog']")
    assert dialogs.count() == 0, dialogs.all_inner_texts()
    assert not b.errors, b.errors


def ink_pixels(png: bytes, box: dict) -> int:
    """Pixels in the box (CSS px = device px here) darker or more saturated than light grid lines."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    top, left = int(box["y"]) + 3, int(box["x"]) + 3
    area = pixels[top : int(box["y"] + box["h"]) - 3, left : int(box["x"] + box["w"]) - 3]
    return int((area.min(axis=-1) < 200).sum())


def wait_charts_drawn(page, minimum: int) -> None:
    """Until at least ``minimum`` plotly charts have data and a layout (the frontend may draw a chart after the run
    that sent it has ended: on a loaded box, after the page counted as settled)."""
    page.wait_for_function(
        "n => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd => gd._fullLayout"
        " && (gd._fullData || []).length).length >= n", arg=minimum, timeout=RUN_TIMEOUT_MS, polling=100)


def assert_charts_drawn(b: Browser, minimum: int) -> list[dict]:
    """At least ``minimum`` plotly charts, each with data, a real size, and ink in every subplot's plot area. Waits
    for the frontend to draw them (it may finish after the script run has ended), up to INK_WAIT_S for the ink."""
    wait_for_count(b.page, ".js-plotly-plot", minimum)
    wait_charts_drawn(b.page, minimum)
    wait_charts_settled(b.page)
    charts = b.page.evaluate(CHART_INFO)
    assert len(charts) >= minimum, f"{len(charts)} plotly charts, expected at least {minimum}"
    locator = b.page.locator(".js-plotly-plot")
    for i, chart in enumerate(charts):
        assert chart["traces"] > 0 and chart["points"] > 0, (i, chart)
        assert chart["width"] > 200 and chart["height"] > 150, (i, chart)
        assert chart["plots"], (i, chart)
        deadline = time.monotonic() + INK_WAIT_S
        while True:  # WebGL draws on the browser's own schedule: re-read the pixels each animation frame
            png = locator.nth(i).screenshot()
            ink = [ink_pixels(png, box) for box in chart["plots"]]
            if min(ink) >= 100 or time.monotonic() > deadline:
                break
            b.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        assert min(ink) >= 100, f"chart {i}: a blank subplot (ink pixels per subplot {ink}); {chart}"
    return charts


def full_page_screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport to the content first."""
    height = page.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer], [data-testid=stMainBlockContainer]'))"
        ".map(e => e.scrollHeight), document.documentElement.scrollHeight)")
    path = SCREENSHOTS / f"browser-{name}.png"
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 40, 8000)})
    try:
        wait_charts_settled(page)  # plotly redraws on resize
        wait_idle(page)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)
    return path


# ------------------------------------------------------------------------------------------------
# Tests (in file order: they share one browser page, as one user's session)


def test_first_session_opened_with_state(browser):
    """The first session, opened from a deep link, ran the linked page with the linked image."""
    page = browser.page
    assert urlparse(page.url).path == "/latent", page.url
    assert page.locator("h1").first.inner_text().strip() == PAGES["latent"][2]
    assert sidebar_state(page)["image"] == 3
    assert query(page).get("image") == "3"


def test_first_deep_link_without_page_not_found(browser):
    """The browser's first link, to a page of the freshly started server, shows no "Page not found" dialog (the
    legacy pages/ folder lookup runs first; explorer/boot.py hands that run to app.py)."""
    assert browser.first_dialogs == []


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders(browser, name):
    """Every page opened from the sidebar: no exception, its charts (or pictures) drawn; a screenshot."""
    if name == "home":
        open_page(browser, "latent")  # start from another page so that the link really switches
    open_page(browser, name)
    assert_no_exception(browser)
    assert browser.page.locator("[data-testid='stSidebar'] [data-testid='stSlider']").count() == 1
    if MIN_CHARTS[name]:
        assert_charts_drawn(browser, MIN_CHARTS[name])
    if name == "home":  # the results and checkpoint tables, static markdown
        wait_for_count(browser.page, "[data-testid='stMain'] table", 2)
    if name == "resampling":  # the input, then 2 x 4 pictures; each must have loaded
        browser.page.wait_for_function(
            "() => { const imgs = Array.from(document.querySelectorAll('[data-testid=\"stMain\"] img'));"
            " return imgs.length >= 9 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            timeout=RUN_TIMEOUT_MS, polling=100)
    shot = full_page_screenshot(browser.page, name)
    assert shot.stat().st_size > 10_000


# Marks every drawn chart's element; a chart the browser re-creates comes back as a new element, unmarked.
MARK_CHARTS = ("() => { const g = Array.from(document.querySelectorAll('.js-plotly-plot'));"
               " g.forEach(x => { x.__kept = true; }); return g.length; }")
CHARTS_KEPT = ("() => { const g = Array.from(document.querySelectorAll('.js-plotly-plot'));"
               " return [g.length, g.filter(x => x.__kept).length]; }")


@pytest.mark.parametrize("name", ["latent", "posteriors", "bounds", "toy"])
def test_a_new_sessions_second_run_keeps_its_charts(browser, name):
    """A new session's first run and the next draw the same elements in the same places, so a rerun with nothing
    changed leaves every chart as it is. (The first run's browser warm-up slot, missing from later runs, once
    shifted every element by one: the browser re-created every chart on a session's first input, 3.1 s on the
    latent page against 0.3.)"""
    page = browser.page.context.new_page()
    try:
        page.goto(browser.url + PAGES[name][1])
        wait_settled(page, NEW_DOCUMENT)
        wait_charts_drawn(page, MIN_CHARTS[name])
        wait_settled(page, NEW_DOCUMENT)
        drawn = page.evaluate(MARK_CHARTS)
        assert drawn >= MIN_CHARTS[name]
        since = mark(page)
        page.keyboard.press("r")  # Streamlit's shortcut: run the script again, same state
        wait_settled(page, since)
        assert page.evaluate(CHARTS_KEPT) == [drawn, drawn]
    finally:
        page.close()


def test_no_request_leaves_the_machine(browser):
    """Offline-safe: while the browser opened every page (the deep link first, then each page from the sidebar), every
    request it made went to the app's server: no web font, icon or script from the internet."""
    for name in PAGES:
        open_page(browser, name)
    assert browser.requests, "the request recorder saw nothing"
    assert any(urlparse(u).path.startswith("/_stcore") or urlparse(u).path.startswith("/static")
               for u in browser.requests)  # the recorder sees the app's own traffic
    assert external_requests(browser.requests) == [], external_requests(browser.requests)


def test_draw_a_digit(browser):
    """A stroke drawn with the mouse on the canvas, then "Use this drawing": a centred vertical bar (a "1")
    becomes the chosen image."""
    import numpy as np

    from iwae import image_ref

    page = browser.page
    open_page(browser, "digit")
    page.get_by_role("tab", name="Draw").click()
    canvas = page.locator("[data-testid='stMain'] canvas").last  # fabric's top (event) canvas
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.15

    def stroke() -> None:  # a vertical stroke, off-centre on purpose; mouse up sends the drawing (a rerun)
        page.mouse.move(x0, y0)
        page.mouse.down()
        for i in range(1, 21):
            page.mouse.move(x0, y0 + box["height"] * 0.7 * i / 20)
        page.mouse.up()

    act(page, stroke)
    act(page, page.get_by_role("button", name="Use this drawing").click)
    error = page.locator("[data-testid='stMain'] [data-testid='stAlert']", has_text="previous image")
    assert error.count() == 0, error.all_inner_texts()
    x = image_ref.decode_digit(query(page).get("x", "")).reshape(28, 28)
    rows, cols = np.nonzero(x)
    assert 19 <= rows.max() - rows.min() + 1 <= 21, "the longer side is scaled to 20 pixels"
    assert cols.max() - cols.min() + 1 <= 8, "a vertical bar stays narrow"
    assert abs(cols.mean() - 13.5) <= 1.5 and abs(rows.mean() - 13.5) <= 1.5, "centred by centre of mass"
    assert page.locator("[data-testid='stMain']").get_by_text("Your digit (drawing)").count() == 1
    assert_no_exception(browser)


def test_upload_a_digit_then_a_bad_file(browser, tmp_path):
    """A user uploads a photo-like PNG of a digit (dark on light, 10x larger): it becomes every page's image, in
    the URL too; then a file that is not an image: a clear error, and the previous digit stays."""
    import numpy as np
    from PIL import Image

    from iwae import digit_image, image_ref, testset

    page = browser.page
    open_page(browser, "digit")
    images, _ = testset.load()
    ink = images[5].reshape(28, 28).numpy()
    good = tmp_path / "my-digit.png"
    Image.fromarray((255 - 255 * ink).astype(np.uint8)).resize((280, 280), Image.NEAREST).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("these are my lecture notes, not a picture")
    page.get_by_role("tab", name="Upload").click()
    uploader = page.locator("[data-testid='stMain'] input[type='file']")
    act(page, lambda: uploader.set_input_files(str(good)))
    code = query(page).get("x", "")
    assert image_ref.decode_digit(code).tolist() == digit_image.prepare_digit_bytes(good.read_bytes()).tolist()
    side = page.locator("[data-testid='stSidebar']")
    assert side.locator("[data-testid='stAlert']", has_text="shows your own digit").count() == 1
    main = page.locator("[data-testid='stMain']")
    assert main.get_by_text("uploaded file my-digit.png").count() == 1
    assert_no_exception(browser)
    full_page_screenshot(page, "digit-uploaded")
    act(page, lambda: uploader.set_input_files(str(bad)))
    error = main.locator("[data-testid='stAlert']", has_text="keeps its previous image")
    assert error.count() == 1 and "notes.png" in error.inner_text()
    assert query(page).get("x") == code  # the previous digit stays
    open_page(browser, "posteriors")
    assert main.get_by_text("your own digit", exact=False).count() >= 1
    assert_charts_drawn(browser, MIN_CHARTS["posteriors"])
    act(page, side.get_by_role("button", name="Back to test image", exact=False).click)
    assert "x" not in query(page)


def test_scatter_click_chooses_image(browser):
    """A real mouse click on a point of the latent scatter chooses its test image for the whole app."""
    page = browser.page
    open_page(browser, "latent")
    before = sidebar_state(page)
    target = scatter_target(page, 0, [before["image"]])
    assert target is not None and target["separation_px"] >= 2, target
    hover(page, target)
    act(page, lambda: page.mouse.click(target["x"], target["y"]))
    after = sidebar_state(page)
    assert after["image"] == target["index"], (target, after)
    assert {k: after[k] for k in ("a", "b", "k")} == {k: before[k] for k in ("a", "b", "k")}
    side = page.locator("[data-testid='stSidebar']")
    assert side.get_by_text(f"Image #{target['index']}: digit").count() == 1
    # named twice on the latent page: in the intro line and under the image
    assert page.locator("[data-testid='stMain']").get_by_text(f"test image #{target['index']} (digit").count() == 2
    assert_state_in_url(page, after)
    assert_no_exception(browser)
    # the chosen image's ring moved to the clicked point
    ring = page.evaluate("""() => { const gd = document.querySelectorAll('.js-plotly-plot')[0];
        return gd._fullData.filter(t => String(t.name).startsWith('image #')).map(t => t.name); }""")
    assert ring == [f"image #{target['index']}"], ring


def test_webgl_drawn_at_the_screens_pixel_ratio(browser):
    """The latent scatters' WebGL canvases have the screen's pixels (explorer/chart.py), not plotly's default of twice
    as many per side, which software-rendered Chromium took 1.7 times as long to draw (bench/plotly_newplot.py)."""
    page = browser.page
    open_page(browser, "latent")
    wait_charts_drawn(page, 2)
    canvases = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot canvas.gl-canvas-context'))
        .map(c => ({width: c.width, cssWidth: c.clientWidth, ratio: window.devicePixelRatio}))""")
    assert len(canvases) >= 2, canvases
    for canvas in canvases:
        assert canvas["cssWidth"] > 200 and canvas["width"] == round(canvas["cssWidth"] * canvas["ratio"]), canvases


def _press_k(browser, key: str, times: int = 1) -> None:
    slider = k_slider(browser.page)
    slider.focus()

    def press() -> None:
        for _ in range(times):
            browser.page.keyboard.press(key)

    act(browser.page, press)


def _assert_k_shown(browser, k: int) -> None:
    page = browser.page
    assert sidebar_state(page)["k"] == k
    assert query(page).get("k") == str(k), page.url
    main = page.locator("[data-testid='stMain']")
    assert main.get_by_text(f"K = {k}", exact=False).count() >= 1
    titles = [t for chart in page.evaluate(CHART_INFO) for t in chart["annotations"] if "at K =" in t]
    assert titles and all(t.endswith(f"at K = {k}") for t in titles), titles
    assert_no_exception(browser)


def test_k_slider_keyboard(browser):
    """K moved with the keyboard on the slider thumb: the posteriors page redraws at the new K."""
    from explorer.state import K_CHOICES

    open_page(browser, "posteriors")
    k0 = sidebar_state(browser.page)["k"]
    i0 = K_CHOICES.index(k0)
    if i0 == len(K_CHOICES) - 1:
        _press_k(browser, "ArrowLeft")
        i0 -= 1
    _press_k(browser, "ArrowRight")  # one step up
    _assert_k_shown(browser, K_CHOICES[i0 + 1])
    _press_k(browser, "Home")  # a jump to K = 1: q_IW is q
    _assert_k_shown(browser, K_CHOICES[0])
    _press_k(browser, "ArrowRight", times=3)  # three quick steps: the last value wins
    _assert_k_shown(browser, K_CHOICES[3])
    assert_charts_drawn(browser, MIN_CHARTS["posteriors"])


def test_state_kept_across_pages(browser, server):
    """The sidebar (models, image, K) survives page switches and is mirrored in the URL."""
    page = browser.page
    side = page.locator("[data-testid='stSidebar']")
    state = sidebar_state(page)
    others = [m for m in server.models if m not in (state["a"], state["b"])]
    if others:  # choose another model for the right column (opening the list does not rerun; choosing does)
        side.get_by_label("Right column", exact=True).click()
        act(page, lambda: page.get_by_role("option", name=others[0]).first.click())
        state = sidebar_state(page)
        assert state["b"] == others[0]
    for name in ("resampling", "bounds", "home", "latent"):
        open_page(browser, name)
        assert sidebar_state(page) == state, name
        assert_state_in_url(page, state)
        assert_no_exception(browser)
    main = page.locator("[data-testid='stMain']")
    assert main.get_by_text(f"test image #{state['image']} (digit").count() == 2  # intro line and image caption
    assert main.locator("h3", has_text=state["b"]).count() >= 1


def test_deep_link_restores_state(browser, server):
    """A shared URL opens the same models, image and K (a new session in a new tab)."""
    from explorer.state import K_CHOICES

    page = browser.page.context.new_page()
    try:
        state = {"a": server.models[-1], "b": server.models[0], "image": 7, "k": K_CHOICES[-3]}
        page.goto(f"{server.url}/resampling?a={state['a']}&b={state['b']}&image=7&k={state['k']}&seed=3")
        wait_idle(page)
        assert sidebar_state(page) == state
        assert_state_in_url(page, state)
        assert query(page).get("seed") == "3"
        assert page.locator("[data-testid='stMain']").get_by_text(f"SIR at K = {state['k']}").count() >= 1
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        page.close()


def test_server_log_clean(browser, server):
    """No traceback in the server's output and no uncaught error in the page during the session."""
    assert not browser.errors, browser.errors
    log = server.log_text()
    assert "Traceback" not in log, log[-5000:]
