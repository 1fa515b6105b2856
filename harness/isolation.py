"""A drop-in for PostgreSQL's ``isolationtester``: same input (a spec on stdin), same stdout, byte for byte.

The engine runs the permutations (its control flow is isolationtester's ``run_permutation`` /
``try_complete_step``); this module adds what only matters for byte-identical output:

* :class:`IsolationDialect` drives libpq exactly as isolationtester does (one ``PQsendQuery`` per
  step, ``PQisBusy`` / ``PQgetResult``), so notices are seen at the same points: those parsed before
  the first result print *before* the step line, later ones after the result they follow.  It keeps
  libpq's own formatted notice text, NOTIFY messages, and asks the server with isolationtester's own
  ``pg_isolation_test_session_is_blocked`` whether a step waits.
* :class:`IsolationFormatter` turns traces into isolationtester's stdout (``PQprint`` tables,
  ``SEVERITY:  message`` errors, ``<waiting ...>`` / ``<... completed>``, cancel messages).
* :func:`run_spec` and :func:`isolationtester_main` (argv, exit codes and stderr messages of the
  C program).
"""

from __future__ import annotations

import io
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
from .pgversion import pg_version
from .scenario.model import Interleaving, Scenario, StepRef
from .scenario.spec_loader import load_spec, unused_steps
from .trace import ErrorInfo, Event, ResultSet, StepResult, Trace

#: ResultSet.command of a NOTIFY message a step's connection received (rows: [[channel, payload, sender]])
NOTIFY_TAG = "isolationtester:notify"
#: ResultSet.command prefix of a result status isolationtester does not print as a table (COPY...)
STATUS_TAG = "isolationtester:status:"
#: ResultSet.command of a second error result (libpq's "server closed the connection") after ``error``
LATER_ERROR_TAG = "isolationtester:later-error"
DEFAULT_CONNINFO = "dbname = postgres"
DEFAULT_TIMEOUT = 300.0

Connector = Callable[[str], Any]


def _text(value: bytes | None) -> str | None:
    """Server bytes as str, reversibly: the formatter re-encodes them to print the very same bytes."""
    return None if value is None else value.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


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


# -- PQprint ----------------------------------------------------------------------------------------
def _is_numeric(value: bytes) -> bool:
    """fe-print.c's test: only digits . E e space -, not starting with E/e, ending with a digit."""
    if value[:1] in (b"E", b"e"):
        return False
    if any(not (48 <= b <= 57 or b in b".Ee -") for b in value):
        return False
    return 48 <= value[-1] <= 57


def pqprint(columns: list[str], rows: list[list[str | None]]) -> bytes:
    """libpq's ``PQprint`` with header=1, align=1, fieldSep="|" (isolationtester's printResultSet).

    Widths are in bytes, as in C; a column whose non-empty values all look numeric is right-aligned,
    header included; NULLs and empty strings print as blanks and do not count for alignment.
    """
    if not columns:
        return b""
    names = [_bytes(c) for c in columns]
    width = [len(n) for n in names]
    numeric = [True] * len(names)
    cells: list[list[bytes]] = []
    for row in rows:
        out_row = []
        for j, value in enumerate(row):
            b = _bytes(value) if value else b""
            if b:
                if numeric[j] and not _is_numeric(b):
                    numeric[j] = False
                width[j] = max(width[j], len(b))
            out_row.append(b)
        cells.append(out_row)

    def line(values: list[bytes]) -> bytes:
        return b"|".join(v.rjust(width[j]) if numeric[j] else v.ljust(width[j]) for j, v in enumerate(values)) + b"\n"

    parts = [line(names), b"+".join(b"-" * w for w in width) + b"\n"]
    parts.extend(line(r) for r in cells)
    parts.append(b"(%d row%s)\n\n" % (len(rows), b"" if len(rows) == 1 else b"s"))
    return b"".join(parts)


# -- output -----------------------------------------------------------------------------------------
class Output:
    """Unbuffered byte output to a text or binary stream (isolationtester does setbuf(stdout, NULL))."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        if not data:
            return
        if isinstance(self.stream, io.TextIOBase):
            if hasattr(self.stream, "buffer"):
                self.stream.flush()
                self.stream.buffer.write(data)
                self.stream.buffer.flush()
            else:
                self.stream.write(data.decode("utf-8", "surrogateescape"))
            return
        if hasattr(self.stream, "mode") and "b" not in getattr(self.stream, "mode", "b"):
            self.stream.write(data.decode("utf-8", "surrogateescape"))
        else:
            self.stream.write(data)
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


def _error_text(err: ErrorInfo) -> bytes:
    """A step error as isolationtester prints it: severity and primary message only."""
    if err.severity:
        return _bytes(f"{err.severity}:  {err.message}\n")
    return _bytes(err.message + "\n")


def _conn_error_message(err: ErrorInfo) -> bytes:
    """Roughly ``PQerrorMessage`` after a failed setup/teardown (goes to stderr)."""
    if not err.severity:
        return _bytes(err.message if err.message.endswith("\n") else err.message + "\n")
    text = f"{err.severity}:  {err.message}\n"
    if err.detail:
        text += f"DETAIL:  {err.detail}\n"
    return _bytes(text)


@dataclass
class IsolationFormatter:
    """Turns traces into isolationtester's output; state carries NOTIFYs a session received outside a
    step (in its setup/teardown) to its next completed step, as libpq queues them until then."""

    out: Output
    err: Output
    _queued_notifies: dict[str, list[bytes]] = field(default_factory=dict)

    def header(self, sessions: int) -> None:
        self.out.write(b"Parsed test spec with %d sessions\n" % sessions)

    def starting(self, interleaving: Interleaving) -> None:
        self.out.write(_bytes("\nstarting permutation:" + "".join(" " + r.step for r in interleaving.steps) + "\n"))

    def trace(self, trace: Trace) -> None:
        """Everything after the ``starting permutation`` line, in isolationtester's order."""
        deferred: dict[str, list[tuple[int, bytes]]] = {}
        for e in trace.events:
            if e.kind in ("setup", "teardown"):
                self._setup_event(e)
            elif e.kind == "notice":
                text = self._notice_text(e)
                after = int(e.detail.get("after_results", 0) or 0)
                if after > 0 and e.step is not None:
                    deferred.setdefault(e.step, []).append((after, text))
                else:
                    self.out.write(text)
            elif e.kind == "blocked":
                for _, text in deferred.pop(e.step or "", []):
                    self.out.write(text)
                self.out.write(_bytes(f"step {e.step}: {e.sql or ''} <waiting ...>\n"))
            elif e.kind == "complete":
                self._complete(e, deferred.pop(e.step or "", []))
            elif e.kind == "cancel" and "after_seconds" in e.detail:
                self.out.write(_bytes(f"isolationtester: canceling step {e.step} after "
                                      f"{e.detail['after_seconds']} seconds\n"))
            elif e.kind == "hang":
                self._hang(e)
                return  # isolationtester exits here: no teardown output

    def _notice_text(self, e: Event) -> bytes:
        text = e.detail.get("text") or f"{e.detail.get('severity', 'NOTICE')}:  {e.detail.get('message', '')}\n"
        return _bytes(f"{e.session}: {text}")

    def _notify_lines(self, session: str, result: StepResult | None) -> list[bytes]:
        if result is None:
            return []
        return [_bytes(f'{session}: NOTIFY "{ch}" with payload "{payload}" from {sender}\n')
                for rs in result.results if rs.command == NOTIFY_TAG
                for ch, payload, sender in (rs.rows or [])]

    def _setup_event(self, e: Event) -> None:
        r = e.result
        if r is None:
            return
        if e.session is not None:
            self._queued_notifies.setdefault(e.session, []).extend(self._notify_lines(e.session, r))
        if r.error is not None:
            if e.kind == "teardown":
                what = f"teardown of session {e.session} failed: " if e.session else "teardown failed: "
                self.err.write(_bytes(what) + _conn_error_message(r.error))
            return
        real = [rs for rs in r.results if rs.command not in (NOTIFY_TAG, LATER_ERROR_TAG)]
        if real and real[-1].columns is not None:  # PQexec returns only the last result
            self.out.write(pqprint(real[-1].columns, real[-1].rows or []))

    def _complete(self, e: Event, deferred: list[tuple[int, bytes]]) -> None:
        if e.detail.get("after_wait"):
            self.out.write(_bytes(f"step {e.step}: <... completed>\n"))
        else:
            self.out.write(_bytes(f"step {e.step}: {e.sql or ''}\n"))
        r = e.result or StepResult()
        results = [rs for rs in r.results if rs.command not in (NOTIFY_TAG, LATER_ERROR_TAG)]
        later = [rs for rs in r.results if rs.command == LATER_ERROR_TAG]
        n = 0

        def flush_upto(k: int) -> None:
            for after, text in deferred:
                if after == k:
                    self.out.write(text)

        for rs in results:
            n += 1
            if rs.columns is not None:
                self.out.write(pqprint(rs.columns, rs.rows or []))
            elif rs.command and rs.command.startswith(STATUS_TAG):
                self.out.write(_bytes(f"unexpected result status: {rs.command[len(STATUS_TAG):]}\n"))
            flush_upto(n)
        if r.error is not None:
            n += 1
            self.out.write(_error_text(r.error))
            flush_upto(n)
        for rs in later:
            n += 1
            self.out.write(_bytes(f"{(rs.rows or [['']])[0][0]}\n"))
            flush_upto(n)
        for after, text in deferred:
            if after > n:
                self.out.write(text)
        session = e.session or ""
        for line in self._queued_notifies.pop(session, []) + self._notify_lines(session, e.result):
            self.out.write(line)

    def _hang(self, e: Event) -> None:
        reason = str(e.detail.get("reason", "hang"))
        if "mutually-blocking" in reason:
            self.err.write(b"failed to complete permutation due to mutually-blocking steps\n")
        else:
            self.err.write(_bytes(reason + "\n"))


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
