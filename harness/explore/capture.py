"""Connections an app opens itself, put under the scheduler at the driver.

An app under test builds its own engine from a URL in its settings, with its own pool and driver.  While a
race captures drivers, every connection that ``psycopg2.connect``, ``psycopg.connect``
(``psycopg.Connection.connect``), ``pymysql.connect``, ``MySQLdb.connect``, and the async
``psycopg.AsyncConnection.connect`` and ``asyncpg.connect`` open -- for the app's setup, its pool, or
an actor -- comes back instrumented: inside an actor its execute/commit/rollback are
scheduling points, outside one they run straight through.  psycopg2 gets a ``connection_factory``
subclass (its C code accepts nothing else, :mod:`.pg2`); the others a proxy (:mod:`.instrument`,
:mod:`.aio`).  Async connections live only as long as the async actor's loop they were opened in: it
closes them when it ends, and a pool holding one opens another at its next checkout.  Other async
drivers' connect functions (aiomysql, asyncmy, aiopg) raise a clear error while a race captures.

What is not a decision (so a pool's state never changes a schedule, and a replay on a warm pool follows
the decisions of a cold one):

* a connection a SQLAlchemy pool opened is *bookkeeping* until the pool checks it out: the dialect's
  first-connect queries and ``pre_ping``; and again from the pool's reset on return;
* a connection Django opened is bookkeeping until Django's ``connection_created`` signal (its
  ``SET TIME ZONE``, isolation level, server-version queries: :mod:`harness.django`);
* a COMMIT or ROLLBACK on a connection with no open transaction (:func:`.instrument.open_transaction`).

The module attributes are patched only while at least one capture is active (a stack: the innermost
capture owns new connections) and restored when the last one ends.  Connections the harness opens
itself (callers in ``harness.*``) are never captured.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .aio import UNSUPPORTED, close_quietly, instrument_async, loop_of, unsupported_driver
from .instrument import InstrumentedConnection, Route, SchedulerRef, instrument

#: (module, attribute) of every connect function captured, where the module is installed
TARGETS: tuple[tuple[str, str], ...] = (
    ("psycopg2", "connect"), ("psycopg", "connect"), ("psycopg", "Connection.connect"),
    ("pymysql", "connect"), ("pymysql", "Connect"), ("MySQLdb", "connect"), ("MySQLdb", "Connect"),
    ("psycopg", "AsyncConnection.connect"), ("asyncpg", "connect"),  # async: they return a coroutine
    *UNSUPPORTED,  # async drivers the harness cannot schedule: refused (aio.unsupported_driver)
)
ASYNC_TARGETS = frozenset({("psycopg", "AsyncConnection.connect"), ("asyncpg", "connect")})


@dataclass
class DriverCapture:
    """One race's capture: its scheduler reference and the connections it instrumented."""

    sched: SchedulerRef
    connections: list[Any] = field(default_factory=list)
    active: bool = False

    def start(self) -> None:
        if not self.active:
            self.active = True
            _PATCHES.push(self)

    def stop(self) -> None:
        if self.active:
            self.active = False
            _PATCHES.pop(self)

    def live(self) -> list[Any]:
        """The captured sync connections still open (for the reset between schedules); async ones
        never outlive the loop they were opened in (:meth:`close_loop_connections`)."""
        self.connections = [c for c in self.connections if not _closed(c)]
        return [c for c in self.connections if loop_of(c) is None]

    async def close_loop_connections(self) -> None:
        """At the end of an async actor, in its loop: close the async connections opened there.  A pool
        still holding one finds it closed at its next checkout and opens another (:func:`_on_checkout`)."""
        loop = asyncio.get_running_loop()
        for conn in list(self.connections):
            if loop_of(conn) is loop:
                self.connections.remove(conn)
                if not _closed(conn):
                    await close_quietly(conn)


def _closed(conn: Any) -> bool:
    raw = getattr(conn, "raw", conn)
    is_closed = getattr(raw, "is_closed", None)  # asyncpg
    if callable(is_closed):
        return bool(is_closed())
    closed = getattr(raw, "closed", None)
    if closed is not None and not callable(closed):
        return bool(closed)  # psycopg 3 / psycopg2 (an int there)
    is_open = getattr(raw, "open", None)  # PyMySQL
    return is_open is not None and not bool(is_open)


def _from_harness(depth: int) -> bool:
    """Whether the connect call comes from the harness itself (its own sessions are never captured)."""
    name = str(sys._getframe(depth + 1).f_globals.get("__name__", ""))
    return name == "harness" or name.startswith("harness.")


def _opener(depth: int) -> str | None:
    """Whether a SQLAlchemy pool ("sqlalchemy") or Django ("django") is opening this connection (checked
    a few frames up, once per connect)."""
    frame: Any = sys._getframe(depth + 1)
    for _ in range(10):
        if frame is None:
            return None
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith("sqlalchemy.pool"):
            return "sqlalchemy"
        if name.startswith("django.db.backends"):
            return "django"
        frame = frame.f_back
    return None


class _Patches:
    """The patched connect functions, installed while any capture is active (see the module docstring)."""

    def __init__(self) -> None:
        self.stack: list[DriverCapture] = []
        self.saved: list[tuple[Any, str, Any]] = []
        self.lock = threading.Lock()

    def push(self, capture: DriverCapture) -> None:
        with self.lock:
            self.stack.append(capture)
            if len(self.stack) == 1:
                self._install()

    def pop(self, capture: DriverCapture) -> None:
        with self.lock:
            if capture in self.stack:
                self.stack.remove(capture)
            if not self.stack:
                self._uninstall()

    def owner(self) -> DriverCapture | None:
        with self.lock:
            return self.stack[-1] if self.stack else None

    def _install(self) -> None:
        seen: set[tuple[int, str]] = set()
        for module_name, attr in TARGETS:
            if module_name not in sys.modules and importlib.util.find_spec(module_name) is None:
                continue
            module: Any = importlib.import_module(module_name)
            holder, _, name = attr.rpartition(".")
            target = getattr(module, holder) if holder else module
            if (id(target), name) in seen:  # PyMySQL installed as MySQLdb: one module under two names
                continue
            seen.add((id(target), name))
            original = getattr(target, name, None)
            if original is None:
                continue
            self.saved.append((target, name, target.__dict__.get(name, original)))
            setattr(target, name, self._wrap(module_name, attr, original, classmethod_=bool(holder)))
        _listen(True)

    def _uninstall(self) -> None:
        for target, name, original in reversed(self.saved):
            setattr(target, name, original)
        self.saved.clear()
        _listen(False)
        if "django" in sys.modules:
            from ..django import listen

            listen(False)

    def _wrap(self, driver: str, attr: str, original: Callable[..., Any], classmethod_: bool) -> Any:
        def connect_from(depth: int, args: Any, kwargs: Any) -> Any:
            # depth: frames between this function and the app's call (the wrapper, a classmethod shim)
            capture = self.owner()
            if capture is None or _from_harness(depth + 1):
                return original(*args, **kwargs)
            if (driver, attr) in UNSUPPORTED:
                raise unsupported_driver(driver)
            opener = _opener(depth + 1)
            route = Route(capture.sched, pooled=opener is not None)
            if opener == "django":
                from ..django import listen

                listen(True)  # Django's connection_created ends the bookkeeping
            if (driver, attr) in ASYNC_TARGETS:
                return connect_async(capture, route, original(*args, **kwargs))
            if driver == "psycopg2":
                from .pg2 import psycopg2_connection_factory

                kwargs["connection_factory"] = psycopg2_connection_factory(
                    capture.sched, base=kwargs.get("connection_factory"), route=route)
                conn: Any = original(*args, **kwargs)
            else:
                conn = instrument(original(*args, **kwargs), capture.sched, route=route)
            capture.connections.append(conn)
            return conn

        async def connect_async(capture: DriverCapture, route: Route, opening: Any) -> Any:
            conn = instrument_async(await opening, capture.sched, route=route)
            capture.connections.append(conn)
            return conn

        def connect(*args: Any, **kwargs: Any) -> Any:
            return connect_from(1, args, kwargs)

        def connect_cls(cls: Any, *args: Any, **kwargs: Any) -> Any:
            return connect_from(1, args, kwargs)

        return classmethod(connect_cls) if classmethod_ else connect


_PATCHES = _Patches()  # the process's connect functions are one shared resource: one owner of patches


def _driver_connection(dbapi_connection: Any) -> Any:
    """The captured connection under a pool's DBAPI connection (SQLAlchemy's async adapters wrap it)."""
    if getattr(dbapi_connection, "harness_route", None) is None:
        return getattr(dbapi_connection, "_connection", dbapi_connection)
    return dbapi_connection


def _route_of(dbapi_connection: Any) -> Route | None:
    route = getattr(_driver_connection(dbapi_connection), "harness_route", None)
    return route if isinstance(route, Route) else None


def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    conn = _driver_connection(dbapi_connection)
    if loop_of(conn) is not None and _closed(conn):  # closed with the loop of the async actor it served
        from sqlalchemy.exc import DisconnectionError

        raise DisconnectionError("race-harness closed this async connection with its actor's event loop")
    route = _route_of(dbapi_connection)
    if route is not None:
        route.checked_out = True


def _on_reset(dbapi_connection: Any, record: Any, state: Any = None) -> None:
    route = _route_of(dbapi_connection)
    if route is not None and route.pooled:
        route.checked_out = False


def _listen(on: bool) -> None:
    """SQLAlchemy pool events mark when a pooled connection is the app's (checked out) or the pool's."""
    if "sqlalchemy" not in sys.modules and importlib.util.find_spec("sqlalchemy") is None:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    for name, fn in (("checkout", _on_checkout), ("reset", _on_reset), ("checkin", _on_reset)):
        if on and not event.contains(Pool, name, fn):
            event.listen(Pool, name, fn)
        elif not on and event.contains(Pool, name, fn):
            event.remove(Pool, name, fn)


__all__ = ["DriverCapture", "InstrumentedConnection", "TARGETS"]
