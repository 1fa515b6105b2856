"""Instrumented DB-API handles: every execute/commit/rollback becomes a scheduling point.

Code under test does not change: it receives these proxies where it expected a psycopg 3 or PyMySQL
connection (psycopg2 gets a subclass instead, :mod:`.pg2`; connections an app opens itself are captured,
:mod:`.capture`).  Calls made outside a scheduled actor (setup, checks) run straight through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .scheduler import Scheduler

SchedulerRef = Callable[[], "Scheduler | None"]


@dataclass
class Route:
    """How a captured connection's calls reach the scheduler (see :mod:`.capture`): one a SQLAlchemy
    pool or Django opened is theirs (its queries are bookkeeping, no decisions) until the pool checks it
    out or Django has finished connecting; ``close_after_schedule``: it belongs to an actor thread's
    Django connection, which dies with the thread, so the race closes it after the schedule."""

    sched: SchedulerRef
    pooled: bool = False
    checked_out: bool = False
    close_after_schedule: bool = False
    touched: bool = False  # an actor called through it this schedule: the reset after it has work to do

    @property
    def bookkeeping(self) -> bool:
        return self.pooled and not self.checked_out


def open_transaction(conn: Any) -> bool:
    """Whether the connection may have a transaction open (True where the driver cannot tell).

    A COMMIT or ROLLBACK with none orders nothing (psycopg 2 and 3 then send nothing at all), so it is no
    scheduling point: pools and ORMs issue such resets freely, 2-3 per statement.  PyMySQL's
    ``server_status`` is no such witness: MariaDB leaves its in-transaction bit unset after a plain
    SELECT, whose COMMIT still ends a REPEATABLE READ snapshot."""
    conn = getattr(conn, "connection", conn)  # cursors name their connection
    in_transaction = getattr(conn, "is_in_transaction", None)  # asyncpg
    if callable(in_transaction):
        return bool(in_transaction())
    info = getattr(conn, "info", None)
    status = getattr(info, "transaction_status", None)  # psycopg 3 and psycopg2: IDLE is 0
    if status is not None:
        return int(status) != 0
    return True


def scheduled(sched_ref: SchedulerRef, conn: Any, sid: int | None, label: str, fn: Callable[[], Any], *,
              params: Any = None, quiet: bool = False, route: Route | None = None,
              annotate: Callable[[Any, Scheduler], None] | None = None) -> Any:
    """Run one driver call of an instrumented connection: a scheduling point inside an actor (unless it
    is bookkeeping), straight through outside one.  The one path of proxies and psycopg2 subclasses."""
    sched = sched_ref()
    if sched is None or sched.current() is None or (route is not None and route.bookkeeping):
        return fn()
    if route is not None:
        route.touched = True
    if label in ("COMMIT", "ROLLBACK") and not open_transaction(conn):
        return fn()
    if sid is not None:
        sched.register_session(sid)
    commits = label == "COMMIT" or _autocommit(conn)

    def run() -> Any:
        value = fn()
        if annotate is not None:
            annotate(value, sched)
        return value

    return sched.db_call(label, sid, run, conn=getattr(conn, "connection", conn), point=not quiet,
                         commits=commits, params=_params(params))


def session_id_of(conn: Any) -> int | None:
    """The server's id for a raw DB-API connection of any supported driver."""
    info = getattr(conn, "info", None)
    if info is not None and hasattr(info, "backend_pid"):  # psycopg 3
        return int(info.backend_pid)
    if hasattr(conn, "get_backend_pid"):  # psycopg2
        return int(conn.get_backend_pid())
    if hasattr(conn, "get_server_pid"):  # asyncpg
        return int(conn.get_server_pid())
    if hasattr(conn, "thread_id"):  # PyMySQL
        return int(conn.thread_id())
    return None


def _label(sql: Any) -> str:
    text = sql.decode() if isinstance(sql, bytes) else str(getattr(sql, "text", sql))
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


class _Proxy:
    __slots__ = ("_obj", "_sched", "_sid", "_quiet", "_route")

    def __init__(self, obj: Any, sched: SchedulerRef, sid: int | None, quiet: bool = False,
                 route: Route | None = None) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_sched", sched)
        object.__setattr__(self, "_sid", sid)
        object.__setattr__(self, "_quiet", quiet)  # calls are watched for waits but are no decisions
        object.__setattr__(self, "_route", route)  # a captured connection's (see .capture)

    @property
    def harness_route(self) -> Route | None:
        route: Route | None = self._route
        return route

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, psycopg.Connection) holds, as drivers/ORMs check
        return type(self._obj)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._obj, name, value)

    def _call(self, label: str, fn: Callable[[], Any], params: Any = None) -> Any:
        def rows(value: Any, sched: Scheduler) -> None:
            # psycopg 3's connection.execute returns its cursor; cursors' execute return a count or themselves
            preview = preview_rows(value if hasattr(value, "pgresult") else self._obj)
            if preview is not None:
                sched.annotate({"rows": preview})

        return scheduled(self._sched, self._obj, self._sid, label, fn, params=params, quiet=self._quiet,
                         route=self._route, annotate=rows)


def preview_rows(cursor: Any, limit: int = 3) -> list[list[str | None]] | None:
    """The first rows a statement returned, read without consuming them (psycopg 3's result, PyMySQL's
    buffered rows), for the trace; None where the driver offers no such look (psycopg2)."""
    res = getattr(cursor, "pgresult", None)
    if res is not None and res.nfields:  # psycopg 3: the libpq result, text or binary
        def text(v: bytes | None) -> str | None:
            return None if v is None else v.decode("utf-8", "replace")
        return [[text(res.get_value(r, c)) for c in range(res.nfields)] for r in range(min(res.ntuples, limit))]
    rows = getattr(cursor, "_rows", None)  # PyMySQL's buffered cursor
    if isinstance(rows, (list, tuple)) and getattr(cursor, "description", None):
        return [[None if v is None else str(v) for v in row] for row in rows[:limit]]
    return None


def _params(args: Any) -> str | None:
    """Bound parameter values as the trace shows them (``%s`` alone says little), kept short."""
    if not args:
        return None
    text = repr(args[0] if isinstance(args, tuple) and len(args) == 1 else args)
    return text if len(text) <= 200 else text[:197] + "..."


def _autocommit(handle: Any) -> bool:
    """Whether a statement on this connection (or cursor) commits by itself."""
    conn = getattr(handle, "connection", handle)  # cursors name their connection
    mode = getattr(conn, "autocommit", False)  # psycopg 3 / psycopg2: a bool; PyMySQL: a method
    return bool(conn.get_autocommit()) if callable(mode) else bool(mode)


class InstrumentedCursor(_Proxy):
    __slots__ = ()

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._call(_label(sql), lambda: self._obj.execute(sql, *args, **kwargs), args)
        return self if result is self._obj else result  # psycopg 3 returns the cursor (chaining)

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._call(_label(sql), lambda: self._obj.executemany(sql, *args, **kwargs))
        return self if result is self._obj else result

    def callproc(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(f"CALL {name}", lambda: self._obj.callproc(name, *args, **kwargs))

    def __iter__(self) -> Any:
        return iter(self._obj)

    def __enter__(self) -> "InstrumentedCursor":
        self._obj.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._obj.__exit__(*exc)


class _Transaction:
    """psycopg 3's ``conn.transaction()`` block, with its BEGIN and COMMIT/ROLLBACK as points."""

    def __init__(self, conn: "InstrumentedConnection", args: Any, kwargs: Any) -> None:
        self.conn, self.inner = conn, conn._obj.transaction(*args, **kwargs)

    def __enter__(self) -> Any:
        return self.conn._call("BEGIN", self.inner.__enter__)

    def __exit__(self, *exc: Any) -> Any:
        return self.conn._call("ROLLBACK" if exc[0] else "COMMIT", lambda: self.inner.__exit__(*exc))


class InstrumentedConnection(_Proxy):
    __slots__ = ()

    def cursor(self, *args: Any, **kwargs: Any) -> InstrumentedCursor:
        return InstrumentedCursor(self._obj.cursor(*args, **kwargs), self._sched, self._sid, self._quiet, self._route)

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:  # psycopg 3 shortcut
        cur = self._call(_label(sql), lambda: self._obj.execute(sql, *args, **kwargs), args)
        return InstrumentedCursor(cur, self._sched, self._sid, self._quiet, self._route)

    def commit(self) -> Any:
        return self._call("COMMIT", self._obj.commit)

    def rollback(self) -> Any:
        return self._call("ROLLBACK", self._obj.rollback)

    def begin(self) -> Any:  # PyMySQL
        return self._call("BEGIN", self._obj.begin)

    def transaction(self, *args: Any, **kwargs: Any) -> _Transaction:
        return _Transaction(self, args, kwargs)

    def __enter__(self) -> "InstrumentedConnection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # commit/rollback as points, then let the driver do the rest of its own `with` (close or not)
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        self._obj.__exit__(None, None, None)

    @property
    def raw(self) -> Any:
        return self._obj


def instrument(conn: Any, sched: SchedulerRef, *, quiet: bool = False, route: Route | None = None) -> Any:
    """Wrap a raw DB-API connection so its calls become scheduling points (``quiet``: only watched).
    A connection that is instrumented already (a captured one, a psycopg2 subclass) is returned as is."""
    if isinstance(conn, InstrumentedConnection) or getattr(conn, "harness_route", None) is not None:
        return conn
    return InstrumentedConnection(conn, sched, session_id_of(conn), quiet, route)
