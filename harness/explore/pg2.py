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

from .instrument import Route, SchedulerRef, _label, scheduled


def psycopg2_connection_factory(sched: SchedulerRef, *, base: type | None = None, route: Route | None = None) -> type:
    """A ``psycopg2.extensions.connection`` subclass (of ``base``, an app's own factory, if given) whose
    execute/commit/rollback are scheduling points; ``route``: a captured connection's (see .capture)."""
    import importlib

    ext: Any = importlib.import_module("psycopg2.extensions")  # an optional dependency, without type stubs
    parent: Any = base or ext.connection

    def call(conn: Any, label: str, fn: Callable[[], Any], params: Any = None) -> Any:
        scheduler = sched()
        if scheduler is None or scheduler.current() is None:
            return fn()  # not even the pid: outside actors nothing is asked of the connection
        # libpq's PQbackendPID: no round trip
        return scheduled(sched, conn, int(conn.get_backend_pid()), label, fn, params=params, route=conn.harness_route)

    class CursorMixin:
        """In front of psycopg2's cursor class (or an app's own: RealDictCursor...): the calls as points."""

        connection: Any

        def execute(self, query: Any, vars: Any = None) -> Any:
            return call(self.connection, _label(query), lambda: super(CursorMixin, self).execute(query, vars),  # type: ignore[misc]
                        (vars,) if vars is not None else None)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            return call(self.connection, _label(query),
                        lambda: super(CursorMixin, self).executemany(query, vars_list))  # type: ignore[misc]

        def callproc(self, procname: str, parameters: Any = None) -> Any:
            return call(self.connection, f"CALL {procname}",
                        lambda: super(CursorMixin, self).callproc(procname, parameters))  # type: ignore[misc]

    made: dict[type, type] = {}

    def instrumented(factory: type) -> type:
        if issubclass(factory, CursorMixin):
            return factory
        if factory not in made:
            made[factory] = type(f"Instrumented{factory.__name__}", (CursorMixin, factory), {})
        return made[factory]

    class Connection(parent):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.harness_route = route or Route(sched)
            factory: Any = getattr(self, "cursor_factory")  # noqa: B009  # psycopg2's C attribute
            self.cursor_factory = instrumented(factory or ext.cursor)  # every cursor() is one

        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("cursor_factory") is not None:  # an app's own cursor class, per call
                kwargs["cursor_factory"] = instrumented(kwargs["cursor_factory"])
            return parent.cursor(self, *args, **kwargs)

        def commit(self) -> None:
            call(self, "COMMIT", lambda: parent.commit(self))

        def rollback(self) -> None:
            call(self, "ROLLBACK", lambda: parent.rollback(self))

    Connection.__name__, Connection.__qualname__ = "Instrumented", "InstrumentedConnection"
    return Connection

