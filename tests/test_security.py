"""Security of what the harness shows, stores, runs and starts (issue 12).

Passwords of DSNs never reach a file or a terminal; local servers refuse anyone without this run's
password; ``harness replay`` runs nothing but a harness or pytest replay; reports and terminal output
render hostile names and messages as text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from harness.dialect import ConnInfo
from harness.provision import Server
from harness.redact import mask_url, sanitize

from .conftest import ROOT, run_harness

SCENARIO = """\
name: sec-lost-update
setup: |
  CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
  INSERT INTO counter VALUES (1, 0);
teardown: DROP TABLE counter
sessions:
  a:
    steps:
      a_lock: {action: lock, args: {kind: redis, key: "sec:%(key)s", ttl_ms: 30000, timeout_ms: 20000}}
      a_read: SELECT n FROM counter WHERE id = 1
      a_write: UPDATE counter SET n = 1 WHERE id = 1
      a_unlock: {action: unlock, args: {kind: redis, key: "sec:%(key)s"}}
  b:
    steps:
      b_read: SELECT n FROM counter WHERE id = 1
      b_write: UPDATE counter SET n = 1 WHERE id = 1
checks:
  both_counted: {sql: SELECT n FROM counter WHERE id = 1, expect: {equals: 2}}
interleavings:
  - name: wrongly-expected
    steps: a_lock a_read b_read a_write b_write a_unlock
    expect: holds
explore:
  schedules: 20
  expect: "violates: both_counted"
"""


# -- masking and sanitising ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,masked", [
    ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("--pg-dsn=postgres://u:p@ss@127.0.0.1/x?sslmode=disable end", "--pg-dsn=postgres://u:***@127.0.0.1/x?sslmode=disable end"),
    ("mysql+pymysql://root:pw@h/ and redis://:pw2@h:6379/0", "mysql+pymysql://root:***@h/ and redis://:***@h:6379/0"),
    ("host=h password=s3cret user=u", "host=h password=*** user=u"),
    ("mysql://root@h:3306/ and http://h:80/a@b", "mysql://root@h:3306/ and http://h:80/a@b"),  # nothing to hide
])
def test_mask_url_masks_every_password(text: str, masked: str) -> None:
    assert mask_url(text) == masked


def test_conninfo_repr_and_redacted_hide_the_password() -> None:
    info = ConnInfo("postgresql", "h", 1, "u", "p@ss/wörd", "db")
    assert "p@ss" not in repr(info) and "p%40ss" not in info.redacted()
    assert info.redacted() == "postgresql://u:***@h:1/db" and "p%40ss" in info.dsn


def test_sanitize_neutralises_control_characters() -> None:
    hostile = "a\x1b[2J\x1b]0;title\x07b\x9b31mc\rd\x00e\tf\ng"
    out = sanitize(hostile)
    assert not any(ord(ch) < 32 and ch not in "\t\n" or 0x7f <= ord(ch) <= 0x9f for ch in out)
    assert out == "a\\x1b[2J\\x1b]0;title\\x07b\\x9b31mc\\x0dd\\x00e\tf\ng"


# -- local servers refuse anyone without this run's password --------------------------------------------

def _connects(server: Server, password: str) -> bool:
    info = dataclasses.replace(server.info, password=password)
    try:
        if server.service == "redis":
            client = redis.Redis(host=info.host, port=info.port, password=password or None, socket_timeout=5)
            try:
                return bool(client.set("sec:probe", "1"))
            finally:
                client.close()
        server.dialect.connect(info, connect_timeout=5).close()
        return True
    except (redis.AuthenticationError, redis.ResponseError):
        return False
    except Exception as exc:  # the drivers' auth errors: psycopg OperationalError, PyMySQL OperationalError
        assert "password" in str(exc).lower() or "access denied" in str(exc).lower(), exc
        return False


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_local_servers_need_this_runs_password(server_factory, service: str) -> None:
    server: Server = server_factory(service)
    password = server.info.password
    assert len(password) >= 32
    assert not _connects(server, "") and not _connects(server, "wrong-" + password[:8])
    assert _connects(server, password)
    other: Server = server_factory(service)  # another run: another password
    assert other.info.password != password and not _connects(other, password)
    proc = server.lifecycle.proc  # type: ignore[attr-defined]
    assert password not in Path(f"/proc/{proc.pid}/cmdline").read_text(errors="replace")  # `ps` shows argv
    assert server.lifecycle.rundir.stat().st_mode & 0o077 == 0  # type: ignore[attr-defined]
    if service == "postgres":  # stored as a verifier made by the harness, never as the password
        with server.dialect.connect(server.info) as conn:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$16:") and password not in stored


def test_restarted_servers_keep_their_password(server_factory) -> None:
    for service in ("postgres", "mysql", "redis"):
        server: Server = server_factory(service)
        server.kill()
        server.restart()
        assert _connects(server, server.info.password) and not _connects(server, "")


# -- no password in any file or output --------------------------------------------------------------------

def _files_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_dsn_passwords_reach_no_file_and_no_output(tmp_path: Path, pg_server: Server, redis_server: Server) -> None:
    """`harness run --report --json` and `pytest --harness-report --junitxml` with DSNs holding passwords
    (the shared servers' own credentials, and an unreachable MySQL DSN whose error is shown)."""
    mysql_password = "unreachable-" + os.urandom(8).hex()
    secrets = [pg_server.info.password, redis_server.info.password, mysql_password]
    assert all(secrets)
    pg_dsn = pg_server.info.dsn
    mysql_dsn = f"mysql://root:{mysql_password}@127.0.0.1:1/"
    (tmp_path / "scenarios").mkdir()
    scenario = tmp_path / "scenarios" / "sec.yaml"
    scenario.write_text(SCENARIO % {"key": os.urandom(4).hex()})
    env = {"PYTHONPATH": str(ROOT), "HARNESS_REDIS_URL": redis_server.info.dsn}

    run = run_harness("run", "scenarios/sec.yaml", "--backend", "postgres", "--pg-dsn", pg_dsn,
                      "--report", "run-report", "--json", "results.json", "-v", env=env, cwd=tmp_path)
    assert run.returncode == 1 and "FAIL" in run.stdout, run.stdout + run.stderr  # the wrong expectation
    unreachable = run_harness("run", "scenarios/sec.yaml", "--backend", "mysql", "--mysql-dsn", mysql_dsn,
                              env=env, cwd=tmp_path)
    assert unreachable.returncode == 2 and "mysql://root:***@127.0.0.1:1/" in unreachable.stderr, unreachable.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert "--pg-dsn postgresql://postgres:***@" in results["command"]
    (saved,) = (tmp_path / "reports" / "schedules").glob("*.json")  # the exploration's minimal schedule
    replayed = run_harness("replay", str(saved), env={**env, "HARNESS_PG_DSN": pg_dsn, "HARNESS_BACKENDS": "postgres"},
                           cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "violation of both_counted in the replayed schedule" in replayed.stdout, replayed.stdout

    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "scenarios/sec.yaml", "--backend", "postgres,mysql",
         f"--pg-dsn={pg_dsn}", "--mysql-dsn", mysql_dsn, "--harness-report", "pytest-report",
         "--junitxml", "junit.xml", "-rA"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env}, timeout=300)
    assert test.returncode == 1, test.stdout + test.stderr
    junit = (tmp_path / "junit.xml").read_text()
    assert "wrongly-expected" in junit and "mysql://root:***@127.0.0.1:1/" in junit
    assert (tmp_path / "run-report" / "report.html").is_file() and (tmp_path / "pytest-report" / "report.html").is_file()
    written = _files_text(tmp_path)
    for secret in secrets:
        for where, text in [("harness run stdout", run.stdout), ("harness run stderr", run.stderr),
                            ("unreachable DSN error", unreachable.stdout + unreachable.stderr),
                            ("harness replay", replayed.stdout + replayed.stderr),
                            ("pytest stdout", test.stdout), ("pytest stderr", test.stderr), ("files", written)]:
            assert secret not in text, f"a password reached {where}"
