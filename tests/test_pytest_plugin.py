"""The pytest plugin as users run it: xdist sharing, per-test databases, errors instead of skips."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

_SUITE = textwrap.dedent("""
    import json, os
    import pytest
    from harness.dialect import execute

    @pytest.mark.parametrize("i", range(6))
    def test_record(pg_server, pg_database, i):
        with pg_database.connect() as conn:
            started = str(execute(conn, "SELECT pg_postmaster_start_time()")[0][0])
            execute(conn, "CREATE TABLE t (i int)")   # would collide if databases were shared
        out = os.environ["RECORD_DIR"]
        with open(os.path.join(out, f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{i}.json"), "w") as f:
            json.dump({"port": pg_server.info.port, "started": started, "db": pg_database.name}, f)
""")


def _run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_xdist_workers_share_one_server_and_it_stops_after(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(_SUITE)
    records = tmp_path / "records"
    records.mkdir()
    done = _run_pytest(tmp_path, "-n", "2", "--backend=postgres", env={"RECORD_DIR": str(records)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(p.read_text()) for p in records.iterdir()]
    workers = {p.name.split("-")[0] for p in records.iterdir()}
    assert len(rows) == 6 and workers == {"gw0", "gw1"}
    assert len({(r["port"], r["started"]) for r in rows}) == 1, "workers saw different servers"
    assert len({r["db"] for r in rows}) == 6, "a database was shared between tests"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", rows[0]["port"])) != 0, "server still listening after the run"


def test_a_backend_that_cannot_start_is_an_error_not_a_skip(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text("def test_db(database):\n    pass\n")
    done = _run_pytest(tmp_path, "--backend=postgres", "-rA",
                       env={"HARNESS_PROVISIONER": "local", "HARNESS_PG_BINDIR": str(tmp_path / "nothing"), "CI": "true"})
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout and "skipped" not in done.stdout
    assert "PostgreSQL server binaries (postgres and initdb) were not found" in done.stdout


def test_the_same_error_reaches_xdist_workers(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text("def test_db(database):\n    pass\n")
    done = _run_pytest(tmp_path, "-n", "2", "--backend=postgres",
                       env={"HARNESS_PROVISIONER": "local", "HARNESS_PG_BINDIR": str(tmp_path / "nothing")})
    assert done.returncode == 1
    assert "were not found" in done.stdout and "skipped" not in done.stdout


_RACE = textwrap.dedent("""
    def test_counter(race):
        race.setup("CREATE TABLE c (n int)")
        race.teardown("DROP TABLE c")
        def bump(ctx):
            conn = ctx.connect()
            conn.cursor().execute("INSERT INTO c VALUES (1)")
            conn.commit()
        race.actor("A", bump)
        race.actor("B", bump)
        race.assert_no_race(max_schedules=5)
""")


def test_a_replay_that_cannot_be_followed_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_race.py").write_text(_RACE)
    done = _run_pytest(tmp_path, "--backend=postgres", "--harness-replay", "A A A A A A A A B")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "move 4 is 'A', but only B can move there (A has already finished)" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


_FAILING_RACE = textwrap.dedent("""
    from harness.dialect import execute

    def test_lost_update(race):
        race.setup("CREATE TABLE c (n int)")
        race.setup("INSERT INTO c VALUES (0)")
        race.teardown("DROP TABLE c")
        def bump(ctx):
            conn = ctx.connect()
            cur = conn.cursor()
            cur.execute("SELECT n FROM c")
            n = cur.fetchone()[0]
            cur.execute(f"UPDATE c SET n = {n + 1}")
            conn.commit()
        race.actor("A", bump)
        race.actor("B", bump)
        race.check_sql("two", "SELECT n FROM c", equals=2)
        race.assert_no_race(max_schedules=30)
""")


def test_the_report_shows_race_tests_with_their_minimal_schedule(tmp_path: Path) -> None:
    """``--harness-report`` reports race-fixture tests too: the failing one with its minimal schedule,
    trace and the pytest command replaying it; the passing one with its schedule count."""
    (tmp_path / "test_races.py").write_text(_FAILING_RACE + _RACE)
    done = _run_pytest(tmp_path, "--backend=postgres", "-n", "2", "--harness-report", str(tmp_path / "rep"))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    by_test = {o["scenario"].split("::")[-1]: o for o in results["outcomes"]}
    assert set(by_test) == {"test_lost_update[postgres]", "test_counter[postgres]"}, by_test.keys()
    lost, counter = by_test["test_lost_update[postgres]"], by_test["test_counter[postgres]"]
    assert not lost["passed"] and "check two violated: expected 2, got 1" in lost["problems"], lost
    assert lost["schedule"] and lost["trace"], lost
    assert lost["replay_command"][:2] == ["pytest", "test_races.py::test_lost_update[postgres]"], lost
    assert counter["passed"] and counter["schedules_run"] == 5, counter
