"""Turning a server's own statement logging on for one database, and collecting what it logged.

PostgreSQL: the server must run its logging collector with ``csvlog`` among its destinations (a
local server the recorder starts does, :data:`PG_SERVER_OPTIONS`); ``log_statement = all`` is set on
the recording's database only (``ALTER DATABASE``), so nothing outside it changes and nothing is left
behind when the database is dropped.  MariaDB: the general log is global; it is switched to the
``mysql.general_log`` table for the run on a server the harness started; a ``--mysql-dsn`` server
must have it on already (the harness never changes a server it did not start).

The harness's own connections are left out: by application_name on PostgreSQL, by thread id on
MariaDB.  Waits here poll a server fact with a deadline.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Protocol

import psycopg

from ..dialect import execute
from ..errors import ProvisionError
from ..provision import Database
from . import mysqllog, pglog
from .statements import Statement

#: the application_name of the recorder's own connections (left out of the recording)
OWN_APPLICATION = "harness-record"
#: settings a local PostgreSQL server needs at start for recording (logging_collector cannot change later)
PG_SERVER_OPTIONS = {"logging_collector": "on", "log_destination": "csvlog", "log_rotation_size": "0",
                     "log_rotation_age": "0", "log_directory": "log"}
FLUSH_TIMEOUT = 20.0


class Capture(Protocol):
    """Logging of one database's statements, on between :meth:`start` and :meth:`stop`."""

    source: str  # where the statements came from, for messages

    def start(self) -> None: ...

    def stop(self) -> list[Statement]: ...


def capture_for(db: Database) -> Capture:
    return PgCapture(db) if db.backend == "postgres" else MysqlCapture(db)


def _poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline, delay = time.monotonic() + timeout, 0.001
    while not check():
        if time.monotonic() > deadline:
            raise ProvisionError(f"recording: {what} did not happen within {timeout:.0f}s.")
        time.sleep(delay)  # a poll of a server fact, backing off; not a stand-in for synchronisation
        delay = min(delay * 2, 0.05)


class PgCapture:
    def __init__(self, db: Database) -> None:
        self.db, self.source, self._file, self._offset = db, "csvlog", "", 0

    def _own(self) -> Any:
        return self.db.server.dialect.connect(self.db.info, autocommit=True, application_name=OWN_APPLICATION)

    def start(self) -> None:
        try:
            self._start()
        except psycopg.Error as exc:
            raise ProvisionError(_pg_refused(self.db, exc)) from exc

    def _start(self) -> None:
        admin = self.db.server.admin()
        try:
            collector = execute(admin, "SHOW logging_collector")[0][0]
            destinations = execute(admin, "SHOW log_destination")[0][0]
            if collector != "on" or "csvlog" not in destinations:
                raise ProvisionError(
                    f"recording on {self.db.server.describe()} needs logging_collector = on and csvlog in "
                    f"log_destination (now: logging_collector = {collector}, log_destination = {destinations}). "
                    "Set both in postgresql.conf and restart the server, or let the harness start its own "
                    "local server (no --pg-dsn).")
            ident = self.db.dialect.quote_ident(self.db.name)
            execute(admin, f"ALTER DATABASE {ident} SET log_statement = 'all'")
            # a statement failing in PARSE/BIND is logged only as an ERROR row: with its values, please
            execute(admin, f"ALTER DATABASE {ident} SET log_parameter_max_length_on_error = -1")
            _poll(lambda: bool(execute(admin, "SELECT pg_current_logfile('csvlog') IS NOT NULL")[0][0]),
                  FLUSH_TIMEOUT, "the csvlog file to appear")
            self._file = str(execute(admin, "SELECT pg_current_logfile('csvlog')")[0][0])
            self._offset = int(execute(admin, "SELECT size FROM pg_stat_file(%s)", (self._file,))[0][0])
            self.source = f"{self.db.server.flavor} {self.db.server.version} csvlog {self._file}"
        finally:
            admin.close()

    def read(self) -> str:
        """The csvlog text written since :meth:`start`, up to a marker statement of our own."""
        marker = f"harness-record-end-{uuid.uuid4().hex}"
        with self._own() as own:
            execute(own, f"SELECT '{marker}'")
        admin = self.db.server.admin()
        text = ""
        try:
            def flushed() -> bool:
                nonlocal text
                size = int(execute(admin, "SELECT size FROM pg_stat_file(%s)", (self._file,))[0][0])
                text = str(execute(admin, "SELECT pg_read_file(%s, %s, %s)",
                                   (self._file, self._offset, size - self._offset))[0][0])
                return marker in text

            _poll(flushed, FLUSH_TIMEOUT, "the server's logging collector writing the run's statements")
        finally:
            admin.close()
        return text

    def stop(self) -> list[Statement]:
        try:
            text = self.read()
        except psycopg.Error as exc:
            raise ProvisionError(_pg_refused(self.db, exc)) from exc
        return pglog.parse_csvlog(text, self.source, database=self.db.name,
                                  exclude_applications=frozenset({OWN_APPLICATION}))


def _pg_refused(db: Database, exc: Exception) -> str:
    return (f"recording on {db.server.describe()}: the server refused ({str(exc).strip()}); recording needs a "
            "superuser (ALTER DATABASE … SET log_statement, pg_read_file of the csvlog).")


class MysqlCapture:
    def __init__(self, db: Database) -> None:
        self.db, self.source = db, "mysql.general_log"
        self._admin: Any = None
        self._saved: tuple[Any, Any] | None = None
        self._since: Any = None
        self._own = ""  # the recorder's own thread id, left out

    def start(self) -> None:
        self._admin = self.db.server.admin()
        row = execute(self._admin, "SELECT @@global.general_log, @@global.log_output, NOW(6), CONNECTION_ID()")[0]
        self._saved, self._since, self._own = (row[0], row[1]), row[2], str(row[3])
        outputs = {o for o in str(row[1]).upper().split(",") if o and o != "NONE"}
        on = str(row[0]) in ("1", "ON") and "TABLE" in outputs
        self.source = f"{self.db.server.flavor} {self.db.server.version} mysql.general_log"
        if on:
            self._saved = None  # nothing to restore
            return
        if self.db.server.provisioner == "dsn":  # the harness never changes a server it did not start
            self._admin.close()
            raise ProvisionError(
                f"recording on {self.db.server.describe()} needs the general log in its table (now: general_log = "
                f"{row[0]}, log_output = {row[1]}). Turn it on for the recording with `SET GLOBAL log_output = "
                f"'{','.join(sorted(outputs | {'TABLE'}))}'; SET GLOBAL general_log = ON` (and back off afterwards), "
                "or let the harness start its own local server (no --mysql-dsn).")
        try:
            execute(self._admin, "SET GLOBAL log_output = %s", (",".join(sorted(outputs | {"TABLE"})),))
            execute(self._admin, "SET GLOBAL general_log = ON")
        except Exception as exc:
            self._admin.close()
            raise ProvisionError(f"recording on {self.db.server.describe()}: cannot turn the general log on: {exc}.") \
                from exc

    def stop(self) -> list[Statement]:
        try:
            rows = execute(self._admin, "SELECT thread_id, command_type, argument FROM mysql.general_log "
                                        "WHERE event_time >= %s", (self._since,))
        finally:
            try:
                if self._saved is not None:  # we turned it on: back as it was
                    execute(self._admin, f"SET GLOBAL general_log = {int(str(self._saved[0]) in ('1', 'ON'))}")
                    execute(self._admin, "SET GLOBAL log_output = %s", (self._saved[1],))
            finally:
                self._admin.close()
        entries = mysqllog.table_entries([(r[0], r[1], r[2]) for r in rows])
        return mysqllog.statements(entries, self.source, database=self.db.name,
                                   exclude_threads=frozenset({self._own}))
