"""Run every benchmark of the project and print their headline figures as one table; keep it in a dated file.

    python bench/run_all.py [--quick] [--skip-browser] [--threads N] [--timeout S] [--out bench/results]

Runs, in order, each script in its own process:
- bench/train_throughput.py: an IWAE k=50 training step against the bare matmuls of the same shapes (the roofline)
  and against the naive layout (each image pushed K times through the encoder);
- bench/posterior_speed.py: the explorer's per-image posterior work (grid, proposal pool, q_IW, SIR) and the encoding
  of the 10,000 test images, on iwae-k50;
- bench/evaluation_time.py: ``python -m iwae.evaluate``'s work (IS k=5000, quadrature) on the first 100 test images,
  extrapolated to all 10,000;
- bench/app_latency.py: the app in a real browser: cold start, K change (rerun) and scatter-click latency;
- bench/page_latency.py: the whole app in a real browser: cold start to the first chart, every page's first view, and
  every control on the pages it lives on (median and maximum seconds until the page settles, beside the issue's
  previous figures);
- bench/load_sessions.py: the classroom load: 30 websocket clients each walking a scripted lesson over every page
  once against one server (action latency p50 / p95 / max, errors, the server's peak RSS); then again with 10 s of
  reading between actions and every client on the same images (``--class-images``, a class told which image).
The two browser benchmarks need /usr/bin/chromium; ``--skip-browser`` leaves them out.
Each script writes its headline figures as JSON rows (its ``--json PATH`` option; one row per figure, see
``bench_row``). This runner prints them as ONE table (benchmark | metric | value | unit | target | met? | protocol)
and writes that table, then every script's own full output, to ``<out>/<YYYY-MM-DD-HHMM>.txt``. A script that exits
non-zero, times out (``--timeout``, per script) or writes no rows gets a row saying so, with its exit code, and its
stderr goes into the file; the runner goes on with the next script and exits 1 at the end.

``--quick``: a smoke run: small repeat counts, few images, 5 clients (each Benchmark's ``quick``). Its
figures are noisy; the file is named ``<stamp>-quick.txt`` and its header says so. Do not commit it as a result.
``--threads N`` is passed to every script (torch threads; for the app, the server's). Run on an idle machine for
figures worth committing; the load average at the start and the end is in the header.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = ("benchmark", "metric", "value", "unit", "target", "target_kind", "protocol")
TARGET_KINDS = ("max", "min")


@dataclass(frozen=True)
class Benchmark:
    name: str  # the "benchmark" of the script's rows
    script: str
    quick: tuple[str, ...]  # arguments of a --quick run, after ``args``
    browser: bool = False  # needs chromium
    args: tuple[str, ...] = ()  # arguments of every run; "{tmp}" stands for the runner's temporary folder


BENCHMARKS = (
    Benchmark("training throughput", "bench/train_throughput.py", ("--repeats", "2", "--warmup", "1", "--inner", "1")),
    Benchmark("posterior computations", "bench/posterior_speed.py", ("--images", "2", "--repeats", "1")),
    Benchmark("evaluation time", "bench/evaluation_time.py", ("--images", "5", "--repeats", "1")),
    Benchmark("app latency", "bench/app_latency.py", ("--repeats", "1", "--k-changes", "2", "--clicks", "2"),
              browser=True),
    Benchmark("page latency", "bench/page_latency.py", ("--repeats", "1"), browser=True),
    # its own results file goes to the temporary folder: the runner's file holds its output
    Benchmark("classroom load", "bench/load_sessions.py", ("--sessions", "5"),
              args=("--sessions", "30", "--lessons", "1", "--out", "{tmp}")),
    Benchmark("classroom load", "bench/load_sessions.py", ("--sessions", "5"),
              args=("--sessions", "30", "--lessons", "1", "--think", "10", "--class-images", "--out", "{tmp}")),
)


# ---- the rows every script writes with --json ---------------------------------------------------------------------


def bench_row(benchmark: str, metric: str, value: float, unit: str, target: float | None = None,
              target_kind: str | None = None, protocol: str = "") -> dict:
    """One headline figure. ``target_kind`` "max": met when value <= target; "min": met when value >= target."""
    if (target is None) != (target_kind is None) or target_kind not in (None, *TARGET_KINDS):
        raise ValueError(f"bad target {target!r} / target_kind {target_kind!r} for {metric!r}")
    return {"benchmark": benchmark, "metric": metric, "value": float(value), "unit": unit,
            "target": None if target is None else float(target), "target_kind": target_kind, "protocol": protocol}


def write_rows(path: Path | str, rows: list[dict]) -> None:
    """Write the rows as a JSON list (NaN allowed: a figure that could not be measured)."""
    Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def read_rows(path: Path) -> list[dict]:
    """The rows of a script's JSON file, checked; ValueError when malformed."""
    rows = json.loads(path.read_text())
    if not isinstance(rows, list):
        raise ValueError("not a JSON list")
    out = []
    for r in rows:
        if not isinstance(r, dict) or set(r) != set(ROW_KEYS):
            raise ValueError(f"row without exactly the keys {ROW_KEYS}: {r!r}")
        out.append(bench_row(**r))
    return out


def failure_row(benchmark: str, what: str, protocol: str) -> dict:
    return {**bench_row(benchmark, what, math.nan, "", protocol=protocol), "failed": True}


# ---- the table ------------------------------------------------------------------------------------------------------


def fmt_value(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-" if v is None else str(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_target(row: dict) -> str:
    if row["target"] is None:
        return ""
    return ("<= " if row["target_kind"] == "max" else ">= ") + f"{row['target']:g}"


def met(row: dict) -> str:
    if row.get("failed"):
        return "FAIL"
    target, value = row["target"], row["value"]
    if target is None:
        return ""
    if not math.isfinite(value):
        return "n/a"
    ok = value <= target if row["target_kind"] == "max" else value >= target
    return "yes" if ok else "NO"


def format_table(rows: list[dict]) -> str:
    """Aligned columns; the benchmark (and a protocol equal to the row above's) is shown once per group."""
    head = ("benchmark", "metric", "value", "unit", "target", "met?", "protocol")
    cells = []
    for i, r in enumerate(rows):
        same_group = i > 0 and rows[i - 1]["benchmark"] == r["benchmark"]
        cells.append((
            "" if same_group else r["benchmark"],
            r["metric"],
            "-" if r.get("failed") else fmt_value(r["value"]),
            r["unit"],
            fmt_target(r),
            met(r),
            "" if same_group and rows[i - 1]["protocol"] == r["protocol"] else r["protocol"],
        ))
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(head)]
    right = {2, 4}  # value, target

    def line(values) -> str:
        padded = (v.rjust(w) if j in right else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths, strict=True)))
        return "  ".join(padded).rstrip()

    out = [line(head), line("-" * w for w in widths)]
    for i, c in enumerate(cells):
        if i and c[0]:  # a blank line between benchmarks
            out.append("")
        out.append(line(c))
    return "\n".join(out)


LEGEND = ("target: <= at most, >= at least; met?: yes / NO against it (blank: no target, n/a: not measured); FAIL: the "
          "script failed, see its output below. A blank benchmark or protocol cell: the same as the row above.")


# ---- running the scripts --------------------------------------------------------------------------------------------


def run_script(cmd: list[str], timeout: float) -> tuple[int | None, str, str, float]:
    """(exit code or None on timeout, stdout, stderr, seconds). The script runs in its own process group, so a
    timeout or Ctrl-C ends it with everything it started (a streamlit server, a browser)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    out = err = ""
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except BaseException as exc:  # timeout or KeyboardInterrupt: end the script's process group
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        out, err, code = out or "", err or "", None
    return code, out, err, time.perf_counter() - started


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              env=os.environ | {"GIT_OPTIONAL_LOCKS": "0"}, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small repeat counts for every script")
    p.add_argument("--skip-browser", action="store_true",
                   help="leave out the benchmarks in a browser (app and page latency: they need chromium)")
    p.add_argument("--threads", type=int, default=None, help="passed to every script (default: each script's own)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per script before it is stopped")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder of the dated results file")
    args = p.parse_args(argv)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    selected = [b for b in BENCHMARKS if not (args.skip_browser and b.browser)]
    header = [f"# benchmarks {stamp} on {platform.node()}: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, python {platform.python_version()}, commit {git_commit()}",
              f"# load average {load_average()} at the start"]
    if args.quick:
        header.append("# QUICK RUN (--quick): small repeat counts, noisy figures; not a result to commit")
    if args.skip_browser:
        header.append("# --skip-browser: app latency and page latency not measured")

    rows, sections, failures = [], [], 0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for i, b in enumerate(selected, 1):
            extra = [*(a.format(tmp=tmp) for a in b.args), *(b.quick if args.quick else ()),
                     *(("--threads", str(args.threads)) if args.threads else ())]
            json_path = Path(tmp) / (Path(b.script).stem + ".json")
            shown = " ".join(["python", b.script, *map(shlex.quote, extra)])
            print(f"[{i}/{len(selected)}] {b.name}: {shown}", file=sys.stderr, flush=True)
            code, out, err, seconds = run_script([sys.executable, b.script, *extra, "--json", str(json_path)],
                                                 args.timeout)
            status = "timed out" if code is None else f"exit {code}"
            print(f"      {seconds:.0f} s, {status}", file=sys.stderr, flush=True)
            script_rows, problem = [], None
            if json_path.is_file():
                try:
                    script_rows = read_rows(json_path)
                except ValueError as exc:  # json.JSONDecodeError is a ValueError
                    problem = f"malformed JSON rows ({exc})"
            if code is None:
                problem = f"timed out after {args.timeout:.0f} s"
            elif code != 0:
                problem = f"script failed (exit {code})"
            elif not script_rows and problem is None:
                problem = "no JSON rows written (exit 0)"
            rows += script_rows
            if problem:
                failures += 1
                rows.append(failure_row(b.name, problem, f"`{shown}`: see its output below"))
            section = [f"## {b.name}: `{shown}` ({seconds:.0f} s, {status})", out.rstrip()]
            if problem:
                section += ["", f"[{problem}; the end of its stderr:]", err.rstrip()[-3000:]]
            sections.append("\n".join(section))

    header[1] += f", {load_average()} at the end"
    header = "\n".join(header)
    table = format_table(rows)
    print(f"\n{header}\n\n{table}\n\n{LEGEND}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}{'-quick' if args.quick else ''}.txt"
    for n in range(2, 100):  # never overwrite an earlier run of the same minute
        if not path.exists():
            break
        path = args.out / f"{stamp}{'-quick' if args.quick else ''}-{n}.txt"
    path.write_text("\n\n".join([header, table, LEGEND, *sections]) + "\n")
    print(f"\nwrote {path}" + (f"; {failures} script(s) failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
