"""Pages' first views in new tabs on warmed servers, interleaved between trees of the app: a controlled A/B.

    python bench/first_views.py [--pages home latent ...] [--rounds 7] [--warm-s 25] [--app-root PATH ...]

The whole-app run (bench/page_latency.py) opens each page once, right after a cold start, while the server's warm-up
thread is still computing: on these two cores one first view then moves by a second or more between runs, too much to
see a change of a few tenths. Here one ``streamlit run app.py`` per tree (``--app-root``, repeatable; default: this
repository; each with a snapshot of its checkpoints and one torch thread, bench/harness.py) is started, every page is
opened once, and the servers are left alone for ``--warm-s`` seconds (the warm-up done). Then, ``--rounds`` times, each
page is opened in a new tab (a new session, the previous tab closed) on each tree in turn, the order of the trees
alternating between rounds, and timed from the navigation's start until the page settled (bench/harness.py
``wait_settled``: every chart drawn, no skeleton, spinner or run left). Prints the median and the range per page and
tree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CHANGE_OBSERVER,
    CHROMIUM,
    CHROMIUM_ARGS,
    RUN_OBSERVER,
    VIEWPORT,
    checkpoint_snapshot,
    free_port,
    start_streamlit,
    stop_streamlit,
    wait_healthy,
)
from bench.page_latency import PAGES, new_session, open_page, page_paths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--rounds", type=int, default=7, help="new tabs per page and tree")
    parser.add_argument("--warm-s", type=float, default=25.0, help="seconds left to the servers after the first views")
    parser.add_argument("--app-root", type=Path, action="append", default=None,
                        help="a tree of the app to measure (repeat for an A/B; default: this repository)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    roots = [r.resolve() for r in (args.app_root or [ROOT])]
    paths = page_paths([])  # every page at /<page>, home at /
    from playwright.sync_api import sync_playwright

    servers = []
    with tempfile.TemporaryDirectory(prefix="first-views-") as scratch:
        try:
            for i, root in enumerate(roots):
                tmp = Path(scratch) / str(i)
                (tmp / "checkpoints").mkdir(parents=True)
                checkpoint_snapshot(tmp / "checkpoints", root)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                process = start_streamlit(port, tmp / "checkpoints", 1, tmp / "server.log", root=root)
                servers.append((root, url, process, tmp))
                wait_healthy(url, process, tmp / "server.log")
            seconds = {(str(root), name): [] for root in roots for name in args.pages}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=VIEWPORT)
                context.add_init_script(RUN_OBSERVER)
                context.add_init_script(CHANGE_OBSERVER)

                def first_view(url: str, name: str, tmp: Path) -> float:
                    s = new_session(context, url, name, [], tmp)
                    try:
                        return open_page(s, url, paths[name])[0]
                    finally:
                        s.page.close()

                for _root, url, _process, tmp in servers:
                    for name in args.pages:
                        first_view(url, name, tmp)
                time.sleep(args.warm_s)
                for r in range(args.rounds):
                    for name in args.pages:
                        for root, url, _process, tmp in (servers if r % 2 == 0 else servers[::-1]):
                            seconds[(str(root), name)].append(first_view(url, name, tmp))
                    print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
                browser.close()
        finally:
            for _root, _url, process, _tmp in servers:
                stop_streamlit(process)
    print(f"first views in new tabs, {args.rounds} interleaved rounds after {args.warm_s:.0f} s of warm-up; seconds "
          "from the navigation until the page settled")
    print(f"{'page':12s} {'tree':40s} {'median':>7s} {'min':>6s} {'max':>6s}")
    for name in args.pages:
        for root in roots:
            v = seconds[(str(root), name)]
            print(f"{name:12s} {str(root)[-40:]:40s} {statistics.median(v):7.2f} {min(v):6.2f} {max(v):6.2f}")


if __name__ == "__main__":
    main()
