"""``python -m bench``: run every benchmark and write the results table into BENCHMARKS.md.

    python -m bench                      # full sizes (long: 50k emulated agents); writes BENCHMARKS.md
    python -m bench --quick              # small sizes, a few minutes; prints the table only
    python -m bench --quick --only nsdi,accept_10k --output /tmp/b.md
    python -m bench --repeat 3           # each benchmark 3 times: median [min–max]
    python -m bench --load nsdi=run1.json --load nsdi=run2.json   # rows from saved --json output

Each benchmark runs as ``python -m bench.<name> … --json`` in its own process (a crash in one
does not take the others down) and prints one JSON object; :data:`BENCHES` turns it into
table rows (metric, anchor, target, measured, met). The exit status is 1 only when a
benchmark *breaks* (non-zero exit, no JSON); a missed target is a row saying so, not a failure.

The table goes between the ``bench:table`` markers at the top of BENCHMARKS.md (created
under the title the first time); everything else in the file, the history, is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import REPO, machine

BEGIN = "<!-- bench:table:begin (written by `python -m bench`; do not edit by hand) -->"
END = "<!-- bench:table:end -->"

# (metric, anchor, target text, value, unit, met or None)
Row = tuple[str, str, str, float | None, str, bool | None]


@dataclass
class Bench:
    name: str
    quick: list[str]
    full: list[str]
    rows: Callable[[dict[str, Any]], list[Row]]
    timeout_quick: float = 240
    timeout_full: float = 3600


def _le(v: float | None, bound: float) -> bool | None:
    return None if v is None else v <= bound


def _rows_allocator(r: dict[str, Any]) -> list[Row]:
    out = []
    for x in r["runs"]:
        a, f = x["agents"], x["frameworks"]
        anchor, bound = {(1000, 100): ("Mesos 1.8: ≈ 0.05 s", 0.05), (10000, 1000): ("Mesos 1.8: ≈ 1.1 s", 0.1),
                         (50000, 1000): ("—", 0.5)}[(a, f)]
        out.append((f"allocation cycle, in-process, {a:,} agents × {f:,} frameworks (steady)", anchor,
                    f"≤ {bound} s", x["steady_s"], "s", _le(x["steady_s"], bound)))
    return out


def _rows_launch(r: dict[str, Any]) -> list[Row]:
    if "default_split_ratio" in r:  # --targets: issue 14's pair from one run
        rows: list[Row] = []
        for key, what, bound in (("default", f"default isolation, work dir {r['work_dir']}", 0.6),
                                 ("posix_tmpfs", "posix, sandboxes on tmpfs", 0.8)):
            for mode, where in (("split", "agents in own process"), ("one_process", "master+agents one process")):
                v = r[f"{key}_{mode}_ratio"]
                rows.append((f"`/bin/true` tasks / raw spawn, {what}, {where} ({r['n']} tasks)",
                             f"raw asyncio spawn {r['raw_rate']:.0f}/s", f"≥ {bound}", v, "×", v >= bound))
        return rows
    return [
        (f"`/bin/true` tasks / raw spawn, agents in own process ({r['n']} tasks, {r['isolation']})",
         f"raw asyncio spawn {r['raw_rate']:.0f}/s", "≥ 0.6", r["split_ratio"], "×", r["split_ratio"] >= 0.6),
        (f"`/bin/true` tasks / raw spawn, master+agents one process ({r['n']} tasks)",
         "raw asyncio spawn", "≥ 0.6", r["one_process_ratio"], "×", r["one_process_ratio"] >= 0.6),
    ]


def _rows_latency(r: dict[str, Any]) -> list[Row]:
    v = r.get("accept_running_p50_s")
    return [(f"one task on an idle cluster, ACCEPT→TASK_RUNNING p50 ({r['isolation']}, sandboxes on {r['work_dir']})",
             "≈ 5 ms before (issue)", "≤ 3 ms", v, "s", _le(v, 0.003))]


def _rows_dask(r: dict[str, Any]) -> list[Row]:
    return [(f"Dask: {r['workers']} workers ready, MesosCluster / LocalCluster",
             f"LocalCluster {r['local_median_s']:.2f} s", "≤ 1.0×", r["ratio"], "×", r["ratio"] <= 1.0)]


def _rows_webui(r: dict[str, Any]) -> list[Row]:
    c = r.get("counts", {})
    size = f"{c.get('agents', '?')} agents, {c.get('tasks', '?')} tasks" if isinstance(c, dict) else ""
    out: list[Row] = [
        (f"utilization feed snapshot build ({size})", "—", "≤ 1 s", r["snapshot_build_s_median"], "s",
         _le(r["snapshot_build_s_median"], 1.0)),
        (f"`GET /master/utilization` ({size})", "—", "≤ 1 s", r["utilization_default"]["median_s"], "s",
         _le(r["utilization_default"]["median_s"], 1.0)),
    ]
    b = r.get("browser")
    if isinstance(b, dict):
        for k, v in b.items():
            if "plot" in k:
                out.append((f"web UI {k} in Chromium ({size})", "—", "≤ 1 s", v, "s", _le(v, 1.0)))
    return out


def _rows_dashboard(r: dict[str, Any]) -> list[Row]:
    c = r.get("counts", {})
    size = f"{c.get('agents', '?')} agents, {c.get('tasks', '?')} tasks" if isinstance(c, dict) else ""
    k = r["kernel_update"]["median_s"]
    out: list[Row] = [(f"`%mesos dashboard` one update in the kernel ({size})", "—", "—", k, "s", None)]
    if "plots_drawn_s_median" in r:
        v = r["plots_drawn_s_median"]
        out.append((f"`%mesos dashboard` cell → plots drawn, JupyterLab in Chromium ({size})", "—", "≤ 1 s", v, "s",
                    _le(v, 1.0)))
    return out


def _tuning(r: dict[str, Any]) -> str:
    """How the benchmark's master differed from the default one, if it did."""
    out = []
    if r.get("ui_feed") is False:
        out.append("UI feed off")
    if r.get("master_gc_threshold", "default") != "default":
        out.append(f"gc.set_threshold({r['master_gc_threshold']})")
    agents = ", agents without TASK_STARTING" if r.get("task_starting") is False else ""
    if r.get("framework_procs", 1) > 1:
        agents += f", frameworks in {r['framework_procs']} processes"
    if r.get("load_nice"):
        agents += f", agents' and frameworks' processes at nice {r['load_nice']}"
    return agents + ((", master: " + ", ".join(out)) if out else "")


def _rows_nsdi(r: dict[str, Any]) -> list[Row]:
    size = f"{r['agents']:,} emulated agents, {r['frameworks']} busy frameworks{_tuning(r)}"
    rss = r.get("master_peak_rss_bytes")
    gib = rss / 2**30 if rss else None
    p99 = r.get("offer_running_p99_s")
    slow = r.get("loop_slow_steps")
    # (the probe records steps over 20 ms of CPU: none recorded reads as 0.02 s, "at most")
    step = None if slow is None else max([0.02] + [x["cpu_s"] for x in slow])
    return [
        (f"task launch offer→TASK_RUNNING p99 ({size})", "Mesos NSDI'11: < 1 s at 50k", "p99 < 1 s", p99, "s",
         None if p99 is None else p99 < 1.0),
        (f"task launch offer→TASK_RUNNING p50 ({size})", "—", "—", r.get("offer_running_p50_s"), "s", None),
        (f"task launch REVIVE→TASK_RUNNING p99 ({size})", "—", "—", r.get("want_running_p99_s"), "s", None),
        (f"master peak RSS ({size})", "—", "< 4 GiB", gib, "GiB", None if gib is None else gib < 4),
        (f"master CPU, share of one core ({size})", "—", "—", r.get("master_cpu_share"), "cores", None),
        (f"allocation cycle in the live master, p50 ({size})", "—", "—", r.get("alloc_p50_s"), "s", None),
        (f"master event-loop longest stall ({size})", "—", "≤ 0.05 s", r.get("loop_max_gap_s"), "s",
         _le(r.get("loop_max_gap_s"), 0.05)),
        (f"task launches sustained ({size})", "—", "—", r.get("launch_rate_per_s"), "/s", None),
    ] + ([] if step is None else [
        (f"master event-loop longest step in its thread CPU, 0.02 s = none over it ({size})", "—", "≤ 0.05 s",
         step, "s", _le(step, 0.05))])


def _rows_state(r: dict[str, Any]) -> list[Row]:
    size = f"{r['agents']:,} agents, {r['tasks']:,} tasks{_tuning(r)}"
    out: list[Row] = []
    for doc, key, hammered in (("`/master/state`", "render", "hammered"), ("`GET_STATE`", "get_state",
                                                                          "get_state_hammered")):
        if f"{key}_p50_s" not in r:
            continue
        ratio = r.get("allocation_delay_ratio" + ("" if key == "render" else "_get_state"))
        out += [
            (f"{doc} request, render + transfer ({size})", "Mesos 1.7: 1.86 s", "≤ 0.5 s", r.get(f"{key}_p50_s"),
             "s", _le(r.get(f"{key}_p50_s"), 0.5)),
            (f"{doc} request, the master's CPU for it ({size})", "—", "—", r.get(f"{key}_master_cpu_p50_s"), "s",
             None),
            (f"REVIVE→offers while {doc} is hammered / quiet ({size})", "Mesos 1.7: blocked the master",
             "< 1.10×", ratio, "×", None if ratio is None else ratio < 1.1),
            (f"master event-loop longest stall, {doc} hammered ({size})", "—", "≤ 0.05 s",
             r.get(f"loop_max_gap_{hammered}_s"), "s", _le(r.get(f"loop_max_gap_{hammered}_s"), 0.05)),
        ]
    return out


def _rows_accept(r: dict[str, Any]) -> list[Row]:
    n = f"{r['tasks']:,}"
    return [
        (f"`/health` worst latency during one {n}-task ACCEPT", "3.25 s before (issue)", "≤ 0.1 s",
         r.get("health_max_s"), "s", _le(r.get("health_max_s"), 0.1)),
        (f"master event-loop longest stall, one {n}-task ACCEPT", "—", "≤ 0.05 s", r.get("loop_max_gap_s"), "s",
         _le(r.get("loop_max_gap_s"), 0.05)),
    ]


BENCHES: dict[str, Bench] = {b.name: b for b in (
    Bench("allocator_cycle", ["--quick"], [], _rows_allocator),
    Bench("accept_10k", ["--tasks", "10000"], ["--tasks", "10000"], _rows_accept),
    Bench("nsdi", ["--agents", "1000", "--frameworks", "20", "--duration", "20", "--warmup", "20"],
          ["--agents", "50000", "--frameworks", "200", "--duration", "60", "--warmup", "180"], _rows_nsdi),
    Bench("state_render", ["--agents", "1000", "--tasks", "10000", "--renders", "3", "--cycles", "4"],
          ["--agents", "10000", "--tasks", "100000"], _rows_state),
    Bench("webui_scale", ["--agents", "200", "--tasks", "2000", "--repeat", "2", "--no-browser"], [], _rows_webui),
    Bench("dashboard_scale", ["--agents", "300", "--tasks", "3000", "--repeat", "1"], [], _rows_dashboard),
    Bench("launch_throughput", ["-n", "200", "--isolation", "posix"], ["-n", "1000", "--targets"], _rows_launch),
    Bench("launch_latency", ["-n", "10"], ["-n", "40"], _rows_latency),
    Bench("dask_startup", ["--repeat", "1"], ["--repeat", "3"], _rows_dask),
)}
NEEDS_JSON_FLAG = {"launch_latency", "allocator_cycle", "accept_10k", "nsdi", "state_render", "launch_throughput", "dask_startup"}


def last_json(text: str) -> dict[str, Any]:
    """The last JSON object in ``text`` (one line, or an indented block ending the output)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                obj = json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError("no JSON object in the benchmark's output")


def run_one(b: Bench, quick: bool, extra: list[str]) -> tuple[dict[str, Any] | None, str]:
    args = list(b.quick if quick else b.full) + extra
    if b.name in NEEDS_JSON_FLAG:
        args.append("--json")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run([sys.executable, "-m", f"bench.{b.name}", *args], capture_output=True, text=True,
                           cwd=str(REPO), env=env, timeout=b.timeout_quick if quick else b.timeout_full)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
    try:
        return last_json(p.stdout), ""
    except ValueError as e:
        return None, str(e)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit in ("×", "cores"):
        return f"{v:.2f}{' cores' if unit == 'cores' else '×'}"
    if unit == "GiB":
        return f"{v:.2f} GiB"
    return f"{v:.0f} {unit}"


def combine(runs: list[list[Row]]) -> list[tuple[str, str, str, str, str]]:
    """Rows of several repeats -> (metric, anchor, target, 'median [min–max]', met)."""
    out = []
    for i, row in enumerate(runs[0]):
        metric, anchor, target, _, unit, _ = row
        vals = [r[i][3] for r in runs if i < len(r) and r[i][3] is not None]
        mets = [r[i][5] for r in runs if i < len(r)]
        if not vals:
            measured = "—"
        elif len(vals) == 1:
            measured = _fmt(vals[0], unit)
        else:
            measured = f"{_fmt(statistics.median(vals), unit)} [{_fmt(min(vals), unit)}–{_fmt(max(vals), unit)}]"
        if all(m is None for m in mets):
            met = ""
        else:
            met = "met" if all(m for m in mets if m is not None) else "**missed**"
        out.append((metric, anchor, target, measured, met))
    return out


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=str(REPO), timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=str(REPO), timeout=10).stdout.strip()
        return (rev or "?") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def render_table(rows: list[tuple[str, ...]], mach: str, date: str, commit: str,
                 quick: bool, broken: dict[str, str], loaded: list[str] | None = None) -> str:
    lines = [
        BEGIN,
        "## Summary (`python -m bench" + (" --quick" if quick else "") + "`)",
        "",
    ]
    if loaded:
        lines += [f"Taken from saved `--json` runs (`--load`; a run that names its date and commit shows "
                  f"them, else the table's): {', '.join(loaded)}. The machine column gives each run's load "
                  f"average.", ""]
    lines += [
        "| metric | anchor | target | measured (median [min–max]) | | machine | date | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric, anchor, target, measured, met, where, *when in rows:
        # a saved run names its own date and commit (``date``/``commit`` keys); else the table's
        d, c = (when[0] or date, when[1] or commit) if when else (date, commit)
        lines.append(f"| {metric} | {anchor} | {target} | {measured} | {met} | {where} | {d} | {c} |")
    for name, why in broken.items():
        lines.append(f"| {name}: **broke** ({why}) | | | | | {mach} | {date} | {commit} |")
    lines += ["", END]
    return "\n".join(lines)


def write_table(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + table + tail
    else:
        lines = text.splitlines(keepends=True)
        # after the title and its introductory paragraph
        i = 1
        while i < len(lines) and not lines[i].startswith("## "):
            i += 1
        text = "".join(lines[:i]) + table + "\n\n" + "".join(lines[i:])
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI): a few minutes in all")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each benchmark (median [min–max])")
    ap.add_argument("--output", help="markdown file to write the table into (default: BENCHMARKS.md for a "
                    "full run, none for --quick)")
    ap.add_argument("--load", action="append", default=[], metavar="NAME=FILE",
                    help="take NAME's result from FILE (its --json output, e.g. a long run made by "
                    "hand) instead of running it; repeatable")
    ap.add_argument("--save-dir", help="also write each benchmark's JSON result there (NAME-N.json)")
    ap.add_argument("--nsdi-agents", type=int, help="emulated agents for the NSDI run (default 50000; quick 1000)")
    a = ap.parse_args(argv)
    names = list(BENCHES)
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHES]
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}", file=sys.stderr)
            return 2
    if a.repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    loaded: dict[str, list[dict[str, Any]]] = {}
    for spec in a.load:
        name, _, path = spec.partition("=")
        if name not in BENCHES or not path:
            print(f"--load wants NAME=FILE with NAME one of: {', '.join(BENCHES)}", file=sys.stderr)
            return 2
        try:
            loaded.setdefault(name, []).append(last_json(Path(path).read_text()))
        except (OSError, ValueError) as e:
            print(f"--load {spec}: {e}", file=sys.stderr)
            return 2
    mach = machine()
    date = dt.date.today().isoformat()
    commit = _commit()
    rows: list[tuple[str, ...]] = []
    broken: dict[str, str] = {}
    for name in names:
        b = BENCHES[name]
        extra = ["--agents", str(a.nsdi_agents)] if name == "nsdi" and a.nsdi_agents else []
        results = list(loaded.get(name, []))
        runs: list[list[Row]] = [b.rows(r) for r in results]
        for i in range(0 if name in loaded else a.repeat):
            t0 = time.perf_counter()
            print(f"[bench] {name} ({i + 1}/{a.repeat}) …", file=sys.stderr, flush=True)
            res, why = run_one(b, a.quick, extra)
            if res is None:
                broken[name] = why
                print(f"[bench] {name} BROKE: {why}", file=sys.stderr, flush=True)
                break
            res.setdefault("date", date)
            res.setdefault("commit", commit)
            results.append(res)
            if a.save_dir:
                Path(a.save_dir).mkdir(parents=True, exist_ok=True)
                (Path(a.save_dir) / f"{name}-{i + 1}.json").write_text(json.dumps(res))
            try:
                runs.append(b.rows(res))
            except (KeyError, TypeError, ValueError) as e:
                broken[name] = f"unexpected result: {e!r}"
                break
            print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        # runs of different sizes or settings are different rows, repeats of one are combined;
        # the machine as each benchmark saw it (its load says how busy the box was)
        groups: dict[tuple[str, ...], list[tuple[dict[str, Any], list[Row]]]] = {}
        for res_, run in zip(results, runs, strict=False):
            groups.setdefault(tuple(x[0] for x in run), []).append((res_, run))
        for group in groups.values():
            seen = sorted({r["machine"] for r, _ in group if isinstance(r.get("machine"), str)})
            where = "; ".join(seen) if seen else mach
            dates = "; ".join(sorted({r["date"] for r, _ in group if isinstance(r.get("date"), str)}))
            commits = "; ".join(sorted({r["commit"] for r, _ in group if isinstance(r.get("commit"), str)}))
            rows += [(*row, where, dates, commits) for row in combine([run for _, run in group])]
    table = render_table(rows, mach, date, commit, a.quick, broken, sorted(loaded))
    print(table)
    out = a.output or (None if a.quick else str(REPO / "BENCHMARKS.md"))
    if out:
        write_table(Path(out), table)
        print(f"[bench] table written to {out}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
