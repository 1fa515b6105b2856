"""PostgreSQL as isolationtester sees it, over :mod:`harness.dialect.libpq` (no psycopg import: the
drop-in starts once per spec).

It drives libpq exactly as isolationtester does (one ``PQsendQuery`` per step, ``PQisBusy`` /
``PQgetResult``), so notices are seen at the same points: those parsed before the first result print
*before* the step line, later ones after the result they follow.  It keeps libpq's own formatted
notice text, NOTIFY messages, and asks the server with isolationtester's own
``pg_isolation_test_session_is_blocked`` whether a step waits.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..errors import ConnectFailed, HarnessError
from ..isolation_output import LATER_ERROR_TAG, NOTIFY_TAG, STATUS_TAG, _bytes
from ..trace import ErrorInfo, ResultSet, StepResult
from . import pqresult as pr
from .base import Wait
from .libpq import PGconn
from .postgres import PostgresDialect


def text(value: bytes | None) -> str | None:
    """Server bytes as str, reversibly: the formatter re-encodes them to print the very same bytes."""
    return None if value is None else value.decode("utf-8", "surrogateescape")


@dataclass
class PqNotice(ErrorInfo):
    """A notice plus what the engine copies into the trace: libpq's text and where it arrived."""

    extra: dict[str, Any] = field(default_factory=dict)


def _error_of(res: Any) -> ErrorInfo:
    severity, message = text(res.error_field(pr.SEVERITY)), text(res.error_field(pr.MESSAGE_PRIMARY))
    if severity is None or message is None:  # libpq-generated: only the old-style message
        return ErrorInfo(code=None, message=text(res.error_message) or "", severity="")
    return ErrorInfo(code=text(res.error_field(pr.SQLSTATE)), message=message, severity=severity,
                     detail=text(res.error_field(pr.MESSAGE_DETAIL)))


def connect(conninfo: str, index: int, name: str) -> PGconn:
    """PQconnectdb + isolationtester's application_name suffix; errors worded like isolationtester."""
    conn = PGconn.connect(_bytes(conninfo))
    if conn.status != pr.CONNECTION_OK:
        message = text(conn.error_message) or ""
        conn.finish()
        raise ConnectFailed(f"Connection {index} failed: {message.rstrip()}\n")
    res = conn.exec_params(b"SELECT set_config('application_name',\n"
                           b"  current_setting('application_name') || '/' || $1,\n  false)", [_bytes(name)])
    if res.status != pr.TUPLES_OK:
        message = text(conn.error_message) or ""
        conn.finish()
        raise ConnectFailed(f"setting of application name failed: {message}")
    return conn


class PqCall:
    """One step in flight on a libpq connection: sent at once, read as isolationtester's
    ``try_complete_step`` reads it (``select`` on the socket, ``PQconsumeInput``, ``PQgetResult``)."""

    def __init__(self, dialect: "IsolationDialect", conn: PGconn, sql: str,
                 on_notice: Callable[[ErrorInfo], None] | None) -> None:
        self.dialect, self.conn, self.on_notice = dialect, conn, on_notice
        self.out = StepResult()
        self.got = 0  # results returned so far: a notice parsed before result k prints after result k-1
        conn.notice_handler = self._notice
        try:
            conn.send_query(_bytes(sql))
        except BaseException:
            conn.notice_handler = None
            raise

    def _notice(self, res: Any) -> None:
        if self.on_notice is not None:
            e = _error_of(res)
            self.on_notice(PqNotice(e.code, e.message, e.severity, e.detail,
                                    extra={"text": text(res.error_message) or "", "after_results": self.got}))

    def poll(self, timeout: float) -> StepResult | None:
        try:
            return self._poll(timeout)
        except BaseException:
            self.conn.notice_handler = None
            raise

    def _poll(self, timeout: float) -> StepResult | None:
        conn, out = self.conn, self.out
        deadline = time.monotonic() + timeout
        while True:
            lost = False
            while conn.is_busy():
                select.select([conn.socket], [], [], max(0.0, deadline - time.monotonic()))
                try:
                    conn.consume_input()
                except ConnectionError:
                    lost = True  # libpq turns it into an error result, as in a blocking PQgetResult
                    break
                if conn.is_busy() and time.monotonic() >= deadline:
                    return None
            res = conn.get_result()
            if res is None:
                return self._finish()
            self.got += 1
            if lost:  # the same text a blocking PQgetResult gives, minus our dead-socket wait's line
                msg = text(res.error_message) or ""
                if msg.endswith("\ninvalid socket\n"):
                    msg = msg[: -len("invalid socket\n")]
                if out.error is None:
                    out.error = ErrorInfo(code=None, message=msg, severity="")
                else:  # printed after out.error (the server's FATAL that preceded the close)
                    out.results.append(ResultSet(rows=[[msg]], command=LATER_ERROR_TAG))
                continue
            # errors keep isolationtester's exact text (libpq's own, untrimmed); rows and tags are shared
            converted = _error_of(res) if res.status == pr.FATAL_ERROR else pr.convert_result(res)
            if isinstance(converted, ErrorInfo):
                out.error = converted
            elif converted is not None:
                out.results.append(converted)
            else:
                out.results.append(ResultSet(command=STATUS_TAG + "PGRES_" + pr.status_name(res.status)))

    def _finish(self) -> StepResult:
        conn, out = self.conn, self.out
        if conn.status == pr.CONNECTION_OK:
            conn.consume_input()
        while (n := conn.notifies()) is not None:
            sender = self.dialect.session_pids.get(n.be_pid, f"PID {n.be_pid}")
            out.results.append(ResultSet(rows=[[text(n.relname), text(n.extra), sender]], command=NOTIFY_TAG))
            if conn.status == pr.CONNECTION_OK:
                conn.consume_input()
        conn.notice_handler = None
        if conn.status != pr.CONNECTION_OK and out.error is None:
            raise ConnectionError(text(conn.error_message) or "connection lost")
        return out


class IsolationDialect(PostgresDialect):
    """PostgreSQL as isolationtester sees it (see the module docstring); connections are
    :class:`~harness.dialect.libpq.PGconn`."""

    WAIT_STMT = b"isolationtester_waiting"
    capabilities = replace(PostgresDialect.capabilities, inline_sql=True)

    def __init__(self) -> None:
        self.session_pids: dict[int, str] = {}  # backend pid -> session name, refreshed per permutation
        self._prepared: set[int] = set()

    def session_id(self, conn: Any) -> int:
        return int(conn.backend_pid)

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed) or conn.status != pr.CONNECTION_OK

    def connection_lost(self) -> BaseException:
        return ConnectionError("server closed the connection unexpectedly (injected: lost ack)")

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def _call(self, monitor: Any, sql: bytes, session_id: int) -> Any:
        res = monitor.exec_params(sql, [str(session_id).encode()])
        if res.status != pr.TUPLES_OK:
            raise HarnessError(f"{sql.decode()} failed: {text(monitor.error_message)}")
        return res

    def cancel(self, monitor: Any, session_id: int) -> None:
        self._call(monitor, b"SELECT pg_cancel_backend($1)", session_id)

    def terminate(self, monitor: Any, session_id: int) -> None:
        self._call(monitor, b"SELECT pg_terminate_backend($1)", session_id)

    def session_listed(self, monitor: Any, session_id: int) -> bool:
        res = self._call(monitor, b"SELECT count(*) FROM pg_stat_activity WHERE pid = $1", session_id)
        return int(res.get_value(0, 0) or b"0") > 0

    def start_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> "PqCall":
        return PqCall(self, conn, sql, on_notice)

    def run_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
        call = self.start_sql(conn, sql, on_notice)
        while (result := call.poll(1.0)) is None:
            pass
        return result

    def waits(self, monitor: Any, session_ids: list[int]) -> list[Wait]:
        """isolationtester's lock-wait test (blocked by one of our sessions, or waiting for a safe
        snapshot), for all asked-about sessions in one round trip."""
        if not session_ids:
            return []
        if id(monitor) not in self._prepared:
            res = monitor.prepare(self.WAIT_STMT, b"SELECT p FROM unnest($1::int4[]) AS p "
                                                  b"WHERE pg_catalog.pg_isolation_test_session_is_blocked(p, $2::int4[])")
            if res.status != pr.COMMAND_OK:
                raise HarnessError(f"prepare of lock wait query failed: {text(monitor.error_message)}")
            self._prepared.add(id(monitor))
        asked = _bytes("{" + ",".join(str(p) for p in session_ids) + "}")
        ours = _bytes("{" + ",".join(str(p) for p in self.session_pids) + "}")
        res = monitor.exec_prepared(self.WAIT_STMT, [asked, ours])
        if res.status != pr.TUPLES_OK:
            raise HarnessError(f"lock wait query failed: {text(monitor.error_message)}")
        return [Wait(waiter=int(res.get_value(r, 0) or b"0"), holder=None, lock="lock") for r in range(res.ntuples)]


__all__ = ["IsolationDialect", "PqNotice", "connect", "text"]
