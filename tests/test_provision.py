"""Provisioning against real local servers: start/stop, isolation, DSN safety, orphans, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis

from harness.dialect import execute
from harness.errors import ProvisionError
from harness.provision import Server
from harness.provision.binaries import find_mysql, find_postgres, find_redis
from harness.provision.dsn import attach_dsn
from harness.provision.local import sweep_stale_rundirs

from .conftest import ROOT, pid_alive, run_harness, wait_until


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_local_server_starts_answers_and_stops_cleanly(server_factory, service: str) -> None:
    server: Server = server_factory(service)
    proc = server.lifecycle.proc  # type: ignore[attr-defined]
    rundir: Path = server.lifecycle.rundir  # type: ignore[attr-defined]
    assert server.info.host == "127.0.0.1"
    assert rundir.is_dir()
    if service == "redis":
        client = redis.Redis(host=server.info.host, port=server.info.port, password=server.info.password or None)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
    else:
        with server.dialect.connect(server.info) as conn:
            assert execute(conn, "SELECT 1 + 1")[0][0] == 2
        assert server.flavor in {"postgres": ("postgres",), "mysql": ("mariadb", "mysql")}[service]
    server.stop()
    assert proc.poll() is not None, "server process still running after stop()"
    assert not rundir.exists(), "temp dir left behind after stop()"


def test_database_fixture_writes_a_row(database) -> None:
    """First half of the isolation pair: leaves a table with a row behind in its database."""
    with database.connect() as conn:
        execute(conn, "CREATE TABLE leftover (id int)")
        execute(conn, "INSERT INTO leftover VALUES (1)")
        assert execute(conn, "SELECT count(*) FROM leftover")[0][0] == 1


def test_next_test_gets_a_fresh_database(database) -> None:
    """Second half: whatever the previous test wrote is not here."""
    with database.connect() as conn:
        with pytest.raises(Exception) as err:
            execute(conn, "SELECT count(*) FROM leftover")
    assert database.dialect.error_code(err.value) in ("42P01", "1146")  # undefined table, both backends


def test_databases_of_one_server_are_isolated(server_pool, backend) -> None:
    server = server_pool.get(backend)
    first, second = server.create_database(), server.create_database()
    try:
        with first.connect() as conn:
            execute(conn, "CREATE TABLE t (id int)")
            execute(conn, "INSERT INTO t VALUES (1)")
        with second.connect() as conn:
            with pytest.raises((psycopg.Error, pymysql.MySQLError)):
                execute(conn, "SELECT * FROM t")
    finally:
        first.drop()
        second.drop()
    assert first.name not in server.created and second.name not in server.created


def test_dsn_mode_drops_only_what_it_created(server_pool, backend) -> None:
    owner = server_pool.get(backend)
    precious = f"precious_{os.getpid()}"
    with owner.admin() as admin:
        owner.dialect.drop_database(admin, precious)
        execute(admin, f"CREATE DATABASE {precious}")
    try:
        url = owner.info.with_db(owner.dialect.admin_db).dsn
        attached = attach_dsn(backend, url)
        assert attached.provisioner == "dsn"
        made = attached.create_database()
        assert made.name.startswith("harness_")
        with pytest.raises(ProvisionError, match="did not create it"):
            attached.drop_database(precious)
        attached.stop()  # drops what it created, nothing else
        with owner.admin() as admin:
            names = owner.dialect.list_databases(admin, "")
        assert precious in names
        assert made.name not in names
        assert not any(n in names for n in attached.created)
    finally:
        with owner.admin() as admin:
            owner.dialect.drop_database(admin, precious)


def test_kill_and_restart_keep_committed_data(server_factory, backend) -> None:
    server = server_factory(backend)
    db = server.create_database()
    with db.connect() as conn:
        execute(conn, "CREATE TABLE t (id int)")
        execute(conn, "INSERT INTO t VALUES (42)")
    port, pid = server.info.port, server.lifecycle.proc.pid  # type: ignore[attr-defined]
    server.kill()
    assert not pid_alive(pid)
    server.restart()
    assert server.info.port == port
    with db.connect() as conn:
        assert execute(conn, "SELECT id FROM t")[0][0] == 42


_ORPHAN_SCRIPT = textwrap.dedent("""
    import json, sys
    from harness.config import load_settings
    from harness.provision.local import start_local
    settings = load_settings()
    servers = [start_local(s, settings) for s in ("postgres", "mysql", "redis")]
    print(json.dumps([[s.lifecycle.proc.pid, str(s.lifecycle.rundir)] for s in servers]), flush=True)
    sys.stdin.read()  # block until killed
""")


def test_sigkilled_harness_leaves_no_server_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        assert line, "the child did not start its servers"
        started = json.loads(line)
        pids = [pid for pid, _ in started]
        assert all(pid_alive(p) for p in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        wait_until(lambda: not any(pid_alive(p) for p in pids), what=f"servers {pids} to exit")
        # their temp dirs are swept by the next harness start
        sweep_stale_rundirs()
        assert not any(Path(d).exists() for _, d in started)
    finally:
        if child.poll() is None:
            child.kill()


def test_missing_binaries_give_a_clear_error(tmp_path: Path) -> None:
    for finder in (find_postgres, find_mysql, find_redis):
        with pytest.raises(ProvisionError, match="apt-get install") as err:
            finder(str(tmp_path))
        assert str(tmp_path) in str(err.value)
    env = {"PATH": str(tmp_path), "HARNESS_PG_BINDIR": str(tmp_path / "bogus"),
           "HARNESS_MYSQL_BINDIR": str(tmp_path / "bogus"), "HARNESS_PROVISIONER": "local"}
    done = run_harness("doctor", "--quick", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "PostgreSQL server binaries (postgres and initdb) were not found" in done.stdout
    assert "apt-get install -y postgresql" in done.stdout
    assert "NOT all work" in done.stdout


def test_unreachable_dsn_is_a_one_paragraph_error() -> None:
    with pytest.raises(ProvisionError, match="cannot connect to the postgres server at postgresql://u:\\*\\*\\*@127.0.0.1:1/"):
        attach_dsn("postgres", "postgresql://u:secret@127.0.0.1:1/x")
    with pytest.raises(ProvisionError, match="cannot read the mysql URL"):
        attach_dsn("mysql", "not a url")


def test_pg_databases_come_from_the_template(pg_server) -> None:
    assert pg_server.template and pg_server.template.startswith("harness_template_")
    db = pg_server.create_database()
    try:
        with db.connect() as conn:
            assert execute(conn, "SELECT current_database()")[0][0] == db.name
    finally:
        db.drop()


def test_mysql_server_has_the_lock_instruments(mysql_server) -> None:
    with mysql_server.admin() as conn:
        assert execute(conn, "SELECT @@performance_schema")[0][0] == 1
        rows = execute(conn, "SELECT ENABLED FROM performance_schema.setup_instruments "
                             "WHERE NAME = 'wait/lock/metadata/sql/mdl'")
        assert rows == [("YES",)]


def test_pymysql_connections_skip_tls_on_loopback(mysql_server) -> None:
    with mysql_server.admin() as conn:
        assert isinstance(conn, pymysql.connections.Connection)
        assert conn.ssl is False
