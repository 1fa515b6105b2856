"""PostgreSQL through psycopg 3.

psycopg is imported where it is used, not with this module: the isolationtester drop-in subclasses
this dialect on :mod:`harness.dialect.libpq` connections and must not pay psycopg's import per spec."""

from __future__ import annotations

import importlib
import select
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import psycopg

from ..trace import ErrorInfo, StepResult
from .base import Capabilities, ConnInfo, Dialect, Wait, execute, run_and_commit
from .pqresult import CONNECTION_OK, PQTRANS_IDLE, convert_result, error_of, status_name

#: one round trip that answers "who of these sessions waits for whom, on what" (holders restricted to
#: the given sessions, as isolationtester does: a wait on autovacuum is not a scheduling fact)
_WAITS_SQL = """
SELECT w.pid, h.holder, coalesce(l.locktype, 'snapshot'), coalesce(l.mode, ''),
       coalesce(l.relation::regclass::text, ''),
       EXISTS (SELECT 1 FROM pg_locks t WHERE t.pid = w.pid AND t.granted AND t.locktype = 'tuple')
FROM unnest(%(pids)s::int[]) AS w(pid)
CROSS JOIN LATERAL (
    SELECT unnest(pg_blocking_pids(w.pid)) AS holder
    UNION SELECT unnest(pg_safe_snapshot_blocking_pids(w.pid))
) h
LEFT JOIN LATERAL (
    SELECT locktype, mode, relation FROM pg_locks WHERE pid = w.pid AND NOT granted LIMIT 1
) l ON true
WHERE h.holder = ANY(%(pids)s::int[]) OR h.holder = 0
"""


_DEADLOCK_MESSAGE = "deadlock detected"


def _run_pq(conn: psycopg.Connection[Any], sql: str, on_notice: Callable[[ErrorInfo], None] | None) -> StepResult:
    """Send a step as one simple query through libpq and collect every result (as isolationtester)."""
    import psycopg

    pgconn = conn.pgconn
    pgconn.notice_handler = (lambda res: on_notice(error_of(res))) if on_notice else None
    out = StepResult()
    try:
        pgconn.send_query(sql.encode())
        while True:
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [], 1.0)
                pgconn.consume_input()
            res = pgconn.get_result()
            if res is None:
                break
            converted = convert_result(res)
            if isinstance(converted, ErrorInfo):
                out.error = converted
            elif converted is not None:
                out.results.append(converted)
            else:  # COPY and friends are not supported in steps
                out.error = ErrorInfo(None, f"unexpected result status {status_name(res.status)}", "ERROR")
    except psycopg.OperationalError as exc:
        raise ConnectionError(str(exc)) from exc
    if pgconn.status != CONNECTION_OK:
        raise ConnectionError(pgconn.error_message.decode("utf-8", "replace") or "connection lost")
    return out


class PostgresDialect(Dialect):
    name = "postgres"
    scheme = "postgresql"
    default_port = 5432
    admin_db = "postgres"

    def connect(self, info: ConnInfo, *, autocommit: bool = True, application_name: str | None = None,
                connect_timeout: float = 10.0) -> psycopg.Connection[Any]:
        import psycopg

        kwargs: dict[str, Any] = dict(info.params)
        if application_name is not None:
            kwargs["application_name"] = application_name
        return psycopg.connect(
            host=info.host, port=info.port, user=info.user or None, password=info.password or None,
            dbname=info.dbname or self.admin_db, autocommit=autocommit,
            connect_timeout=max(1, int(connect_timeout)), **kwargs,
        )

    def server_version(self, conn: Any) -> tuple[str, str]:
        return "postgres", execute(conn, "SHOW server_version")[0][0].split()[0]

    def create_database(self, admin: Any, name: str, template: str | None = None) -> None:
        from psycopg import sql as pgsql

        # FILE_COPY: the strategy for small templates (it skips WAL-logging every block). With data on
        # tmpfs it measured 11.8 ms per create+drop vs 12.1 ms for WAL_LOG (benchmarks/provision.py);
        # on a VM disk every copied file cost ~1 ms, which is why data dirs live on tmpfs.
        if template:
            admin.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                pgsql.Identifier(name), pgsql.Identifier(template)))
        else:
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))

    def drop_database(self, admin: Any, name: str) -> None:
        from psycopg import sql as pgsql

        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))

    def template_database(self, admin: Any, name: str) -> str | None:
        self.create_database(admin, name, "template0")
        return name

    def list_databases(self, admin: Any, prefix: str) -> list[str]:
        rows = execute(admin, "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        return [r[0] for r in rows]

    def session_id(self, conn: Any) -> int:
        return int(conn.info.backend_pid)

    def waits(self, monitor: Any, session_ids: list[int]) -> list[Wait]:
        if not session_ids:
            return []
        rows = execute(monitor, _WAITS_SQL, {"pids": session_ids})
        return [
            Wait(waiter=r[0], holder=(r[1] or None), lock=_lock_kind(r[2], holds_row=bool(r[5])),
                 detail=" ".join(x for x in (r[3], r[4]) if x))
            for r in rows
        ]

    def cancel(self, monitor: Any, session_id: int) -> None:
        execute(monitor, "SELECT pg_cancel_backend(%s)", (session_id,))

    def terminate(self, monitor: Any, session_id: int) -> None:
        execute(monitor, "SELECT pg_terminate_backend(%s)", (session_id,))

    def error_code(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlstate", None)

    def quote_ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def quote_literal(self, value: str | None) -> str:
        if value is None:
            return "NULL"
        if "\\" in value:  # E'' reads the same whatever standard_conforming_strings says
            return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
        return "'" + value.replace("'", "''") + "'"

    def drop_tables_sql(self, tables: list[str]) -> str:
        # the schema, not a table list: functions, types and sequences a run created go too
        return "DROP SCHEMA public CASCADE; CREATE SCHEMA public"

    def list_tables(self, conn: Any) -> list[str]:
        return [r[0] for r in execute(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                            "ORDER BY tablename")]

    def open_session(self, info: ConnInfo, application_name: str | None = None) -> Any:
        conn = self.connect(info, autocommit=True, application_name=application_name)
        # no automatic server-side prepares (actions query it with parameters): a kept session is
        # reset with DISCARD ALL (reset_scenario_session), which psycopg's statement cache would not see
        conn.prepare_threshold = None
        return conn

    def run_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
        return _run_pq(conn, sql, on_notice)

    def make_error(self, code: str, message: str) -> BaseException:
        import psycopg

        return psycopg.errors.lookup(code)(message)

    def connection_lost(self) -> BaseException:
        import psycopg

        return psycopg.OperationalError("server closed the connection unexpectedly (injected: lost ack)")

    def session_listed(self, monitor: Any, session_id: int) -> bool:
        # int(): engine sessions read every value as text
        return int(execute(monitor, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (session_id,))[0][0]) > 0

    def is_connection_error(self, exc: BaseException) -> bool:
        import psycopg

        if isinstance(exc, psycopg.InterfaceError):  # used after it broke ("the connection is closed")
            return True
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if type(exc).__module__.startswith("asyncpg"):  # an async actor's asyncpg connection
            return type(exc).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") or (
                code is not None and (code[:2] == "08" or code in ("57P01", "57P02", "57P03")))
        # an app's psycopg2 connection: its own OperationalError / InterfaceError
        driver2 = type(exc).__module__.startswith("psycopg2")
        if driver2 and type(exc).__name__ == "InterfaceError":
            return True
        operational = isinstance(exc, psycopg.OperationalError) or (driver2 and any(
            k.__name__ == "OperationalError" for k in type(exc).__mro__))
        # no SQLSTATE: the socket went away; 08: connection exception; 57P0x: terminated/shut down
        return operational and (code is None or code[:2] == "08" or code in ("57P01", "57P02", "57P03"))

    def isolation_sql(self, level: str) -> str:
        return f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level.upper()}"

    # PostgreSQL checks for a deadlock only when a waiter's deadlock_timeout (1 s) fires, in that
    # waiter: the victim is whichever timer fires first after the cycle closed -- a matter of timing
    # (measured: 8 of 86 schedules of an opposite-order pair changed victim over 4 replays), and
    # every deadlock cost a second.  In a race's database the timer is pushed past the point where
    # the harness, which sees every wait of its actors, breaks the cycle itself (Scheduler).
    capabilities = Capabilities(harness_breaks_deadlocks=True, reuses_sessions=True,
                                sqlalchemy_driver="postgresql+psycopg", aborted_transaction_stays_open=True)

    def reset_session(self, conn: Any, autocommit: bool) -> None:
        conn.rollback()
        conn.autocommit = True
        # DISCARD ALL minus DEALLOCATE ALL: psycopg auto-prepares repeated queries and would then use
        # prepared statements the server forgot
        conn.execute("CLOSE ALL; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); "
                     "DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES")
        conn.autocommit = autocommit

    def reset_scenario_session(self, conn: Any) -> None:
        # psycopg prepares nothing on it (open_session): DISCARD ALL may drop the steps' own PREPAREs,
        # temp tables, LISTENs, advisory locks and settings
        # DISCARD ALL refuses to run in a transaction block; ROLLBACK only when one is open (one round
        # trip per session per schedule saved: most sessions end with COMMIT)
        open_tx = conn.pgconn.transaction_status != PQTRANS_IDLE
        for sql in ("ROLLBACK", "DISCARD ALL") if open_tx else ("DISCARD ALL",):
            result = self.run_sql(conn, sql)
            if result.error is not None:
                raise ConnectionError(f"{sql}: {result.error.message}")

    def reset_kept_session(self, conn: Any) -> None:
        # set_config is undone by a rollback: committed (pg_advisory_unlock_all is not transactional)
        run_and_commit(conn, "SELECT pg_advisory_unlock_all(), set_config('harness.clock', '', false)")

    def shadow_clock_by_default(self, admin: Any, dbname: str) -> None:
        from psycopg import sql as pgsql

        admin.execute(pgsql.SQL("ALTER DATABASE {} SET search_path = "
                                "'\"$user\"', public, harness_clock, pg_catalog").format(pgsql.Identifier(dbname)))

    def prepare_race_database(self, admin: Any, dbname: str, hang_timeout: float) -> str | None:
        import psycopg
        from psycopg import sql as pgsql

        timeout_ms = int(max(1.0, hang_timeout / 2) * 1000)  # cycles through sessions we do not see
        try:
            admin.execute(pgsql.SQL("ALTER DATABASE {} SET deadlock_timeout = {}").format(
                pgsql.Identifier(dbname), pgsql.Literal(f"{timeout_ms}ms")))
        except psycopg.errors.InsufficientPrivilege as exc:
            return (f"deadlock victims are chosen by PostgreSQL's timer, not by the schedule: setting "
                    f"deadlock_timeout needs a superuser ({exc.diag.message_primary})")
        return None

    def deadlock_info(self, cancelled: ErrorInfo) -> ErrorInfo:
        return ErrorInfo("40P01", _DEADLOCK_MESSAGE, sqlstate="40P01", detail="cycle broken by race-harness: "
                         "this session's wait closed it")

    def deadlock_error(self, exc: BaseException) -> BaseException:
        import psycopg

        message = _DEADLOCK_MESSAGE + " (cycle broken by race-harness: this session's wait closed it)"
        if type(exc).__module__.startswith("psycopg2"):  # an app's psycopg2 connection
            return _psycopg2_error("40P01", message)
        if type(exc).__module__.startswith("asyncpg"):
            return _asyncpg_error("40P01", message)
        return psycopg.errors.DeadlockDetected(message)

    def error_for(self, conn: Any, exc: BaseException) -> BaseException:
        if any(k.__module__.startswith("asyncpg") for k in type(conn).__mro__):
            code = getattr(exc, "sqlstate", None)
            return _asyncpg_error(code, str(exc)) if code else importlib.import_module(
                "asyncpg.exceptions").ConnectionDoesNotExistError(str(exc))  # as asyncpg says a lost connection
        if not any(k.__module__.startswith("psycopg2") for k in type(conn).__mro__):
            return exc
        code = getattr(exc, "sqlstate", None)
        if code:
            return _psycopg2_error(code, str(exc))
        errors = importlib.import_module("psycopg2")
        err: BaseException = errors.OperationalError(str(exc))  # a lost connection, as psycopg2 says it
        return err


def _asyncpg_error(code: str, message: str) -> BaseException:
    """The error asyncpg raises for this SQLSTATE (an app on asyncpg catches asyncpg's classes)."""
    err: BaseException = importlib.import_module("asyncpg.exceptions").PostgresError.new({"C": code, "M": message})
    return err


def _psycopg2_error(code: str, message: str) -> BaseException:
    """The error psycopg2 raises for this SQLSTATE (an app on psycopg2 catches psycopg2's classes)."""
    errors = importlib.import_module("psycopg2.errors")
    err: BaseException = errors.lookup(code)(message)
    err.__setstate__({"pgerror": f"ERROR:  {message}\n", "pgcode": code, "cursor": None})
    return err


def _lock_kind(locktype: str, holds_row: bool = True) -> str:
    """A wait for another transaction's end is a row lock when the waiter holds the row's tuple lock
    (the first in line for a row does); without one it is a uniqueness check on an index entry that an
    uncommitted transaction inserted."""
    if locktype == "transactionid" and not holds_row:
        return "unique key (transaction)"
    return {
        "relation": "relation lock",
        "tuple": "row lock",
        "transactionid": "row lock (transaction)",
        "advisory": "advisory lock",
        "snapshot": "safe snapshot",
    }.get(locktype, locktype + " lock")
