"""What one chart costs the browser when Streamlit re-creates it: ``Plotly.newPlot`` of the app's own figures in
headless Chromium, outside Streamlit.

    python bench/plotly_newplot.py [--repeats 5]

Streamlit 1.67 re-creates a chart whose figure changed: a new element, a new ``Plotly.newPlot`` (docs/benchmarks.md,
"Morning of 2026-12-03"). This times that call alone, from the figure's JSON to the second animation frame after it,
for the latent scatter of 10,000 test means (``iwae.figures.latent_scatter``, WebGL), the same with every other
point, with 10 SVG traces instead of WebGL, and a one-point SVG chart with the same layout (the fixed cost); then the
latent page's two models: two such scatters as two charts (what the page draws), the same at plotly's default WebGL
pixel ratio of 2 (the app draws at the screen's), and one chart of two panels (tried and not kept: docs/benchmarks.md,
"Evening of 2026-12-03"). The points are random: the cost does not depend on where they lie. Prints the median and
range per case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import plotly  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from bench.harness import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from explorer.chart import BUNDLE, GL_PIXEL_RATIO_JS, PLOTLY_JS  # noqa: E402
from iwae import figures  # noqa: E402

N_POINTS = 10_000

# One Plotly.newPlot per spec, each in its own chart (div), timed together.
# WebGL at the pixel ratio the app's chart component uses (the screen's, 1 here), unless the spec list ends with a
# number: that pixel ratio instead (plotly's own default is 2).
NEW_PLOTS = """async specs => {
    const ratio = typeof specs[specs.length - 1] === 'number' ? specs.pop() : """ + GL_PIXEL_RATIO_JS + """;
    const charts = Array.from(document.querySelectorAll('.chart'));
    charts.forEach(el => Plotly.purge(el));
    const figures = specs.map(s => JSON.parse(s));
    const t0 = performance.now();
    for (let i = 0; i < figures.length; i++) {
        await Plotly.newPlot(charts[i], figures[i].data, figures[i].layout, {plotGlPixelRatio: ratio});
    }
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now() - t0;
}"""


def specs() -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(N_POINTS, 2)).astype(np.float32)
    labels = rng.integers(0, 10, N_POINTS)
    webgl = figures.latent_scatter(mu, labels, chosen=5, z_point=(0.0, 0.0))
    half = go.Figure(webgl)
    for trace in half.data[:10]:
        trace.update(x=trace.x[::2], y=trace.y[::2])
    svg = go.Figure(layout=webgl.layout)
    for trace in webgl.data:
        svg.add_trace(trace.to_plotly_json() | {"type": "scatter"})
    tiny = go.Figure(go.Scatter(x=[0], y=[0]), layout=webgl.layout)
    pair = make_subplots(rows=1, cols=2)
    for col in (1, 2):
        for trace in webgl.data:
            pair.add_trace(trace, row=1, col=col)
    pair.update_layout(webgl.layout)
    return {f"latent scatter, {N_POINTS:,} points (WebGL)": [webgl.to_json()],
            f"latent scatter, {N_POINTS // 2:,} points (WebGL)": [half.to_json()],
            f"latent scatter, {N_POINTS:,} points (SVG)": [svg.to_json()],
            "one point, same layout (SVG)": [tiny.to_json()],
            "two latent scatters as two charts": [webgl.to_json(), webgl.to_json()],
            "the same, WebGL at plotly's pixel ratio 2": [webgl.to_json(), webgl.to_json(), 2],
            "two latent scatters as one chart": [pair.to_json()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plotly-js", choices=("app", "full"), default="app",
                        help="the app's own bundle (static/plotly-iwae.min.js) or the full plotly.min.js")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    script = (BUNDLE if args.plotly_js == "app" else PLOTLY_JS).read_text()
    all_specs = specs()
    timings: dict[str, list[float]] = {name: [] for name in all_specs}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = Path(tmp) / "chart.html"
        page_file.write_text(f"<html><body><div class=chart></div><div class=chart></div><script>{script}</script>"
                             "</body></html>")
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        page.goto(page_file.as_uri())
        page.evaluate(NEW_PLOTS, all_specs["one point, same layout (SVG)"])  # warm-up, not counted
        for _ in range(args.repeats):  # interleaved, so a change of machine load hits every figure alike
            for name, spec in all_specs.items():
                timings[name].append(page.evaluate(NEW_PLOTS, spec))
        browser.close()
    which = BUNDLE.name if args.plotly_js == "app" else f"the full plotly.min.js of plotly {plotly.__version__}"
    print(f"Plotly.newPlot in headless Chromium, {which}, "
          f"{args.repeats} interleaved rounds: ms to the second frame after the call")
    for name, ms in timings.items():
        print(f"  {name:42s} median {statistics.median(ms):6.0f}   range {min(ms):5.0f}-{max(ms):5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
