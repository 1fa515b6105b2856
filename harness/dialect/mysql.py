"""The MySQL family (MariaDB, MySQL) through PyMySQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import pymysql
from pymysql.constants import CLIENT

from ..trace import ErrorInfo, ResultSet, StepResult
from .base import Capabilities, ConnInfo, Dialect, Wait, execute, run_and_commit

#: client-side errors that mean the connection is gone (server gone away, lost during query, ...)
_CONNECTION_LOST = {2006, 2013, 2014, 2045, 2055}

#: MySQL 8 keeps live lock-wait tables in performance_schema (not testable on this project's machines).
_MYSQL8_ROW_WAITS_SQL = """
SELECT rt.PROCESSLIST_ID, bt.PROCESSLIST_ID, w.REQUESTING_ENGINE_LOCK_ID, l.LOCK_MODE, l.OBJECT_NAME
FROM performance_schema.data_lock_waits w
JOIN performance_schema.threads rt ON rt.THREAD_ID = w.REQUESTING_THREAD_ID
JOIN performance_schema.threads bt ON bt.THREAD_ID = w.BLOCKING_THREAD_ID
LEFT JOIN performance_schema.data_locks l ON l.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID
WHERE rt.PROCESSLIST_ID IN ({ids})
"""
_MDL_WAITS_SQL = """
SELECT wt.PROCESSLIST_ID, ht.PROCESSLIST_ID, w.OBJECT_TYPE, w.OBJECT_SCHEMA, w.OBJECT_NAME
FROM performance_schema.metadata_locks w
JOIN performance_schema.threads wt ON wt.THREAD_ID = w.OWNER_THREAD_ID
LEFT JOIN performance_schema.metadata_locks h
  ON h.OBJECT_TYPE = w.OBJECT_TYPE AND h.OBJECT_SCHEMA <=> w.OBJECT_SCHEMA
 AND h.OBJECT_NAME <=> w.OBJECT_NAME AND h.LOCK_STATUS = 'GRANTED'
 AND h.OWNER_THREAD_ID <> w.OWNER_THREAD_ID
LEFT JOIN performance_schema.threads ht ON ht.THREAD_ID = h.OWNER_THREAD_ID
WHERE w.LOCK_STATUS = 'PENDING' AND wt.PROCESSLIST_ID IN ({ids})
"""
_STATE_SQL = """
SELECT ID, STATE FROM information_schema.PROCESSLIST WHERE ID IN ({ids})
"""


class MySQLDialect(Dialect):
    name = "mysql"
    scheme = "mysql"
    default_port = 3306
    admin_db = ""
    capabilities = Capabilities(sqlalchemy_driver="mysql+pymysql")

    def connect(self, info: ConnInfo, *, autocommit: bool = True, application_name: str | None = None,
                connect_timeout: float = 10.0, text_results: bool = False) -> pymysql.connections.Connection:
        params = dict(info.params)
        extra: dict[str, Any] = {"conv": {}} if text_results else {}  # no converters: the server's text
        conn = pymysql.connect(
            host=info.host, port=info.port, user=info.user or "root", password=info.password,
            database=info.dbname or None, autocommit=autocommit, connect_timeout=connect_timeout,
            client_flag=CLIENT.MULTI_STATEMENTS, charset=params.get("charset", "utf8mb4"),
            program_name=application_name,
            # PyMySQL builds a default TLS context on every connect (about 18 ms); loopback servers do not
            # need it, remote ones ask for it with ?ssl=1 in the URL.
            ssl_disabled=params.get("ssl", "0").lower() in ("0", "false", "off", "no"),
            **extra,
        )
        return conn

    def server_version(self, conn: Any) -> tuple[str, str]:
        version = execute(conn, "SELECT VERSION()")[0][0]
        flavor = "mariadb" if "mariadb" in version.lower() else "mysql"
        return flavor, version.split("-")[0]

    def create_database(self, admin: Any, name: str, template: str | None = None) -> None:
        execute(admin, f"CREATE DATABASE {self.quote_ident(name)} CHARACTER SET utf8mb4")

    def drop_database(self, admin: Any, name: str) -> None:
        execute(admin, f"DROP DATABASE IF EXISTS {self.quote_ident(name)}")

    def list_databases(self, admin: Any, prefix: str) -> list[str]:
        rows = execute(admin, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        return [r[0] for r in rows if r[0].startswith(prefix)]

    def session_id(self, conn: Any) -> int:
        return int(conn.thread_id())

    def waits(self, monitor: Any, session_ids: list[int]) -> list[Wait]:
        if not session_ids:
            return []
        ids = ",".join(str(int(i)) for i in session_ids)
        found: dict[int, list[Wait]] = {}
        for wait in self._row_waits(monitor, ids, set(session_ids)):
            found.setdefault(wait.waiter, []).append(wait)
        for waiter, holder, otype, schema, oname in execute(monitor, _MDL_WAITS_SQL.format(ids=ids)):
            kind = "user lock" if otype == "USER LEVEL LOCK" else "metadata lock"
            obj = ".".join(x for x in (schema, oname) if x)
            # PENDING with nobody holding the lock: its holder released it and the server granted it,
            # but the row changes only when the waiter's own thread wakes -- in transition
            found.setdefault(int(waiter), []).append(
                Wait(int(waiter), int(holder) if holder else None, kind, f"{otype} {obj}".strip(),
                     settled=bool(holder)))
        # A session the lock views do not explain but whose state says it waits: the state is set and
        # cleared by the waiting thread itself, so it lags both ways (a wait the views do not show yet,
        # or one already granted) -- in transition, asked again
        for sid, state in execute(monitor, _STATE_SQL.format(ids=ids)):
            if int(sid) not in found and state and (state == "User lock" or state.startswith("Waiting for")):
                found[int(sid)] = [Wait(int(sid), None, "user lock" if state == "User lock" else "metadata lock",
                                        state, settled=False)]
        return [w for ws in found.values() for w in ws]

    def _row_waits(self, monitor: Any, ids: str, sessions: set[int]) -> list[Wait]:
        """InnoDB row/table lock waits, read fresh.

        MariaDB's information_schema.INNODB_TRX / INNODB_LOCK_WAITS come from a cache that is only
        refreshed when nobody read it for 100 ms, so polling every few ms would never see a new wait.
        SHOW ENGINE INNODB STATUS is built on demand (~0.1 ms); with innodb_status_output_locks=ON it
        lists every transaction's granted locks, from which the holder is found.
        """
        if _flavor(monitor) == "mysql":
            return [Wait(int(w), int(h) if h else None, "row lock", f"{m or ''} {t or ''}".strip())
                    for w, h, _, m, t in execute(monitor, _MYSQL8_ROW_WAITS_SQL.format(ids=ids))]
        status = execute(monitor, "SHOW ENGINE INNODB STATUS")[0][2]
        return [w for w in parse_innodb_status(status) if w.waiter in sessions]

    def cancel(self, monitor: Any, session_id: int) -> None:
        execute(monitor, f"KILL QUERY {int(session_id)}")

    def terminate(self, monitor: Any, session_id: int) -> None:
        try:
            execute(monitor, f"KILL CONNECTION {int(session_id)}")
        except pymysql.err.MySQLError as exc:
            if self.error_code(exc) != "1094":  # unknown thread id: already gone, as wanted
                raise

    def error_code(self, exc: BaseException) -> str | None:
        if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
            return str(exc.args[0])
        return None

    def quote_ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def quote_literal(self, value: str | None) -> str:
        if value is None:
            return "NULL"
        # PyMySQL's escaping (backslash escapes), as the driver sends values; not NO_BACKSLASH_ESCAPES
        return "'" + pymysql.converters.escape_string(value) + "'"

    def drop_tables_sql(self, tables: list[str]) -> str:
        if not tables:
            return "SELECT 1"
        return "DROP TABLE IF EXISTS " + ", ".join(self.quote_ident(t) for t in tables)

    def list_tables(self, conn: Any) -> list[str]:
        return [str(r[0]) for r in execute(conn, "SELECT table_name FROM information_schema.tables WHERE "
                                                 "table_schema = DATABASE() AND table_type = 'BASE TABLE' "
                                                 "ORDER BY table_name")]

    def open_session(self, info: ConnInfo, application_name: str | None = None) -> Any:
        return self.connect(info, autocommit=True, application_name=application_name, text_results=True)

    def run_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
        out = StepResult()
        cur = conn.cursor()
        try:
            cur.execute(sql)
            while True:
                if cur.description:
                    columns = [d[0] for d in cur.description]
                    rows = [[None if v is None else (v if isinstance(v, str) else v.decode("utf-8", "replace"))
                             for v in row] for row in cur.fetchall()]
                    out.results.append(ResultSet(columns, rows, None, len(rows)))
                else:
                    out.results.append(ResultSet(rowcount=cur.rowcount if cur.rowcount >= 0 else None))
                if not cur.nextset():
                    break
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in _CONNECTION_LOST or isinstance(exc, pymysql.err.InterfaceError):
                raise ConnectionError(str(exc)) from exc
            out.error = ErrorInfo(str(code) if code is not None else None,
                                  str(exc.args[1]) if len(exc.args) > 1 else str(exc),
                                  sqlstate=getattr(exc, "sqlstate", None))
        finally:
            cur.close()
        return out

    def make_error(self, code: str, message: str) -> BaseException:
        return pymysql.err.OperationalError(int(code), message)

    def connection_lost(self) -> BaseException:
        return pymysql.err.OperationalError(2013, "Lost connection to server during query (injected: lost ack)")

    def session_listed(self, monitor: Any, session_id: int) -> bool:
        sql = f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {int(session_id)}"
        return int(execute(monitor, sql)[0][0]) > 0  # int(): engine sessions read every value as text

    def is_connection_error(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        # 2003 can't connect, 2006 gone away, 2013 lost during query, 2055 lost (system error),
        # 1053 server shutdown, 1927 connection killed (MariaDB)
        return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in (
            2003, 2006, 2013, 2055, 1053, 1927)

    def ended_transaction(self, conn: Any, error: ErrorInfo) -> bool:
        # a deadlock victim (1213), a lock wait timeout with innodb_rollback_on_timeout (1205) and
        # MariaDB's snapshot-isolation conflict (1020) may roll the transaction back; ask the session
        if error.code not in ("1213", "1205", "1020"):
            return False
        try:
            return int(execute(conn, "SELECT @@in_transaction")[0][0]) == 0
        except pymysql.err.MySQLError:
            return False

    def reset_kept_session(self, conn: Any) -> None:
        run_and_commit(conn, "SELECT RELEASE_ALL_LOCKS()")
        run_and_commit(conn, "SET @@session.timestamp = DEFAULT, @harness_clock_frozen = NULL")

    def isolation_sql(self, level: str) -> str:
        return f"SET SESSION TRANSACTION ISOLATION LEVEL {level.upper()}"


def _flavor(conn: Any) -> str:
    """mariadb or mysql, asked once per connection."""
    flavor = getattr(conn, "_harness_flavor", None)
    if flavor is None:
        flavor = "mariadb" if "mariadb" in str(execute(conn, "SELECT VERSION()")[0][0]).lower() else "mysql"
        conn._harness_flavor = flavor
    return flavor


_TRX_THREAD = re.compile(r"^(?:MariaDB|MySQL) thread id (\d+)", re.M)
_RECORD = re.compile(r"^RECORD LOCKS space id (\d+) page no (\d+) .*?index (\S+) of table (\S+) trx id \d+ (.*)$")
_TABLE = re.compile(r"^TABLE LOCK table (\S+) trx id \d+ lock mode (\S+)( waiting)?")
_HEAP = re.compile(r"^Record lock, heap no (\d+)")


@dataclass
class _Lock:
    kind: str  # "record" | "table"
    key: tuple[str, ...]
    heaps: set[int]
    mode: str
    waiting: bool


def _locks_of(block: str) -> list[_Lock]:
    locks: list[_Lock] = []
    for line in block.splitlines():
        if m := _RECORD.match(line):
            mode = m.group(5)
            locks.append(_Lock("record", (m.group(1), m.group(2)), set(), mode.replace(" waiting", ""),
                               mode.endswith("waiting")))
        elif m := _TABLE.match(line):
            locks.append(_Lock("table", (m.group(1),), set(), m.group(2), bool(m.group(3))))
        elif (m := _HEAP.match(line)) and locks and locks[-1].kind == "record":
            locks[-1].heaps.add(int(m.group(1)))
    return locks


def parse_innodb_status(status: str) -> list[Wait]:
    """Lock waits (waiter thread id -> holder thread id) from SHOW ENGINE INNODB STATUS.

    A waiter waits for every transaction holding a lock on the record (or table) it wants, and also
    for the requests queued ahead of it there (they were enqueued first: they have waited longer),
    which it cannot pass -- as PostgreSQL's pg_blocking_pids reports soft blockers.  So a third
    session queued behind a waiting second one shows both, not only the granted holder.
    """
    section = status.split("LIST OF TRANSACTIONS FOR EACH SESSION:", 1)[-1]
    section = re.split(r"^-{4,}\n[A-Z ]+\n-{4,}$", section, maxsplit=1, flags=re.M)[0]
    trxs: list[tuple[int, bool, list[_Lock], str, int]] = []
    for block in section.split("---TRANSACTION ")[1:]:
        m = _TRX_THREAD.search(block)
        if not m:
            continue
        head, _, rest = block.partition("------- TRX HAS BEEN WAITING")
        waiting_lock, waited = "", 0
        if rest:
            waited = int(w.group(1)) if (w := re.match(r"\s*(\d+)", rest)) else 0
            waiting_lock = rest.split("\n", 1)[1] if "\n" in rest else ""
            waiting_lock = waiting_lock.split("------------------", 1)[0]
        trxs.append((int(m.group(1)), "LOCK WAIT" in head, _locks_of(block), waiting_lock, waited))
    waits: list[Wait] = []
    for thread, is_waiting, locks, waiting_text, waited in trxs:
        if not is_waiting:
            continue
        wanted = [lk for lk in (_locks_of(waiting_text) or [lk for lk in locks if lk.waiting]) if lk.waiting]
        for want in wanted[:1]:
            what = "row lock" if want.kind == "record" else "table lock"
            detail = f"{want.mode} {'/'.join(want.key)}"
            holders: list[tuple[int, str]] = []
            for other, _, other_locks, _, other_waited in trxs:
                for lk in other_locks if other != thread else []:
                    same = lk.kind == want.kind and lk.key == want.key and (want.kind == "table" or lk.heaps & want.heaps)
                    if same and not lk.waiting:
                        holders.append((other, what))
                        break
                    if same and lk.waiting and other_waited > waited:  # queued ahead of this request
                        holders.append((other, f"{what} (queued)"))
                        break
            if not holders:
                waits.append(Wait(thread, None, what, detail))
            waits.extend(Wait(thread, holder, kind, detail) for holder, kind in holders)
    return waits
