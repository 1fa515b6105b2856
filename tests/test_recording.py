"""`harness record` / `harness import` (docs/recording.md): real runs on real servers become scenarios
that replay the recorded order and explore the recorded sessions; bad logs are exit-2 errors."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.dialect import dialect_for, execute
from harness.record.capture import PG_SERVER_OPTIONS
from harness.record.pglog import parse_csvlog, parse_parameters
from harness.record.statements import inline_parameters
from scenarios.kinto.two_creates import DATA

from .conftest import ROOT, run_harness

HERE = ROOT / "tests" / "recording"
#: --checks takes the checks of any scenario file: those of the systems' own explored scenarios
BKCI_CHECKS, KINTO_CHECKS = "scenarios/bkci/explore_db_lock.yaml", "scenarios/kinto/explore.yaml"
BACKENDS = ["postgres", "mysql"]


def _record(out: Path, backend: str, *command: str, checks: str | None = None, expect: str | None = None,
            schedules: int = 30) -> tuple[dict[str, Any], str]:
    args = ["record", "--backend", backend, "-o", str(out), "--schedules", str(schedules)]
    args += ["--checks", str(ROOT / checks)] if checks else []
    args += ["--expect", expect] if expect else []
    done = run_harness(*args, "--", sys.executable, *command)
    assert done.returncode == 0, done.stdout + done.stderr
    return yaml.safe_load(out.read_text()), done.stderr


def _run(path: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    results = path.with_suffix(".json")
    done = run_harness("run", str(path), "--json", str(results), *extra)
    outcomes = json.loads(results.read_text())["outcomes"] if results.exists() else []
    return done.returncode, outcomes, done.stdout + done.stderr


def _steps(scenario: dict[str, Any], session: str) -> list[str]:
    return [str(v) for v in scenario["sessions"][session]["steps"].values()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_recorded_racy_rule_service_replays_and_exploration_finds_the_duplicate(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "racy.yaml"
    scenario, _ = _record(out, backend, "-m", "scenarios.bkci.two_requests", "unlock-before-commit",
                          checks=BKCI_CHECKS, expect="violates: one_rule")
    assert list(scenario["sessions"]) == ["a", "b"]  # the schema connection went into setup
    assert "CREATE TABLE sharding_routing_rule" in scenario["setup"]
    for session in ("a", "b"):  # parameters inlined: no placeholder left
        assert any(s.startswith("INSERT INTO sharding_routing_rule") and "'r1'" in s for s in _steps(scenario, session))
        assert not any("%s" in s or "$1" in s for s in _steps(scenario, session))
    order = scenario["interleavings"][0]["steps"].split()
    sql_of = {name: sql for session in scenario["sessions"].values() for name, sql in session["steps"].items()}
    commits = [name for name in order if sql_of[name] == "COMMIT"]
    # one request committed last, after the other's whole run, as the incident had it
    assert len(commits) == 2 and commits[-1] == order[-1] and commits[0][0] != commits[1][0]
    code, outcomes, text = _run(out)
    assert code == 0, text
    by_kind = {o["kind"]: o for o in outcomes}
    assert by_kind["interleaving"]["label"] == "recorded" and by_kind["interleaving"]["violated"] == ["one_rule"]
    assert by_kind["exploration"]["violated"] == ["one_rule"] and by_kind["exploration"]["passed"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_recorded_fixed_rule_service_passes_every_explored_schedule(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "fixed.yaml"
    scenario, _ = _record(out, backend, "-m", "scenarios.bkci.two_requests", "commit-inside-lock",
                          checks=BKCI_CHECKS)
    # the second request counted the first's committed rule, so it sent no INSERT: the recording holds
    # the branch the application took (sessions are named in order of their first statement)
    assert sorted(sum(s.startswith("INSERT") for s in _steps(scenario, name)) for name in "ab") == [0, 1]
    code, outcomes, text = _run(out)
    assert code == 0, text
    exploration = next(o for o in outcomes if o["kind"] == "exploration")
    assert exploration["passed"] and exploration["violated"] == [] and exploration["schedules_run"] > 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_recorded_kinto_insert_pair_replays_with_its_data_quoted_exactly(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "kinto.yaml"
    scenario, _ = _record(out, backend, "-m", "scenarios.kinto.two_creates", checks=KINTO_CHECKS)
    inserts = [s for name in ("a", "b") for s in _steps(scenario, name) if s.startswith("INSERT INTO objects")]
    assert len(inserts) == 4
    literal = dialect_for(backend).quote_literal(json.dumps(DATA))  # read back unchanged: test_quote_literal_…
    assert sum(s.endswith(f"'record', {literal})") for s in inserts) == 2, inserts
    if backend == "mysql":  # the trigger's own SELECT … INTO is logged too, but is not the client's
        assert not any("INTO prev_stamp" in s for name in ("a", "b") for s in _steps(scenario, name))
    code, outcomes, text = _run(out, "--interleaving", scenario["interleavings"][0]["steps"])
    assert code == 0, text
    assert [o["violated"] for o in outcomes] == [[]]  # both records kept


@pytest.mark.parametrize("kind,log,backend", [("pg-csvlog", "bkci_incident_postgres.csv", "postgres"),
                                              ("mysql-general-log", "bkci_incident_mysql.log", "mysql")])
def test_imported_incident_log_explores_to_the_duplicate(tmp_path: Path, kind: str, log: str, backend: str) -> None:
    text = (HERE / log).read_text()
    database = next(w.strip('"') for w in text.replace(",", " ").split() if w.strip('"').startswith("harness_"))
    out = tmp_path / "incident.yaml"
    done = run_harness("import", kind, str(HERE / log), "-o", str(out), "--database", database, "--checks",
                       str(ROOT / BKCI_CHECKS), "--expect", "violates: one_rule", "--schedules", "20")
    assert done.returncode == 0, done.stderr
    scenario = yaml.safe_load(out.read_text())
    assert scenario["backends"] == [backend] and list(scenario["sessions"]) == ["a", "b"]
    code, outcomes, output = _run(out)
    assert code == 0, output
    assert {o["kind"] for o in outcomes} == {"interleaving", "exploration"}
    assert all(o["violated"] == ["one_rule"] for o in outcomes)


def test_import_keeps_only_the_sessions_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "one.yaml"
    rows = list(csv.reader(io.StringIO((HERE / "bkci_incident_postgres.csv").read_text(), newline="")))
    session = next(r[5] for r in rows if "INSERT" in r[13])
    done = run_harness("import", "pg-csvlog", str(HERE / "bkci_incident_postgres.csv"), "-o", str(out),
                       "--sessions", session)
    assert done.returncode == 0, done.stderr
    scenario = yaml.safe_load(out.read_text())
    assert list(scenario["sessions"]) == ["a"] and "explore" not in scenario  # nothing to interleave with
    assert f"client connection {session}" in out.read_text()


def test_copy_is_kept_as_a_comment_with_a_warning(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import os, psycopg\n"
                   "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as c:\n"
                   "    c.execute('CREATE TABLE t (id int)')\n"
                   "    c.execute('INSERT INTO t VALUES (%s)', (1,))\n"
                   "    with c.cursor().copy('COPY t TO STDOUT') as copy:\n"
                   "        list(copy)\n"
                   "    c.execute('SELECT count(*) FROM t')\n"
                   "    try:\n"
                   "        c.execute('INSERT INTO t VALUES (%s)', ('not a number',))\n"
                   "    except psycopg.errors.InvalidTextRepresentation:\n"
                   "        pass\n")
    out = tmp_path / "copy.yaml"
    scenario, stderr = _record(out, "postgres", str(app))
    assert "harness: warning:" in stderr and "COPY streams its data" in stderr
    assert "# not replayable as text (COPY streams its data outside the statement text): COPY t TO STDOUT" in \
        out.read_text()
    steps = scenario["sessions"]["a"]["steps"]
    assert list(steps.values()) == ["INSERT INTO t VALUES ('1')", "SELECT count(*) FROM t",
                                    {"sql": "INSERT INTO t VALUES ('not a number')", "expect": {"error": "22P02"}}]
    code, outcomes, text = _run(out)
    assert code == 0 and outcomes[0]["passed"], text  # the replay fails that step as the recording did


def test_recording_on_a_dsn_server_needs_its_csvlog(tmp_path: Path, pg_server: Any, server_factory: Any) -> None:
    """A --pg-dsn server is recorded through its own logging collector; without one, exit 2 says how."""
    app = ["-c", "import os, psycopg; psycopg.connect(os.environ['DATABASE_URL']).execute('SELECT 1')"]
    done = run_harness("record", "--pg-dsn", pg_server.dsn, "-o", str(tmp_path / "x.yaml"), "--", sys.executable,
                       *app)
    assert done.returncode == 2 and "needs logging_collector = on and csvlog in log_destination" in done.stderr, \
        done.stderr
    assert not (tmp_path / "x.yaml").exists()
    server = server_factory("postgres", options=PG_SERVER_OPTIONS)
    out = tmp_path / "dsn.yaml"
    done = run_harness("record", "--pg-dsn", server.dsn, "-o", str(out), "--", sys.executable, *app)
    assert done.returncode == 0, done.stderr
    assert _steps(yaml.safe_load(out.read_text()), "a") == ["BEGIN", "SELECT 1"]  # psycopg opens a transaction
    admin = server.admin()
    try:  # nothing left behind: the recording's database is gone, no setting was changed
        assert execute(admin, "SELECT count(*) FROM pg_database WHERE datname LIKE 'harness\\_%'")[0][0] == 0
        assert execute(admin, "SELECT count(*) FROM pg_db_role_setting")[0][0] == 0
    finally:
        admin.close()


def test_quote_literal_reads_back_unchanged(database: Any) -> None:
    """The literals a recording writes are the values the application sent, on the real server."""
    dialect = dialect_for(database.backend)
    values = ["plain", "it's", "back\\slash", "\\'", "new\nline\ttab", "$1 $$ -- /* */", "'; DROP TABLE x; --",
              "unicode é ✓", "%s %%", ""]
    with database.connect() as conn:
        for value in values:
            assert execute(conn, f"SELECT {dialect.quote_literal(value)}")[0][0] == value
        assert execute(conn, f"SELECT {dialect.quote_literal(None)}")[0][0] is None


def test_placeholders_are_replaced_outside_strings_comments_and_dollar_quotes() -> None:
    quote = dialect_for("postgres").quote_literal
    sql = "SELECT $1, '$1', $$ $2 $$, \"$1\" -- $2\n, $2 /* $1 */"
    assert inline_parameters(sql, {1: "a'b", 2: None}, quote) == \
        "SELECT 'a''b', '$1', $$ $2 $$, \"$1\" -- $2\n, NULL /* $1 */"
    assert parse_parameters("parameters: $1 = 'it''s', $2 = NULL, $3 = '1, $4 = x'") == \
        {1: "it's", 2: None, 3: "1, $4 = x"}
    assert parse_parameters("parameters: $1 = oops") is None


# ---------------------------------------------------------------------------------------- bad input

def _row(session: str, message: str, detail: str = "", *, tag: str = "idle", severity: str = "LOG",
         sqlstate: str = "00000", context: str = "", query: str = "") -> list[str]:
    """A csvlog row in PostgreSQL 15's 26 columns."""
    return ["2026-01-01 00:00:00.000 UTC", "app", "shop", "42", "10.0.0.1:5000", session, "1", tag,
            "2026-01-01 00:00:00 UTC", "3/1", "0", severity, sqlstate, message, detail, "", "", "", context, query,
            "", "", "app", "client backend", "", "0"]


def _csvlog(tmp_path: Path, *rows: tuple[str, str, str] | list[str]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(r if isinstance(r, list) else _row(*r))
    path = tmp_path / "pg.csv"
    path.write_text(buf.getvalue())
    return path


def test_failed_statements_expect_their_error(tmp_path: Path) -> None:
    """A statement that failed as it ran expects its SQLSTATE; one that failed in BIND (PostgreSQL logs
    only its ERROR row) is taken from that row, with the values its CONTEXT shows."""
    log = _csvlog(tmp_path,
                  _row("s.1", "execute <unnamed>: INSERT INTO t VALUES ($1)", "parameters: $1 = '1'", tag="INSERT"),
                  _row("s.1", "duplicate key", severity="ERROR", sqlstate="23505", tag="INSERT",
                       query="INSERT INTO t VALUES ($1)", context="unnamed portal with parameters: $1 = '1'"),
                  _row("s.1", "invalid input", severity="ERROR", sqlstate="22P02", tag="BIND",
                       query="INSERT INTO t VALUES ($1)", context="unnamed portal parameter $1 = 'x''y'"),
                  _row("s.1", "invalid input", severity="ERROR", sqlstate="22P02", tag="BIND",
                       query="INSERT INTO t VALUES ($1, $2)", context="unnamed portal parameter $2 = 'z'"))
    statements = parse_csvlog(log.read_text(), str(log))
    assert [(s.sql, s.error, s.not_text is None) for s in statements] == [
        ("INSERT INTO t VALUES ('1')", "23505", True), ("INSERT INTO t VALUES ('x''y')", "22P02", True),
        ("INSERT INTO t VALUES ($1, $2)", "22P02", False)]  # $1 unknown: a comment, not a guess


def _import_error(*args: str) -> str:
    done = run_harness("import", *args, "-o", "/nonexistent/never-written.yaml", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr.strip()
    assert err.startswith("harness: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_file_that_is_not_a_log_is_one_line_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("dear diary,\ntoday the rules were duplicated\n")
    assert f"{junk}:1: not a PostgreSQL csvlog row" in _import_error("pg-csvlog", str(junk))
    assert f"{junk}:1: not a MySQL/MariaDB general log" in _import_error("mysql-general-log", str(junk))
    assert "does not exist" in _import_error("pg-csvlog", str(tmp_path / "missing.csv"))


def test_sessions_that_are_not_in_the_log_are_named(tmp_path: Path) -> None:
    log = _csvlog(tmp_path, ("s.1", "statement: SELECT 1", ""))
    err = _import_error("pg-csvlog", str(log), "--sessions", "s.1,s.9")
    assert f"{log}: session(s) s.9 are not in the log; its sessions are: s.1." in err


def test_unparsable_statements_name_their_line(tmp_path: Path) -> None:
    log = _csvlog(tmp_path, ("s.1", "statement: SELECT 1", ""), ("s.1", "statement: SELECT 'unterminated", ""))
    assert f"{log}:2: cannot parse the statement of session s.1: unterminated ' quote" in \
        _import_error("pg-csvlog", str(log))
    log = _csvlog(tmp_path, ("s.1", "execute <unnamed>: SELECT $1, $2", "parameters: $1 = 'a'"))
    assert f"{log}:1: the statement of session s.1 uses $2 but the row gives no value" in \
        _import_error("pg-csvlog", str(log))
    general = tmp_path / "general.log"
    general.write_text("Time\t\t    Id Command\tArgument\n260101 10:00:00\t     5 Query\tSELECT `oops\n")
    assert f"{general}:2: cannot parse the statement of thread 5: unterminated ` quote" in \
        _import_error("mysql-general-log", str(general))


def test_a_mysql_dsn_server_is_never_reconfigured(tmp_path: Path, mysql_server: Any) -> None:
    admin = mysql_server.admin()
    try:
        before = execute(admin, "SELECT @@global.general_log, @@global.log_output")[0]
        done = run_harness("record", "--backend", "mysql", "--mysql-dsn", mysql_server.dsn, "-o",
                           str(tmp_path / "x.yaml"), "--", sys.executable, "-c", "pass")
        assert done.returncode == 2 and "needs the general log in its table" in done.stderr, done.stderr
        assert "SET GLOBAL general_log = ON" in done.stderr and "\n" not in done.stderr.strip()
        assert execute(admin, "SELECT @@global.general_log, @@global.log_output")[0] == before
    finally:
        admin.close()


def test_a_bad_checks_file_is_one_line_exit_2(tmp_path: Path) -> None:
    log = str(HERE / "bkci_incident_postgres.csv")
    bad = tmp_path / "checks.yaml"
    bad.write_text("checks:\n  one: [unclosed\n")
    assert f"{bad}:3: the checks file is not YAML" in _import_error("pg-csvlog", log, "--checks", str(bad))
    bad.write_text("sessions: {}\n")
    assert f"{bad}:1: expected a `checks:` mapping" in _import_error("pg-csvlog", log, "--checks", str(bad))
    assert "names no check" in _import_error("pg-csvlog", log, "--expect", "violates: nope")
