"""The MySQL family (MariaDB, MySQL) through PyMySQL."""

from __future__ import annotations

from typing import Any, Callable

import pymysql
from pymysql.constants import CLIENT

from ..trace import ErrorInfo, ResultSet, StepResult
from .base import ConnInfo, Dialect, Wait, execute

#: client-side errors that mean the connection is gone (server gone away, lost during query, ...)
_CONNECTION_LOST = {2006, 2013, 2014, 2045, 2055}

#: InnoDB row-lock waits with their blocker (MariaDB keeps INNODB_LOCK_WAITS; MySQL 8 moved it to
#: performance_schema.data_lock_waits, see MySQL8Waits below), user locks (GET_LOCK) and metadata locks
#: from performance_schema.metadata_locks.
_ROW_WAITS_SQL = """
SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, l.lock_mode, l.lock_table
FROM information_schema.INNODB_LOCK_WAITS w
JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id
JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
LEFT JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.requested_lock_id
WHERE r.trx_mysql_thread_id IN ({ids})
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
        for waiter, holder, mode, table in execute(monitor, _ROW_WAITS_SQL.format(ids=ids)):
            found.setdefault(int(waiter), []).append(
                Wait(int(waiter), int(holder) if holder else None, "row lock", f"{mode or ''} {table or ''}".strip()))
        for waiter, holder, otype, schema, oname in execute(monitor, _MDL_WAITS_SQL.format(ids=ids)):
            kind = "user lock" if otype == "USER LEVEL LOCK" else "metadata lock"
            obj = ".".join(x for x in (schema, oname) if x)
            found.setdefault(int(waiter), []).append(
                Wait(int(waiter), int(holder) if holder else None, kind, f"{otype} {obj}".strip()))
        # A session the lock views do not explain but whose state says it waits (e.g. a lock wait
        # that started before the views caught up) still counts as blocked, holder unknown.
        for sid, state in execute(monitor, _STATE_SQL.format(ids=ids)):
            if int(sid) not in found and state and (state == "User lock" or state.startswith("Waiting for")):
                found[int(sid)] = [Wait(int(sid), None, "user lock" if state == "User lock" else "metadata lock", state)]
        return [w for ws in found.values() for w in ws]

    def cancel(self, monitor: Any, session_id: int) -> None:
        execute(monitor, f"KILL QUERY {int(session_id)}")

    def terminate(self, monitor: Any, session_id: int) -> None:
        execute(monitor, f"KILL CONNECTION {int(session_id)}")

    def error_code(self, exc: BaseException) -> str | None:
        if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
            return str(exc.args[0])
        return None

    def quote_ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

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
                                  str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        finally:
            cur.close()
        return out

    def isolation_sql(self, level: str) -> str:
        return f"SET SESSION TRANSACTION ISOLATION LEVEL {level.upper()}"
