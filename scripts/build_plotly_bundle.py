"""Build static/plotly-iwae.min.js: plotly.js with only the trace types the explorer draws.

    python scripts/build_plotly_bundle.py   # needs node (20 or later), npm and the npm registry

Why: a browser tab evaluates its plotly.js before the first chart. The full plotly.min.js that the Python plotly ships
(4.8 MB: maps, 3-D, every trace) took 1.05-1.16 s to load and evaluate in a new tab on the 2-core machine; this bundle
0.16-0.18 s (docs/benchmarks.md, "2026-12-06: a plotly.js of the explorer's own").

The traces are ``explorer.chart.BUNDLE_TRACES`` (the chart component draws other figures with Streamlit's own element).
The plotly.js version is the one the installed Python plotly (requirements.txt) ships, so a figure is drawn by the
plotly.js it was made for; the npm packages are pinned in scripts/plotly_bundle/ (package.json, package-lock.json).
The first line of the bundle names the version and the traces (tests/test_chart.py reads it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explorer.chart import BUNDLE, BUNDLE_TRACES, PLOTLY_JS, plotly_js_version  # noqa: E402

PACKAGES = Path(__file__).resolve().parent / "plotly_bundle"

# The configuration of plotly.js's own build (its esbuild-config.js), minified.
BUILD_MJS = """
import esbuild from 'esbuild';
import { environmentPlugin } from 'esbuild-plugin-environment';
import { glsl } from 'esbuild-plugin-glsl';
import InlineCSSPlugin from 'esbuild-plugin-inline-css';
await esbuild.build({
  entryPoints: ['./entry.js'], outfile: './bundle.min.js', format: 'iife', globalName: 'Plotly', bundle: true,
  minify: true, sourcemap: false, legalComments: 'eof',
  plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
  alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
  define: { global: 'window', 'define.amd': 'false' }, target: 'es2016', logLevel: 'warning',
});
"""


def header(version: str) -> str:
    return (f"/*! plotly.js v{version} with the traces {', '.join(BUNDLE_TRACES)} only: built by "
            f"scripts/build_plotly_bundle.py from the npm package plotly.js@{version} "
            "(MIT license, Copyright 2012-2026 Plotly, Inc.); the license notices of the packages it includes "
            "are at the end of this file. */\n")


def entry_js() -> str:
    """plotly.js's core (which holds the scatter trace) with the other traces registered."""
    others = [t for t in BUNDLE_TRACES if t != "scatter"]
    lines = ",\n".join(f"  require('plotly.js/lib/{t}')" for t in others)
    return f"var Plotly = require('plotly.js/lib/core');\nPlotly.register([\n{lines}\n]);\nmodule.exports = Plotly;\n"


def run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def main() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: the bundle is built with node and npm (only to rebuild it; the "
                             "app serves the committed static/plotly-iwae.min.js)")
    version = plotly_js_version()
    if version is None:
        raise SystemExit(f"no plotly.js version in the first lines of {PLOTLY_JS}")
    pinned = json.loads((PACKAGES / "package.json").read_text())["dependencies"]["plotly.js"]
    if pinned != version:
        raise SystemExit(f"the installed Python plotly ships plotly.js {version}, but "
                         f"scripts/plotly_bundle/package.json pins plotly.js {pinned}: pin {version} there, "
                         "run `npm install` in that folder to update package-lock.json, and run this again")
    # a fixed folder: the CSS plugin names its style element by a hash of the file's path, so that the same sources
    # give the same bundle byte for byte
    work = Path(tempfile.gettempdir()) / "iwae-plotly-bundle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PACKAGES / name, work / name)
        run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], work)
        (work / "entry.js").write_text(entry_js())
        (work / "build.mjs").write_text(BUILD_MJS)
        run(["node", "build.mjs"], work)
        body = (work / "bundle.min.js").read_text(encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    BUNDLE.parent.mkdir(exist_ok=True)
    partial = BUNDLE.with_name(f".{BUNDLE.name}.tmp")
    partial.write_text(header(version) + body, encoding="utf-8")
    partial.replace(BUNDLE)
    print(f"wrote {BUNDLE.relative_to(ROOT)}: plotly.js v{version}, traces {', '.join(BUNDLE_TRACES)}, "
          f"{BUNDLE.stat().st_size / 1e6:.2f} MB (the full plotly.min.js: {PLOTLY_JS.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
