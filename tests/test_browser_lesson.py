"""The lesson in a real browser, in presenter view on a 1280 x 720 projector: walked from step 1 to the last with
"Next", each step drawn without exception and with step=N in the URL; a middle step reopened from its URL alone in a
fresh session. A screenshot of every step goes to artifacts/screenshots/lesson-step-N.png (what the projector shows)
and lesson-step-N-full.png (the whole step). Run with ``python -m pytest tests/test_browser_lesson.py -m browser``.

Uses bench/harness.py (the server over a snapshot of checkpoints/, Chromium, waits on the app's own state).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from bench.harness import (
    CHANGE_OBSERVER,
    CHROMIUM,
    CHROMIUM_ARGS,
    NEW_DOCUMENT,
    RUN_OBSERVER,
    RUN_TIMEOUT_MS,
    SCREENSHOTS,
    act,
    checkpoint_snapshot,
    close_dialogs,
    free_port,
    start_streamlit,
    stop_streamlit,
    wait_charts_settled,
    wait_for_count,
    wait_healthy,
    wait_idle,
    wait_settled,
)

pytestmark = pytest.mark.browser

PROJECTOR = {"width": 1280, "height": 720}
MIDDLE = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium for browser tests")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    from iwae import testset

    if not testset.DEFAULT_PATH.is_file():
        pytest.skip("the shipped binarized test set is missing")
    folder = tmp_path_factory.mktemp("lesson-checkpoints")
    checkpoint_snapshot(folder)
    port = free_port()
    log = tmp_path_factory.mktemp("lesson-server") / "streamlit.log"
    process = start_streamlit(port, folder, os.environ.get("IWAE_TEST_THREADS", "1"), log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url, folder, log
    finally:
        stop_streamlit(process)


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(chromium, url: str):
    """A fresh session (its own browser context) at ``url``, idle, with the page errors it collected."""
    context = chromium.new_context(viewport=PROJECTOR)
    context.add_init_script(RUN_OBSERVER)
    context.add_init_script(CHANGE_OBSERVER)
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    # Settled, not merely idle: the lesson's first showing of a step applies its state in a second run, and on a slow
    # box the pause between the two runs can outlast the idle wait.
    wait_settled(page, NEW_DOCUMENT)
    close_dialogs(page)
    return page, errors


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _assert_step(page, errors: list[str], number: int, title: str) -> None:
    page.wait_for_function("t => document.querySelector('[data-testid=stMain] h3')?.innerText.trim() === t",
                           arg=f"{number}. {title}",
                           timeout=RUN_TIMEOUT_MS, polling=100)
    wait_idle(page)
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.all_inner_texts()
    assert page.locator("[data-testid='stDialog']").count() == 0
    assert not errors, errors
    assert _query(page).get("step") == str(number), page.url


def _wait_drawn(page, view: str) -> None:
    """The step's figures (or pictures) drawn by the frontend, on its own clock."""
    if view == "resampling":
        page.wait_for_function(
            "() => { const imgs = Array.from(document.querySelectorAll('[data-testid=\"stMain\"] img'));"
            " return imgs.length >= 5 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            timeout=RUN_TIMEOUT_MS, polling=100)
        return
    wait_for_count(page, ".js-plotly-plot", 1)
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".every(gd => gd._fullLayout && (gd._fullData || []).length)",
                           timeout=RUN_TIMEOUT_MS, polling=100)
    wait_charts_settled(page)


def _screenshots(page, number: int) -> list[Path]:
    """What the projector shows (1280 x 720), then the whole step (the viewport grown to the content)."""
    shown = SCREENSHOTS / f"lesson-step-{number}.png"
    page.screenshot(path=str(shown))
    height = page.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer], [data-testid=stMainBlockContainer]'))"
        ".map(e => e.scrollHeight), document.documentElement.scrollHeight)")
    full = SCREENSHOTS / f"lesson-step-{number}-full.png"
    page.set_viewport_size({"width": PROJECTOR["width"], "height": min(int(height) + 40, 6000)})
    try:
        wait_charts_settled(page)
        wait_idle(page)
        page.screenshot(path=str(full), full_page=True)
    finally:
        page.set_viewport_size(PROJECTOR)
        wait_charts_settled(page)
    return [shown, full]


def test_walk_the_lesson_in_presenter_view(server, chromium):
    from explorer.lesson import STEPS

    url, _, log = server
    page, errors = _open(chromium, url + "/lesson?present=1")
    try:
        # Presenter view: the sidebar collapsed, Streamlit's toolbar and Deploy button hidden.
        # Awaited, not read at once: the frontend collapses the sidebar and applies the stylesheet on its own clock.
        collapsed = page.locator("[data-testid='stSidebar'][data-collapsed='true']")
        collapsed.wait_for(state="attached", timeout=RUN_TIMEOUT_MS)
        page.locator("[data-testid='stToolbar']").wait_for(state="hidden", timeout=30_000)
        assert page.locator("[data-testid='stAppDeployButton']:visible").count() == 0
        for number, step in enumerate(STEPS, start=1):
            _assert_step(page, errors, number, step.title)
            assert _query(page).get("present") == "1"
            _wait_drawn(page, step.view)
            for shot in _screenshots(page, number):
                assert shot.stat().st_size > 10_000
            nxt = page.get_by_role("button", name="Next")
            if number < len(STEPS):
                act(page, nxt.click)
            else:
                assert nxt.is_disabled()
    finally:
        page.context.close()
    assert "Traceback" not in log.read_text(errors="replace")


def test_a_middle_step_from_its_url_alone(server, chromium):
    from explorer.lesson import STEPS, choose_image, step_models

    url, folder, _ = server
    step = STEPS[MIDDLE - 1]
    page, errors = _open(chromium, f"{url}/lesson?step={MIDDLE}")
    try:
        _assert_step(page, errors, MIDDLE, step.title)
        models = step_models(step, [p.stem for p in folder.glob("*.safetensors")])
        expected = choose_image(step.image, folder, models, 10_000).index
        q = _query(page)
        assert (q.get("a"), q.get("b"), q.get("image"), q.get("k")) == (*models, str(expected), str(step.k))
        _wait_drawn(page, step.view)
    finally:
        page.context.close()
