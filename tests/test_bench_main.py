"""``python -m bench``: the runner CI uses (one fast benchmark, for real) and its table writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.__main__ import BEGIN, END, combine, last_json, write_table

REPO = Path(__file__).resolve().parent.parent


def test_quick_run_of_one_benchmark_writes_its_rows(tmp_path):
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n\nIntro.\n\n## History\n\nold figures\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "accept_10k", "--output", str(out)],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    text = out.read_text()
    assert "`/health` worst latency during one 10,000-task ACCEPT" in text
    assert "old figures" in text and text.index(END) < text.index("## History")
    row = next(line for line in text.splitlines() if "`/health` worst latency" in line)
    assert " s |" in row and "—" not in row.split("|")[4]  # a measured figure, not a blank


def test_unknown_benchmark_is_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert p.returncode == 2 and "unknown benchmark(s): nope" in p.stderr


def test_table_replaced_in_place_and_history_kept(tmp_path):
    f = tmp_path / "B.md"
    f.write_text("# Benchmarks\n\nIntro.\n\n## Old section\n\nkept\n")
    write_table(f, f"{BEGIN}\nfirst\n{END}")
    write_table(f, f"{BEGIN}\nsecond\n{END}")
    text = f.read_text()
    assert text.count(BEGIN) == 1 and "second" in text and "first" not in text
    assert text.index("Intro.") < text.index(BEGIN) < text.index("## Old section") and "kept" in text


def test_repeats_give_median_and_range_and_a_miss_is_reported():
    runs = [[("m", "a", "≤ 1 s", v, "s", v <= 1)] for v in (0.5, 2.0, 0.7)]
    (metric, _, _, measured, met), = combine(runs)
    assert measured == "0.700 s [0.500 s–2.000 s]" and met == "**missed**"


def test_last_json_reads_one_line_or_an_indented_block():
    assert last_json('noise\n{"a": 1}\n') == {"a": 1}
    assert last_json('x\n{\n  "b": [1,\n 2]\n}\n') == {"b": [1, 2]}
