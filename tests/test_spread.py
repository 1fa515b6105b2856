"""--harness-spread N: one scenario exploration as N shard items over pytest-xdist's workers, the
first failure winning (real servers, a nested pytest run as a user would start it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

BROKEN = "scenarios/bkci/explore_db_lock.yaml"  # expects a violation: a shard that finds it passes
FIXED = "scenarios/bkci/explore_db_lock_fixed.yaml"  # holds on every schedule


def _pytest(*args: str, tmp: Path, files: tuple[str, ...] = (BROKEN, FIXED)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", *files, "--backend", "postgres", "-rA", "-q",
                           "--harness-report", str(tmp / "report"), "-o", f"cache_dir={tmp / 'cache'}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_without_xdist_a_later_shard_does_not_start_after_a_failure(tmp_path: Path) -> None:
    done = _pytest("-p", "no:xdist", "--harness-spread", "2", tmp=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"PASSED {BROKEN}::postgres:explore[1/2]" in done.stdout
    assert done.stdout.count("SKIPPED") == 1 and ": shard 1/2 found the failure first" in done.stdout
    assert f"PASSED {FIXED}::postgres:explore[1/2]" in done.stdout and f"PASSED {FIXED}::postgres:explore[2/2]" in done.stdout
    merged = json.loads((tmp_path / "report" / "results.json").read_text())["outcomes"]
    assert [(o["scenario"], o["shard"]) for o in merged] == [("bkci-explore-db-lock", None),
                                                            ("bkci-explore-db-lock-fixed", None)]
    assert merged[0]["passed"] and merged[0]["schedule"] and merged[1]["passed"]


def test_under_xdist_the_shards_run_on_the_workers_and_the_first_failure_wins(tmp_path: Path) -> None:
    done = _pytest("-n", "2", "--harness-spread", "2", tmp=tmp_path, files=(BROKEN,))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    passed = [line for line in lines if line.startswith(f"PASSED {BROKEN}::postgres:explore[")]
    stopped = [line for line in lines if line.startswith("SKIPPED") and "found the failure first" in line]
    assert len(passed) >= 1 and len(passed) + len(stopped) == 2, lines[-8:]  # the loser may have found its own
    (merged,) = json.loads((tmp_path / "report" / "results.json").read_text())["outcomes"]
    assert merged["passed"] and merged["schedule"] and merged["shard"] is None


def test_a_spread_below_two_is_a_usage_error(tmp_path: Path) -> None:
    done = _pytest("-p", "no:xdist", "--harness-spread", "1", tmp=tmp_path, files=(FIXED,))
    assert done.returncode == 4 and "--harness-spread 1: give the number of shards, at least 2." in done.stderr
