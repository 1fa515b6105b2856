"""--harness-spread N: one scenario exploration as N shard items over pytest-xdist's workers, the
first failure winning (real servers, a nested pytest run as a user would start it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

BROKEN = "scenarios/bkci/explore_db_lock.yaml"  # expects a violation: a shard that finds it passes
FIXED = "scenarios/bkci/explore_db_lock_fixed.yaml"  # holds on every schedule


def _pytest(*args: str, tmp: Path, files: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", *files, "--backend", "postgres", "-rA", "-q",
                           "--harness-report", str(tmp / "report"), "-o", f"cache_dir={tmp / 'cache'}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_without_xdist_a_later_shard_does_not_start_after_a_failure(tmp_path: Path) -> None:
    done = _pytest("-p", "no:xdist", "--harness-spread", "2", tmp=tmp_path, files=(BROKEN,))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"PASSED {BROKEN}::postgres:explore[1/2]" in done.stdout
    assert done.stdout.count("SKIPPED") == 1 and ": shard 1/2 found the failure first" in done.stdout
    (merged,) = json.loads((tmp_path / "report" / "results.json").read_text())["outcomes"]
    assert (merged["scenario"], merged["shard"]) == ("bkci-explore-db-lock", None)
    assert merged["passed"] and merged["schedule"]


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


_RACES = """
def save(ctx):
    conn = ctx.connect()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM rules")
    if cur.fetchone()[0] == 0:
        cur.execute("INSERT INTO rules VALUES (1)")
    conn.commit()


def test_racy(race):
    race.setup("CREATE TABLE rules (n int)")
    race.teardown("DROP TABLE rules")
    race.actor("A", save)
    race.actor("B", save)
    race.check_sql("one", "SELECT count(*) FROM rules", equals=1)
    race.assert_no_race(max_schedules=60)


def test_serial(race):
    race.setup("CREATE TABLE rules (n int)")
    race.teardown("DROP TABLE rules")
    race.actor("A", save)
    race.check_sql("one", "SELECT count(*) FROM rules", equals=1)
    race.assert_no_race(max_schedules=5)
"""


def test_race_tests_are_spread_too(tmp_path: Path) -> None:
    (tmp_path / "test_races.py").write_text(_RACES)
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--backend", "postgres", "--harness-spread", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "FAILED test_races.py::test_racy[shard1of2-postgres]" in " ".join(lines)
    assert sum("found the failure first" in line for line in lines) == 1  # shard 2/2 did not start
    assert any("PASSED test_races.py::test_serial[shard1of2-postgres]" in line for line in lines)
    assert any("PASSED test_races.py::test_serial[shard2of2-postgres]" in line for line in lines)
    assert "pytest 'test_races.py::test_racy[postgres]' --harness-replay" in done.stdout  # runs without spreading
