"""A drop-in for PostgreSQL's ``isolationtester``: same input (a spec on stdin), same stdout, byte for byte.

The engine runs the permutations (its control flow is isolationtester's ``run_permutation`` /
``try_complete_step``); this module adds what only matters for byte-identical output:

* :class:`IsolationDialect` drives libpq exactly as isolationtester does (one ``PQsendQuery`` per
  step, ``PQisBusy`` / ``PQgetResult``), so notices are seen at the same points: those parsed before
  the first result print *before* the step line, later ones after the result they follow.  It keeps
  libpq's own formatted notice text, NOTIFY messages, and asks the server with isolationtester's own
  ``pg_isolation_test_session_is_blocked`` whether a step waits.
* :class:`~harness.isolation_output.IsolationFormatter` (isolation_output.py) turns traces into
  isolationtester's stdout (``PQprint`` tables, ``SEVERITY:  message`` errors, ``<waiting ...>`` /
  ``<... completed>``, cancel messages).
* :func:`run_spec` and :func:`isolationtester_main` (argv, exit codes and stderr messages of the
  C program).
"""

from __future__ import annotations

import os
import select
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from .dialect.base import ConnInfo, Wait
from .dialect.postgres import PostgresDialect, convert_result
from .engine import Engine, EngineOptions, ScenarioRunError
from .errors import ConnectFailed, HarnessError
from .isolation_output import LATER_ERROR_TAG, NOTIFY_TAG, STATUS_TAG, IsolationFormatter, Output, _bytes, pqprint
from .pgversion import pg_version
from .scenario.model import Interleaving, Scenario, StepRef
from .scenario.spec_loader import load_spec, unused_steps
from .trace import ErrorInfo, ResultSet, StepResult, Trace

DEFAULT_CONNINFO = "dbname = postgres"
DEFAULT_TIMEOUT = 300.0

Connector = Callable[[str], Any]


def _text(value: bytes | None) -> str | None:
    """Server bytes as str, reversibly: the formatter re-encodes them to print the very same bytes."""
    return None if value is None else value.decode("utf-8", "surrogateescape")


@dataclass
class PqNotice(ErrorInfo):
    """A notice plus what the engine copies into the trace: libpq's text and where it arrived."""

    extra: dict[str, Any] = field(default_factory=dict)


def _error_of(res: Any) -> ErrorInfo:
    f = pq.DiagnosticField
    severity, message = _text(res.error_field(f.SEVERITY)), _text(res.error_field(f.MESSAGE_PRIMARY))
    if severity is None or message is None:  # libpq-generated: only the old-style message
        return ErrorInfo(code=None, message=_text(res.error_message) or "", severity="")
    return ErrorInfo(code=_text(res.error_field(f.SQLSTATE)), message=message, severity=severity,
                     detail=_text(res.error_field(f.MESSAGE_DETAIL)))


class IsolationDialect(PostgresDialect):
    """PostgreSQL as isolationtester sees it (see the module docstring)."""

    WAIT_STMT = b"isolationtester_waiting"

    def __init__(self) -> None:
        self.session_pids: dict[int, str] = {}  # backend pid -> session name, refreshed per permutation
        self._prepared: set[int] = set()

    def run_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
        pgconn = conn.pgconn
        out = StepResult()
        got = 0  # results returned so far: a notice parsed before result k prints after result k-1

        def notice(res: Any) -> None:
            if on_notice is not None:
                e = _error_of(res)
                on_notice(PqNotice(e.code, e.message, e.severity, e.detail,
                                   extra={"text": _text(res.error_message) or "", "after_results": got}))

        pgconn.notice_handler = notice
        try:
            pgconn.send_query(_bytes(sql))
            while True:
                lost = False
                while pgconn.is_busy():
                    select.select([pgconn.socket], [], [], 1.0)
                    try:
                        pgconn.consume_input()
                    except psycopg.OperationalError:
                        lost = True  # libpq turns it into an error result, as in a blocking PQgetResult
                        break
                res = pgconn.get_result()
                if res is None:
                    break
                if lost:  # the same text a blocking PQgetResult gives, minus our dead-socket wait's line
                    msg = _text(res.error_message) or ""
                    if msg.endswith("\ninvalid socket\n"):
                        msg = msg[: -len("invalid socket\n")]
                    got += 1
                    if out.error is None:
                        out.error = ErrorInfo(code=None, message=msg, severity="")
                    else:  # printed after out.error (the server's FATAL that preceded the close)
                        out.results.append(ResultSet(rows=[[msg]], command=LATER_ERROR_TAG))
                    continue
                got += 1
                # errors keep isolationtester's exact text (libpq's own, untrimmed); rows and tags are shared
                converted = _error_of(res) if res.status == pq.ExecStatus.FATAL_ERROR else convert_result(res)
                if isinstance(converted, ErrorInfo):
                    out.error = converted
                elif converted is not None:
                    out.results.append(converted)
                else:
                    out.results.append(ResultSet(command=STATUS_TAG + "PGRES_" + res.status.name))
            if pgconn.status == pq.ConnStatus.OK:
                pgconn.consume_input()
            while (n := pgconn.notifies()) is not None:
                sender = self.session_pids.get(n.be_pid, f"PID {n.be_pid}")
                out.results.append(ResultSet(rows=[[_text(n.relname), _text(n.extra), sender]], command=NOTIFY_TAG))
                if pgconn.status == pq.ConnStatus.OK:
                    pgconn.consume_input()
        except psycopg.OperationalError as exc:
            raise ConnectionError(str(exc)) from exc
        finally:
            pgconn.notice_handler = None
        if pgconn.status != pq.ConnStatus.OK and out.error is None:
            raise ConnectionError(_text(pgconn.error_message) or "connection lost")
        return out

    def waits(self, monitor: Any, session_ids: list[int]) -> list[Wait]:
        """isolationtester's lock-wait test (blocked by one of our sessions, or waiting for a safe
        snapshot), for all asked-about sessions in one round trip."""
        if not session_ids:
            return []
        pgconn = monitor.pgconn
        if id(pgconn) not in self._prepared:
            res = pgconn.prepare(self.WAIT_STMT, b"SELECT p FROM unnest($1::int4[]) AS p "
                                                 b"WHERE pg_catalog.pg_isolation_test_session_is_blocked(p, $2::int4[])")
            if res.status != pq.ExecStatus.COMMAND_OK:
                raise HarnessError(f"prepare of lock wait query failed: {_text(pgconn.error_message)}")
            self._prepared.add(id(pgconn))
        asked = _bytes("{" + ",".join(str(p) for p in session_ids) + "}")
        ours = _bytes("{" + ",".join(str(p) for p in self.session_pids) + "}")
        res = pgconn.exec_prepared(self.WAIT_STMT, [asked, ours])
        if res.status != pq.ExecStatus.TUPLES_OK:
            raise HarnessError(f"lock wait query failed: {_text(pgconn.error_message)}")
        return [Wait(waiter=int(res.get_value(r, 0) or b"0"), holder=None, lock="lock") for r in range(res.ntuples)]


# -- running a spec ---------------------------------------------------------------------------------
def all_permutations(scenario: Scenario) -> Iterator[Interleaving]:
    """Every order-preserving interleaving, in isolationtester's order (lazily: there may be many)."""
    piles = [[s.name for s in sess.steps] for sess in scenario.sessions]
    taken = [0] * len(piles)
    prefix: list[str] = []

    def recurse() -> Iterator[Interleaving]:
        found = False
        for i, pile in enumerate(piles):
            if taken[i] < len(pile):
                found = True
                prefix.append(pile[taken[i]])
                taken[i] += 1
                yield from recurse()
                taken[i] -= 1
                prefix.pop()
        if not found:
            yield Interleaving(tuple(StepRef(s) for s in prefix))

    return recurse()


def step_timeout_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> float:
    """PGISOLATIONTIMEOUT (seconds, atoi semantics) or isolationtester's default of 300 s."""
    value = (env if env is not None else os.environ).get("PGISOLATIONTIMEOUT")
    if value is None:
        return DEFAULT_TIMEOUT
    digits = ""
    for ch in value.strip():
        if ch.isdigit() or (not digits and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return float(int(digits))
    except ValueError:
        return 0.0


def conninfo_of(target: ConnInfo | str) -> str:
    if isinstance(target, str):
        return target
    return make_conninfo(host=target.host, port=target.port, user=target.user or None,
                         password=target.password or None, dbname=target.dbname or "postgres",
                         **dict(target.params))


def _connect(conninfo: str, index: int, name: str) -> Any:
    """PQconnectdb + isolationtester's application_name suffix; errors worded like isolationtester."""
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise ConnectFailed(f"Connection {index} failed: {str(exc).rstrip()}\n") from exc
    res = conn.pgconn.exec_params(b"SELECT set_config('application_name',\n"
                                  b"  current_setting('application_name') || '/' || $1,\n  false)",
                                  [_bytes(name)])
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise ConnectFailed(f"setting of application name failed: {_text(conn.pgconn.error_message)}")
    return conn


def run_spec(scenario: Scenario, target: ConnInfo | str | Connector, out: Any, err: Any = None, *,
             step_timeout: float | None = None, dialect: IsolationDialect | None = None,
             on_trace: Callable[[Trace], None] | None = None) -> int:
    """Run every permutation like isolationtester; write its stdout to ``out`` (stderr to ``err``).

    ``target`` is a libpq conninfo string, a :class:`ConnInfo`, or ``connector(session_name)``.
    Connections are opened once (control connection first) and reused across permutations.
    ``dialect`` / ``on_trace`` let benchmarks time the SQL and inspect each permutation's trace.
    Returns isolationtester's exit code: 0, or 1 after a connection/setup failure or a hang.
    """
    o, e = Output(out), Output(err if err is not None else sys.stderr)
    fmt = IsolationFormatter(o, e)
    fmt.header(len(scenario.sessions))
    names = ["control connection", *(s.name for s in scenario.sessions)]
    if callable(target):
        connector: Connector = target
    else:
        conninfo = conninfo_of(target)
        opened: dict[str, Any] = {}
        try:
            for i, name in enumerate(names):
                opened[name] = _connect(conninfo, i, name)
        except ConnectFailed as exc:
            for conn in opened.values():
                conn.close()
            e.write(_bytes(str(exc)))
            return 1

        def connector(name: str) -> Any:
            return opened.pop(name) if name in opened else _connect(conninfo, names.index(name), name)

    dialect = dialect or IsolationDialect()
    timeout = step_timeout if step_timeout is not None else step_timeout_from_env()
    options = EngineOptions(step_timeout=timeout, on_timeout="cancel", poll_first=0.001, poll_max=0.010,
                            reset_sessions=False)  # isolationtester leaves session state to the spec
    engine = Engine(scenario, "postgres", dialect, ConnInfo("postgresql", "", 0), options, connector=connector)
    try:
        engine.open()
    except HarnessError as exc:
        e.write(_bytes(f"{exc}\n"))
        return 1
    try:
        perms = iter(scenario.interleavings) if scenario.interleavings else all_permutations(scenario)
        for perm in perms:
            dialect.session_pids = {w.sid: name for name, w in engine.workers.items()}
            fmt.starting(perm)
            try:
                trace = engine.run(perm)
            except ScenarioRunError as exc:
                e.write(_bytes(f"{exc}\n"))
                return 1
            fmt.trace(trace)
            if on_trace is not None:
                on_trace(trace)
            if trace.hung:
                return 1
    except HarnessError as exc:
        e.write(_bytes(f"{exc}\n"))
        return 1
    finally:
        engine.close()
    return 0


def run_spec_on_server(scenario: Scenario, server: Any, out: Any, err: Any = None) -> int:
    """``harness run x.spec``: run a spec on a fresh database of a provisioned server, then drop it."""
    db = server.create_database()
    try:
        return run_spec(scenario, db.info, out, err)
    finally:
        db.drop()


def isolationtester_main(argv: list[str], stdin: Any, stdout: Any, stderr: Any) -> int:
    """``isolationtester [-V] [CONNINFO] < spec``: its arguments, output and exit codes.

    ``argv`` excludes the program name.  libpq environment variables (PGHOST, PGPORT, ...) apply
    because connections go through libpq's own conninfo parsing.
    """
    err = Output(stderr)
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            positional.extend(args)
            break
        if arg.startswith("-") and len(arg) > 1 and not positional:
            for ch in arg[1:]:
                if ch == "V":
                    Output(stdout).write(_bytes(f"isolationtester (PostgreSQL) {pg_version()}\n"))
                    return 0
                err.write(_bytes(f"isolationtester: invalid option -- '{ch}'\n"
                                 "Usage: isolationtester [CONNINFO]\n"))
                return 1
            continue
        positional.append(arg)
    conninfo = positional[0] if positional else DEFAULT_CONNINFO
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    try:
        scenario = load_spec(text, "<stdin>")
    except HarnessError as exc:
        err.write(_bytes(f"{exc}\n"))
        return 1
    for name in unused_steps(scenario):
        err.write(_bytes(f"unused step name: {name}\n"))
    return run_spec(scenario, conninfo, stdout, stderr)


def main() -> int:
    return isolationtester_main(sys.argv[1:], sys.stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ConnectFailed", "IsolationDialect", "IsolationFormatter", "NOTIFY_TAG", "Output", "all_permutations",
           "isolationtester_main", "pqprint", "run_spec", "run_spec_on_server"]
