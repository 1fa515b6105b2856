"""psycopg2 connections under the scheduler, built the way psycopg2 itself is extended.

psycopg2's C code accepts only its own connection and cursor types (SQLAlchemy's psycopg2 dialect calls
``extras.register_uuid(None, dbapi_conn)``, which rejects a proxy object: "argument 2 must be a
connection, cursor or None").  So instead of wrapping, the harness hands psycopg2 a
``connection_factory``: a subclass of ``psycopg2.extensions.connection`` whose cursors (a
``cursor_factory`` subclass) route execute, commit and rollback through the scheduler.  An app keeps
its own ``psycopg2.connect(...)`` or ``create_engine(url, connect_args={"connection_factory": ...})``.
Calls made outside an actor (the app's setup, SQLAlchemy's first-connect queries in the main thread)
run straight through.
"""

from __future__ import annotations

from typing import Any, Callable

from .instrument import SchedulerRef, _label, _params


def psycopg2_connection_factory(sched: SchedulerRef) -> type:
    """A ``psycopg2.extensions.connection`` subclass whose execute/commit/rollback are scheduling points."""
    import importlib

    ext: Any = importlib.import_module("psycopg2.extensions")  # an optional dependency, without type stubs

    def call(conn: Any, label: str, fn: Callable[[], Any], params: Any = None) -> Any:
        scheduler = sched()
        if scheduler is None or scheduler.current() is None:
            return fn()
        sid = int(conn.get_backend_pid())  # libpq's PQbackendPID: no round trip
        scheduler.register_session(sid)
        commits = label == "COMMIT" or bool(conn.autocommit)
        return scheduler.db_call(label, sid, fn, conn=conn, commits=commits, params=_params(params))

    class Cursor(ext.cursor):  # type: ignore[misc]  # psycopg2 has no type stubs here
        def execute(self, query: Any, vars: Any = None) -> Any:
            return call(self.connection, _label(query), lambda: ext.cursor.execute(self, query, vars),
                        (vars,) if vars is not None else None)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            return call(self.connection, _label(query), lambda: ext.cursor.executemany(self, query, vars_list))

        def callproc(self, procname: str, parameters: Any = None) -> Any:
            return call(self.connection, f"CALL {procname}", lambda: ext.cursor.callproc(self, procname, parameters))

    class Connection(ext.connection):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.cursor_factory = Cursor  # every plain cursor() is an instrumented one

        def commit(self) -> None:
            call(self, "COMMIT", lambda: ext.connection.commit(self))

        def rollback(self) -> None:
            call(self, "ROLLBACK", lambda: ext.connection.rollback(self))

    Connection.__name__ = Cursor.__name__ = "Instrumented"
    Connection.__qualname__, Cursor.__qualname__ = "InstrumentedConnection", "InstrumentedCursor"
    return Connection
