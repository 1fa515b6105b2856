"""The benchmarks run: every registered benchmark in quick mode, as CI would run it.

Quick-mode numbers mean nothing and are not asserted; what is asserted is that each benchmark
completes through the public entry point, that it measured its harness rows and (where it has one)
its baseline in the same run, and that the JSON file carries the run's metadata.  A benchmark that
wraps harness internals breaks here, not months later.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.core import Figure, RunInfo
from benchmarks.registry import BENCHMARKS, NO_BASELINE
from benchmarks.report import regenerate

from .conftest import ROOT


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and len(data["commit"].split("+")[0]) == 40
    assert {"cores", "python", "postgres", "mariadb", "redis"} <= set(data["machine"])
    run = RunInfo.from_json(data)
    for name in BENCHMARKS:
        figures = [f for f in run.figures if f.benchmark == name]
        assert figures, f"{name} returned no figures"
        if name not in NO_BASELINE:
            assert any(f.baseline is not None for f in figures), f"{name}: no baseline measured in the run"
    for f in data["figures"]:
        assert {"name", "unit", "value", "baseline", "ratio"} <= set(f)


def test_compare_prints_the_ratio_of_two_runs(tmp_path: Path) -> None:
    def write(path: Path, value: float) -> None:
        RunInfo("c" * 40, "2026-01-01", {}, "test", True, [Figure("b", "rate", "1/s", value)]).write(path)
    write(tmp_path / "a.json", 50.0)
    write(tmp_path / "b.json", 75.0)
    done = subprocess.run([sys.executable, "-m", "benchmarks", "compare", str(tmp_path / "a.json"),
                           str(tmp_path / "b.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("b "))
    assert row.split()[2:6] == ["50", "75", "1.5", "1/s"]


def test_report_rewrites_only_the_generated_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    doc.write_text("# prose kept\n<!-- BEGIN GENERATED run -->\nold\n<!-- END GENERATED run -->\nmiddle prose\n"
                   "<!-- BEGIN GENERATED b -->\nold table\n<!-- END GENERATED b -->\n"
                   "<!-- BEGIN GENERATED other -->\nkept table\n<!-- END GENERATED other -->\n")
    run = RunInfo("d" * 40, "2026-01-02", {"cores": 2}, "python -m benchmarks b", False,
                  [Figure("b", "rate", "1/s", 80.0, 40.0, "threads")])
    assert regenerate(run, doc) == ["run", "b"]
    text = doc.read_text()
    assert "# prose kept" in text and "middle prose" in text and "kept table" in text
    assert "\nold\n" not in text and "old table" not in text and "dddddddddddd" in text
    assert "| rate | 80 | 1/s | 40 (threads) | 2 |" in text
