"""DSN mode leaves nothing behind: killed runs' databases are swept by the next run or `harness clean`.

Each test starts a private local server through the harness API and points a DSN at it, so sweeping
(and `clean --all`) cannot touch the suite's shared servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.dialect import execute
from harness.errors import ProvisionError
from harness.provision import Server
from harness.provision.dsn import attach_dsn
from harness.provision.owner import owner_of

from .conftest import ROOT, run_harness, wait_until

_CREATOR = textwrap.dedent("""
    import sys
    from harness.provision.dsn import attach_dsn
    server = attach_dsn(sys.argv[1], sys.argv[2])
    print(" ".join(server.create_database().name for _ in range(2)), flush=True)
    sys.stdin.read()  # until killed
""")


def _dsn(server: Server) -> str:
    return server.info.with_db(server.dialect.admin_db).dsn


def _names(server: Server) -> set[str]:
    with server.admin() as admin:
        return set(server.dialect.list_databases(admin, ""))


def _create(server: Server, name: str) -> None:
    with server.admin() as admin:
        execute(admin, f"CREATE DATABASE {name}")


def _killed_run_leftovers(backend: str, url: str, sig: int = signal.SIGKILL) -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", _CREATOR, backend, url], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        names = child.stdout.readline().split()  # type: ignore[union-attr]
        assert len(names) == 2, "the child did not create its databases"
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    return names


def test_databases_of_a_killed_run_are_swept_by_the_next_attach(server_factory, backend) -> None:
    owner = server_factory(backend)
    url = _dsn(owner)
    precious = f"precious_{os.getpid()}"
    legacy = "harness_0123456789ab"  # an older harness's name: no owner, so never swept automatically
    for name in (precious, legacy):
        _create(owner, name)
    live = attach_dsn(backend, url)
    mine = live.create_database()  # its owner (this process) is alive: kept
    leftovers = _killed_run_leftovers(backend, url)
    assert all(owner_of(n) and owner_of(n).pid != os.getpid() for n in leftovers)  # type: ignore[union-attr]
    assert set(leftovers) <= _names(owner), "the killed run's databases should still be there"
    attach_dsn(backend, url)  # the next run's start sweeps
    names = _names(owner)
    assert not set(leftovers) & names
    assert {precious, legacy, mine.name} <= names
    live.stop()
    assert mine.name not in _names(owner)


def test_harness_clean_drops_stale_then_all_and_says_what(server_factory, backend) -> None:
    owner = server_factory(backend)
    url = _dsn(owner)
    option = "--pg-dsn" if backend == "postgres" else "--mysql-dsn"
    precious = f"precious_{os.getpid()}"
    legacy = "harness_legacy_db"
    for name in (precious, legacy):
        _create(owner, name)
    leftovers = _killed_run_leftovers(backend, url)
    done = run_harness("clean", option, url)
    assert done.returncode == 0, done.stderr
    for name in leftovers:
        assert f"dropped {name} (pid " in done.stdout, done.stdout
    assert legacy in _names(owner) and not set(leftovers) & _names(owner)
    done = run_harness("clean", option, url, "--all")
    assert done.returncode == 0, done.stderr
    assert f"dropped {legacy} (no owner recorded)" in done.stdout, done.stdout
    names = _names(owner)
    assert precious in names and not any(n.startswith("harness_") for n in names)


def test_harness_clean_without_a_dsn_is_a_usage_error() -> None:
    done = run_harness("clean", env={"HARNESS_PG_DSN": "", "HARNESS_MYSQL_DSN": ""})
    assert done.returncode == 2 and "needs a server" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_in_dsn_mode_drops_the_runs_databases(server_factory, tmp_path: Path) -> None:
    owner = server_factory("postgres")
    scenario = tmp_path / "slow.yaml"
    scenario.write_text("backends: [postgres]\nsessions:\n  a:\n    steps: {a1: SELECT pg_sleep(120)}\n")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(scenario), "--backend", "postgres",
                             "--pg-dsn", _dsn(owner)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def sleeping() -> bool:
            with owner.admin() as admin:
                return bool(execute(admin, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"))
        wait_until(lambda: sleeping() or proc.poll() is not None, timeout=60, what="the step to run")
        assert proc.poll() is None, proc.communicate()
        made = [n for n in _names(owner) if (o := owner_of(n)) is not None and o.pid == proc.pid]
        assert made, "the run created no database of its own"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert not set(made) & _names(owner)


def test_mysql_dsn_without_lock_instrumentation_is_refused_with_what_to_enable(server_factory) -> None:
    bare = server_factory("mysql", options={"performance_schema": "OFF", "innodb_status_output_locks": "OFF"})
    with pytest.raises(ProvisionError) as info:
        attach_dsn("mysql", _dsn(bare))
    message = str(info.value)
    assert "performance_schema is OFF" in message and "innodb_status_output_locks is OFF" in message
    assert "SET GLOBAL innodb_status_output_locks=ON" in message and "\n" not in message
    doctor = run_harness("doctor", "--quick", "--backend", "mysql", "--mysql-dsn", _dsn(bare))
    assert doctor.returncode == 1 and "performance_schema is OFF" in doctor.stdout, doctor.stdout
    with bare.admin() as admin:  # one fixed, one left: the message names only what is missing
        execute(admin, "SET GLOBAL innodb_status_output_locks = ON")
    with pytest.raises(ProvisionError, match="performance_schema is OFF") as info:
        attach_dsn("mysql", _dsn(bare))
    assert "innodb_status_output_locks" not in str(info.value)


def test_mysql_dsn_with_the_mdl_instrument_off_says_how_to_turn_it_on(server_factory) -> None:
    server = server_factory("mysql", options={"performance_schema_instrument": "wait/lock/metadata/sql/mdl=OFF"})
    with pytest.raises(ProvisionError, match="instrument wait/lock/metadata/sql/mdl is disabled"):
        attach_dsn("mysql", _dsn(server))
    with server.admin() as admin:
        execute(admin, "UPDATE performance_schema.setup_instruments SET ENABLED = 'YES', TIMED = 'YES' "
                       "WHERE NAME = 'wait/lock/metadata/sql/mdl'")
    attach_dsn("mysql", _dsn(server)).stop()  # now accepted
