"""``record`` (run a command with statement logging on) and ``import_log`` (read a copied log)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..dialect import dialect_for
from ..errors import ConfigError, HarnessError, ScenarioError
from ..provision import Server
from ..provision.dsn import attach_dsn
from ..provision.local import start_local
from ..scenario.safe_yaml import MAX_FILE_BYTES
from . import mysqllog, pglog
from .build import Draft, build
from .capture import OWN_APPLICATION, PG_SERVER_OPTIONS, capture_for
from .commands import LOG_KINDS
from .write import write

MAX_LOG_BYTES = 200_000_000


@dataclass
class RecordReport:
    """What a recording or import wrote: for the CLI to print."""

    path: Path
    sessions: int
    steps: int
    warnings: list[str] = field(default_factory=list)
    exit_code: int | None = None  # the recorded command's


def _report(draft: Draft, path: Path, exit_code: int | None = None) -> RecordReport:
    warnings = list(draft.warnings)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        warnings.append(f"{path} is {size:,} bytes, more than `harness run` reads ({MAX_FILE_BYTES:,}; "
                        "HARNESS_MAX_SCENARIO_BYTES raises it): record only the requests of the race.")
    return RecordReport(path, len(draft.sessions), len(draft.order), warnings, exit_code)


def load_checks(path: Path | None) -> dict[str, Any] | None:
    """The ``checks:`` mapping of a YAML file (the recorded file gets it verbatim)."""
    if path is None:
        return None
    text = _read(path, "checks")
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ScenarioError(f"the checks file is not YAML: {exc.problem}.", path=str(path),
                            line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"the checks file is not YAML: {' '.join(str(exc).split())}", path=str(path)) from None
    checks = data.get("checks") if isinstance(data, dict) else None
    if not isinstance(checks, dict) or not checks:
        raise ScenarioError("expected a `checks:` mapping (check name -> {sql: …, expect: …}), as in a scenario.",
                            path=str(path), line=1)
    return checks


def command_env(server: Server, dsn: str, backend: str) -> dict[str, str]:
    """The environment a recorded command gets: where its database is, in the usual variable names."""
    info = server.info
    env = dict(os.environ, HARNESS_RECORD_BACKEND=backend, HARNESS_RECORD_DSN=dsn, DATABASE_URL=dsn,
               HARNESS_BACKENDS=backend)
    if backend == "postgres":
        env.update(HARNESS_PG_DSN=info.dsn, PGHOST=info.host, PGPORT=str(info.port), PGUSER=info.user,
                   PGPASSWORD=info.password, PGDATABASE=dsn.rsplit("/", 1)[1].split("?")[0])
    else:
        env.update(HARNESS_MYSQL_DSN=info.dsn, MYSQL_HOST=info.host, MYSQL_TCP_PORT=str(info.port),
                   MYSQL_USER=info.user or "root", MYSQL_PWD=info.password,
                   MYSQL_DATABASE=dsn.rsplit("/", 1)[1].split("?")[0])
    return env


def _server(backend: str, settings: Settings) -> Server:
    if settings.provisioner_for(backend) == "dsn" and backend in settings.dsn:
        return attach_dsn(backend, settings.dsn[backend])
    return start_local(backend, settings, options=PG_SERVER_OPTIONS if backend == "postgres" else None)


def record(command: list[str], output: Path, *, backend: str, settings: Settings, schedules: int = 100,
           expect: str = "holds", checks: Path | None = None, timeout: float = 600.0) -> RecordReport:
    """Run ``command`` against a fresh database with statement logging on; write the scenario it made."""
    if not command:
        raise ConfigError("harness record needs a command after `--`, e.g. `harness record -o run.yaml -- "
                          "python app.py`.")
    check_map = load_checks(checks)
    server = _server(backend, settings)
    try:
        db = server.create_database()
        try:
            capture = capture_for(db)
            capture.start()
            try:
                done = subprocess.run(command, env=command_env(server, db.dsn, backend), timeout=timeout)
            except FileNotFoundError:
                raise ConfigError(f"harness record: command not found: {command[0]!r}.") from None
            except subprocess.TimeoutExpired:
                raise HarnessError(f"harness record: the command did not finish within {timeout:.0f}s (it was "
                                   "stopped); raise --timeout if it needs longer.") from None
            finally:
                statements = capture.stop()
            with db.server.dialect.connect(db.info, application_name=OWN_APPLICATION) as own:
                tables = db.dialect.list_tables(own)
        finally:
            db.drop()
    finally:
        server.stop()
    draft = build(statements, backend=backend, name=output.stem, source=capture.source,
                  description=f"Recorded run of: {' '.join(command)}", schema=None,
                  teardown=dialect_for(backend).drop_tables_sql(tables), schedules=schedules, expect=expect,
                  checks=check_map)
    write(draft, output)
    return _report(draft, output, done.returncode)


_CREATE_TABLE = re.compile(r"CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(`[^`]+`|\"[^\"]+\"|[\w.$]+)",
                           re.IGNORECASE)


def import_log(log_kind: str, log: Path, output: Path, *, schema: Path | None = None,
               sessions: list[str] | None = None, database: str | None = None, schedules: int = 100, expect: str = "holds",
               checks: Path | None = None) -> RecordReport:
    """The scenario of a log excerpt copied from a server (``pg-csvlog`` or ``mysql-general-log``)."""
    backend = LOG_KINDS[log_kind]
    text = _read(log, "log")
    schema_text = _read(schema, "schema") if schema is not None else None
    check_map = load_checks(checks)
    if backend == "postgres":
        statements = pglog.parse_csvlog(text, str(log), database=database)
    else:
        statements = mysqllog.statements(mysqllog.parse_file(text, str(log)), str(log), database=database)
    tables = [t.strip('`"') for t in _CREATE_TABLE.findall(schema_text or "")]
    draft = build(statements, backend=backend, name=output.stem, source=str(log), schema=schema_text,
                  description=f"Imported from {log.name}", teardown=dialect_for(backend).drop_tables_sql(tables),
                  schedules=schedules, expect=expect, checks=check_map, sessions=sessions)
    if backend == "mysql" and draft.setup is not None and schema_text is None:
        tables = [t.strip('`"') for t in _CREATE_TABLE.findall(draft.setup)]
        draft.teardown = dialect_for(backend).drop_tables_sql(tables)
    write(draft, output)
    return _report(draft, output)


def _read(path: Path, what: str) -> str:
    try:
        if not path.is_file():
            raise ScenarioError(f"the {what} file does not exist or is not a regular file.", path=str(path))
        if path.stat().st_size > MAX_LOG_BYTES:
            raise ScenarioError(f"the {what} file is larger than {MAX_LOG_BYTES // 1_000_000} MB; cut the excerpt "
                                "to the sessions of the incident.", path=str(path))
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"the {what} file is not UTF-8 text (byte {exc.start}); a log is text.",
                            path=str(path)) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read the {what} file: {exc.strerror}.", path=str(path)) from None
