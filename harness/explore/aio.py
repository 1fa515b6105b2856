"""Instrumented asyncio connections: every awaited execute/commit/rollback becomes a scheduling point.

An async actor runs in an event loop of its own, on its own actor thread (:meth:`.scheduler.Scheduler.
_actor_main`), so a scheduling point may simply block that thread: only that actor's coroutines run on
it.  The proxies here are what :mod:`.capture` hands back for ``psycopg.AsyncConnection.connect`` and
``asyncpg.connect`` -- also to SQLAlchemy's asyncio engines, which call them -- and what
``race.instrument(conn)`` makes of such a connection.  Async drivers not listed in :data:`SUPPORTED`
are refused with a clear error rather than run unseen.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..errors import AsyncActorError
from .instrument import Route, SchedulerRef, _autocommit, _label, _params, _Proxy, open_transaction, preview_rows

SUPPORTED = "psycopg 3 (psycopg.AsyncConnection) and asyncpg, directly or under SQLAlchemy's create_async_engine " \
            "(postgresql+psycopg, postgresql+asyncpg)"
#: async drivers whose connections the harness cannot put under the scheduler: (module, connect attribute)
UNSUPPORTED: tuple[tuple[str, str], ...] = (("aiomysql", "connect"), ("asyncmy", "connect"), ("aiopg", "connect"))


def unsupported_driver(driver: str) -> AsyncActorError:
    return AsyncActorError(
        f"{driver}.connect was called under a race, but race-harness cannot schedule {driver}'s connections: their "
        f"calls would run unseen and the race could pass falsely. Supported async drivers: {SUPPORTED}. Use one "
        f"of those, or a sync driver (psycopg, psycopg2, PyMySQL) from the actor.")


class _AsyncProxy(_Proxy):
    """A proxy whose awaited driver calls go through :meth:`.scheduler.Scheduler.adb_call`."""

    __slots__ = ("_loop",)

    def __init__(self, obj: Any, sched: SchedulerRef, sid: int | None, quiet: bool = False,
                 route: Route | None = None) -> None:
        super().__init__(obj, sched, sid, quiet, route)
        object.__setattr__(self, "_loop", None)

    @property
    def harness_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop a connection was opened in (its calls work only there)."""
        loop: asyncio.AbstractEventLoop | None = self._loop
        return loop

    @property
    def raw(self) -> Any:
        return self._obj

    async def _acall(self, label: str, fn: Callable[[], Awaitable[Any]], params: Any = None,
                     conn: Any = None, commits: bool | None = None, quiet: bool = False) -> Any:
        sched = self._sched()
        route: Route | None = self._route
        raw = conn if conn is not None else getattr(self._obj, "connection", self._obj)
        if sched is None or sched.current() is None or (route is not None and route.bookkeeping):
            return await fn()
        if label in ("COMMIT", "ROLLBACK") and not open_transaction(raw):
            return await fn()
        if self._sid is not None:
            sched.register_session(self._sid)
        if commits is None:
            commits = label == "COMMIT" or _autocommit(raw)

        async def run() -> Any:
            value = await fn()
            preview = preview_rows(value if hasattr(value, "pgresult") else self._obj)
            if preview is not None:
                sched.annotate({"rows": preview})
            return value

        return await sched.adb_call(label, self._sid, run, conn=raw, point=not (quiet or self._quiet),
                                    commits=commits, params=_params(params))


# -- psycopg 3 -------------------------------------------------------------------------------------

class AsyncInstrumentedCursor(_AsyncProxy):
    """psycopg's AsyncCursor: execute/executemany are points; fetches read what execute received."""

    __slots__ = ()

    async def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = await self._acall(_label(sql), lambda: self._obj.execute(sql, *args, **kwargs), args)
        return self if result is self._obj else result

    async def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = await self._acall(_label(sql), lambda: self._obj.executemany(sql, *args, **kwargs))
        return self if result is self._obj else result

    def __aiter__(self) -> Any:
        return self._obj.__aiter__()

    async def __aenter__(self) -> "AsyncInstrumentedCursor":
        await self._obj.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._obj.__aexit__(*exc)


class _AsyncTransaction:
    """``async with conn.transaction()`` (psycopg) with its BEGIN and COMMIT/ROLLBACK as points."""

    def __init__(self, conn: _AsyncProxy, inner: Any) -> None:
        self.conn, self.inner = conn, inner

    async def __aenter__(self) -> Any:
        return await self.conn._acall("BEGIN", self.inner.__aenter__)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.conn._acall("ROLLBACK" if exc[0] else "COMMIT", lambda: self.inner.__aexit__(*exc))


class AsyncInstrumentedConnection(_AsyncProxy):
    """psycopg's AsyncConnection."""

    __slots__ = ()

    def cursor(self, *args: Any, **kwargs: Any) -> AsyncInstrumentedCursor:
        return AsyncInstrumentedCursor(self._obj.cursor(*args, **kwargs), self._sched, self._sid, self._quiet,
                                       self._route)

    async def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        cur = await self._acall(_label(sql), lambda: self._obj.execute(sql, *args, **kwargs), args)
        return AsyncInstrumentedCursor(cur, self._sched, self._sid, self._quiet, self._route)

    async def commit(self) -> Any:
        return await self._acall("COMMIT", self._obj.commit)

    async def rollback(self) -> Any:
        return await self._acall("ROLLBACK", self._obj.rollback)

    def transaction(self, *args: Any, **kwargs: Any) -> _AsyncTransaction:
        return _AsyncTransaction(self, self._obj.transaction(*args, **kwargs))

    async def __aenter__(self) -> "AsyncInstrumentedConnection":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.commit()
        else:
            await self.rollback()
        await self._obj.__aexit__(None, None, None)


# -- asyncpg ---------------------------------------------------------------------------------------

class AsyncpgConnection(_AsyncProxy):
    """asyncpg's Connection: execute/executemany/fetch*/prepared statements and transactions are
    points.  Outside a transaction block every statement commits by itself (asyncpg has no autocommit
    flag to read)."""

    __slots__ = ()

    async def _q(self, query: str, fn: Callable[[], Awaitable[Any]], args: Any = None, quiet: bool = False) -> Any:
        return await self._acall(_label(query), fn, args, conn=self._obj,
                                 commits=not self._obj.is_in_transaction(), quiet=quiet)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.execute(query, *args, **kwargs), args)

    async def executemany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.executemany(query, *args, **kwargs))

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.fetch(query, *args, **kwargs), args)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.fetchrow(query, *args, **kwargs), args)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.fetchval(query, *args, **kwargs), args)

    async def fetchmany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._q(query, lambda: self._obj.fetchmany(query, *args, **kwargs))

    async def prepare(self, query: str, *args: Any, **kwargs: Any) -> "AsyncpgStatement":
        """Preparing is watched for waits (it takes the tables' locks) but is no decision of its own."""
        stmt = await self._q(query, lambda: self._obj.prepare(query, *args, **kwargs), quiet=True)
        return AsyncpgStatement(stmt, self._sched, self._sid, self._quiet, self._route, self._obj)

    def transaction(self, *args: Any, **kwargs: Any) -> "AsyncpgTransaction":
        return AsyncpgTransaction(self, self._obj.transaction(*args, **kwargs))


class AsyncpgStatement(_AsyncProxy):
    """An asyncpg prepared statement (SQLAlchemy runs every statement as one)."""

    __slots__ = ("_conn",)

    def __init__(self, obj: Any, sched: SchedulerRef, sid: int | None, quiet: bool, route: Route | None,
                 conn: Any) -> None:
        super().__init__(obj, sched, sid, quiet, route)
        object.__setattr__(self, "_conn", conn)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        return await self._acall(_label(self._obj.get_query()), lambda: getattr(self._obj, method)(*args, **kwargs),
                                 args, conn=conn, commits=not conn.is_in_transaction())

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", *args, **kwargs)

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchmany", *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("executemany", *args, **kwargs)

    async def explain(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("explain", *args, **kwargs)


class AsyncpgTransaction:
    """asyncpg's Transaction: start is BEGIN (or a savepoint), commit and rollback are points."""

    def __init__(self, conn: AsyncpgConnection, inner: Any) -> None:
        self.conn, self.inner = conn, inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _tx(self, label: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await self.conn._acall(label, fn, conn=self.conn.raw, commits=label == "COMMIT")

    async def start(self) -> Any:
        return await self._tx("BEGIN", self.inner.start)

    async def commit(self) -> Any:
        return await self._tx("COMMIT", self.inner.commit)

    async def rollback(self) -> Any:
        return await self._tx("ROLLBACK", self.inner.rollback)

    async def __aenter__(self) -> Any:
        return await self._tx("BEGIN", self.inner.__aenter__)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._tx("ROLLBACK" if exc[0] else "COMMIT", lambda: self.inner.__aexit__(*exc))


def is_async_connection(conn: Any) -> bool:
    """Whether ``conn`` is a connection of a supported async driver (instrumented or not)."""
    if isinstance(conn, _AsyncProxy):
        return True
    module = type(conn).__module__
    return module.startswith("asyncpg") or (module.startswith("psycopg") and type(conn).__name__ == "AsyncConnection")


def instrument_async(conn: Any, sched: SchedulerRef, *, route: Route | None = None, quiet: bool = False) -> Any:
    """Wrap a psycopg AsyncConnection or an asyncpg Connection (opened in the running loop)."""
    if isinstance(conn, _AsyncProxy):
        return conn
    module = type(conn).__module__
    if module.startswith("asyncpg"):
        proxy: _AsyncProxy = AsyncpgConnection(conn, sched, int(conn.get_server_pid()), quiet, route)
    elif module.startswith("psycopg") and hasattr(conn, "pgconn"):
        proxy = AsyncInstrumentedConnection(conn, sched, int(conn.info.backend_pid), quiet, route)
    else:
        raise unsupported_driver(module.partition(".")[0])
    object.__setattr__(proxy, "_loop", asyncio.get_running_loop())
    return proxy


def loop_of(conn: Any) -> asyncio.AbstractEventLoop | None:
    """The loop an instrumented async connection was opened in (None: not an async connection)."""
    return conn.harness_loop if isinstance(conn, _AsyncProxy) else None


def closed(conn: Any) -> bool:
    raw = getattr(conn, "raw", conn)
    is_closed = getattr(raw, "is_closed", None)  # asyncpg
    if callable(is_closed):
        return bool(is_closed())
    return bool(getattr(raw, "closed", False))


async def close_quietly(conn: Any) -> None:
    """Close an async connection at the end of its loop (an error here changes no outcome)."""
    try:
        await conn.raw.close()
    except Exception:
        terminate = getattr(conn.raw, "terminate", None)
        if terminate is not None:
            terminate()

__all__ = ["SUPPORTED", "UNSUPPORTED", "AsyncInstrumentedConnection", "AsyncInstrumentedCursor",
           "AsyncpgConnection", "instrument_async", "unsupported_driver"]
