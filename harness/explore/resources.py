"""What actors and the harness connect with, scoped to one race.

Connections, engines and locks handed to actors are instrumented (their calls are scheduling points);
PostgreSQL connections are pooled between schedules and reset; Redis clients and network links are
made per race and reset after each schedule; the control connection watches the server's waits.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any, Callable

from ..errors import HarnessError
from .instrument import InstrumentedConnection, instrument, session_id_of
from .racebase import RaceBase
from .scheduler import Scheduler


class ResourcesMixin(RaceBase):
    """What actors and the harness connect with: instrumented connections, engines, locks, Redis
    clients and network links, kept or reset between schedules."""

    @property
    def redis_info(self) -> Any:
        """Where the race's Redis server is (a ConnInfo), asked for on first use so no test starts it needlessly."""
        return self._redis() if callable(self._redis) else self._redis

    def _sched(self) -> Scheduler | None:
        return self._scheduler

    def connect(self, **kwargs: Any) -> InstrumentedConnection:
        """A new instrumented connection with the driver's defaults (autocommit off)."""
        autocommit = bool(kwargs.pop("autocommit", False))
        quiet = bool(kwargs.pop("quiet", False))
        actor = self._scheduler.current() if self._scheduler else None
        if actor is not None and f"db:{actor.name}" in self._links:  # network faults: through its proxy
            info = self._via_link(f"db:{actor.name}", self.database.info)
            # a call (no decision) so that a connect held by a partition is seen as waiting; its
            # session id is not known yet (0)
            raw = self._scheduler.call("connect", 0, lambda: self.dialect.connect(  # type: ignore[union-attr]
                info, autocommit=autocommit, **kwargs), point=False)
            self._opened.append(raw)
        elif self.dialect.capabilities.reuses_sessions and not kwargs and self._idle[autocommit]:
            raw = self._idle[autocommit].pop()
            self._lent.append((autocommit, raw))
        elif self.dialect.capabilities.reuses_sessions and not kwargs:
            raw = self.dialect.connect(self.database.info, autocommit=autocommit)
            self._lent.append((autocommit, raw))
        else:
            raw = self.dialect.connect(self.database.info, autocommit=autocommit, **kwargs)
            self._opened.append(raw)
        return InstrumentedConnection(raw, self._sched, session_id_of(raw), quiet)

    def session_for(self, actor: str) -> Any:
        """A scenario session's connection (server text values, named after its actor): kept between
        schedules and reset where the dialect reuses sessions -- a PostgreSQL connect forks a backend,
        and forking and ending three per schedule cost more server CPU than the schedule's statements."""
        if not self.dialect.capabilities.reuses_sessions:
            return self.track(self.dialect.open_session(self.database.info, actor))
        raw = self._idle_sessions.pop(actor, None)
        if raw is None or self.dialect.is_closed(raw):
            raw = self.dialect.open_session(self.database.info, actor)
        self._lent_sessions.append((actor, raw))
        return raw

    def _return_lent(self) -> None:
        """Reset lent connections (Capabilities.reuses_sessions) and keep them for the next schedule."""
        for autocommit, raw in self._lent:
            if self._reset(raw, functools.partial(self.dialect.reset_session, autocommit=autocommit)):
                self._idle[autocommit].append(raw)
        for actor, raw in self._lent_sessions:
            if self._reset(raw, self.dialect.reset_scenario_session):
                self._idle_sessions[actor] = raw
        self._lent.clear()
        self._lent_sessions.clear()

    def _reset(self, raw: Any, reset: Callable[[Any], None]) -> bool:
        """Whether a lent connection is alive and now reset; one that is not is closed."""
        try:
            if not self.dialect.is_closed(raw):
                reset(raw)
                return True
        except Exception:
            pass
        try:
            raw.close()
        except Exception:
            pass
        return False

    def psycopg2_connection_factory(self) -> type:
        """For an app on psycopg2: ``psycopg2.connect(dsn, connection_factory=race.psycopg2_connection_factory())``
        or ``create_engine(url, connect_args={"connection_factory": ...})`` -- its statements, commits and
        rollbacks inside actors become scheduling points (see :mod:`.pg2`)."""
        from .pg2 import psycopg2_connection_factory

        return psycopg2_connection_factory(self._sched)

    def instrument(self, conn: Any) -> Any:
        """Put a connection an actor opened itself (psycopg 3, PyMySQL; in an async actor psycopg's
        AsyncConnection or an asyncpg connection, e.g. from an asyncpg pool) under the scheduler."""
        from .aio import instrument_async, is_async_connection

        if is_async_connection(conn):  # its owner closes it (a pool, the actor), in the actor's loop
            return instrument_async(conn, self._sched)
        self._opened.append(conn)
        return instrument(conn, self._sched)

    def engine(self, **kwargs: Any) -> Any:
        """A SQLAlchemy engine for this database (psycopg 3 / PyMySQL), made once and pooled across
        schedules like an app's own: its connections are captured ones (see :mod:`.capture`), so its
        statements are scheduling points and its pool's bookkeeping is not."""
        key = repr(sorted(kwargs.items()))
        if key not in self._engine_cache:
            import sqlalchemy
            from sqlalchemy.engine import URL

            info = self.database.info
            url = URL.create(self.dialect.capabilities.sqlalchemy_driver, username=info.user or None,
                             password=info.password or None, host=info.host, port=info.port, database=info.dbname)
            self.capture_drivers()
            self._engine_cache[key] = self.instrument_engine(sqlalchemy.create_engine(url, **kwargs))
        return self._engine_cache[key]

    def lock(self, kind: str, key: str, *, ttl_ms: int = 30_000, conn: Any = None, xact: bool = False) -> Any:
        """A lock client whose waits the scheduler sees: ``redis``, ``get_lock`` or ``advisory``."""
        from .. import locks

        observer = _SchedulerObserver(self, name=key)
        actor = self._scheduler.current() if self._scheduler else None
        owner = actor.name if actor else "harness"
        if kind == "redis":
            if self.redis_info is None:
                raise HarnessError("race.lock('redis', ...) needs a Redis server: Race(..., redis=server.info).")
            client = self._redis_client(actor_side=True)
            self._opened.append(client)
            key = self.redis_key(key)
            self._redis_keys.add(key)
            return locks.RedisLock(client, key, ttl_ms=ttl_ms, token=locks.new_token(owner), observer=observer)
        # the lock's own statements (savepoints, lock_timeout) are watched, not decisions: the
        # observer's point before acquire/release is the one decision a lock operation needs
        connection = conn if conn is not None else self.connect(autocommit=True, quiet=True)
        if kind == "get_lock":
            return locks.MySQLUserLock(connection, locks.user_lock_name(self.database.name, key), observer=observer)
        if kind == "advisory":
            return locks.PgAdvisoryLock(connection, key, xact=xact, observer=observer)
        raise HarnessError(f"unknown lock kind {kind!r}; use redis, get_lock or advisory.")

    def call(self, label: str, conn: Any, fn: Callable[[], Any], *, statement: bool = True,
             step: str | None = None, sql: str | None = None,
             on_error: Callable[[BaseException], Any] | None = None, note: dict[str, Any] | None = None) -> Any:
        """Run ``fn`` (a call on the raw connection ``conn``) as a scheduling point whose waits in the
        server are watched; for actors that drive a connection themselves (scenario sessions).  At a
        ``statement`` a fault armed for the actor fires as on an instrumented connection; ``conn`` is
        autocommit, so a lost commit acknowledgement applies to any statement (and closes ``conn``)."""
        sched = self._scheduler
        if sched is None:
            return fn()
        try:
            sid: int | None = self.dialect.session_id(conn)
        except Exception:  # a connection already lost: nothing to watch in the server
            sid = None
        if sid is not None:
            sched.register_session(sid)
        return sched.db_call(label, sid, fn, conn=conn, commits=statement, faults=statement, step=step, sql=sql,
                             on_error=on_error, note=note)

    def step_lock_observer(self) -> Any:
        """The lock observer for a scenario step's lock action: its waits are the scheduler's facts
        (a Redis wait is invisible to the database), its step was the decision already."""
        return _SchedulerObserver(self, points=False)

    def track(self, handle: Any) -> Any:
        """Close this handle (connection, client) after the current schedule."""
        self._opened.append(handle)
        return handle

    def redis_key(self, key: str) -> str:
        """Redis keys are namespaced per race database: parallel runs share one Redis server."""
        return f"harness:{self.database.name}:{key}"

    def point(self, label: str) -> None:
        """A user-defined scheduling point (``harness.point`` inside actor code)."""
        if self._scheduler is not None:
            self._scheduler.point(label)

    def _control(self) -> Any:
        if self._monitor is None or self.dialect.is_closed(self._monitor):
            self._monitor = self.dialect.connect(self.database.info, autocommit=True)
            if not self._prepared:  # before any actor session exists: they all inherit it
                self._prepared = True
                problem = self.dialect.prepare_race_database(self._monitor, self.database.name,
                                                             self.options.hang_timeout)
                if problem:
                    warnings.warn(f"race {self.name!r} on {self.backend}: {problem}", stacklevel=3)
        return self._monitor

    def text_session(self) -> Any:
        """A connection that returns values as the server's text, as listed interleavings see them
        (scenario checks are evaluated on it, by the same evaluator)."""
        if self._text is None or self.dialect.is_closed(self._text):
            self._text = self.dialect.open_session(self.database.info)
        return self._text

    def _redis_client(self, *, actor_side: bool = False) -> Any:
        """A Redis client: the harness's own goes straight to the server; an actor's goes through the
        Redis link when an outage is declared, and never retries (redis-py's default back-off would
        hide an outage for seconds)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        info = self._via_link("redis", self.redis_info) if actor_side else self.redis_info
        return redis.Redis(host=info.host, port=info.port, password=info.password or None,
                           retry=Retry(NoBackoff(), 0), socket_timeout=30)

    def _reset_redis(self) -> None:
        """Delete what the schedule left in Redis: the keys race locks used and, when scenario steps
        take Redis locks (keys ``harness:<database>:*``), the whole namespace."""
        if not self._redis_keys and not self.redis_namespace:
            return
        client = self._redis_client()
        try:
            keys = set(self._redis_keys)
            if self.redis_namespace:
                keys.update(client.scan_iter(match=self.redis_key("*"), count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def _close_opened(self) -> None:
        self._return_lent()
        for handle in self._opened:
            try:
                (handle.dispose if hasattr(handle, "dispose") else handle.close)()
            except Exception:
                pass
        self._opened.clear()

    def _forget_connections(self) -> None:
        """After a crash: every kept connection is dead (lent ones are dropped when returned)."""
        for raw in [*self._idle[True], *self._idle[False], *self._idle_sessions.values(), self._monitor,
                    self._fault_admin, self._text]:
            try:
                if raw is not None:
                    raw.close()
            except Exception:
                pass
        self._idle, self._monitor, self._fault_admin, self._text = {True: [], False: []}, None, None, None
        self._idle_sessions = {}


class _SchedulerObserver:
    """harness.locks.LockObserver backed by the race's scheduler: lock waits are scheduling facts.
    ``points=False`` for a lock taken inside a call that was already a decision (a YAML lock step)."""

    def __init__(self, race: RaceBase, points: bool = True, name: str | None = None) -> None:
        self.race, self.points = race, points
        self.name = name  # the key as the code under test named it (the lock's own key is namespaced)

    def _sched(self) -> Scheduler | None:
        return self.race._scheduler

    def point(self, label: str) -> None:
        s = self._sched()
        if s is not None and self.points:
            s.point(label)

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        s = self._sched()
        if s is not None:
            s.lock_blocked(lock, key, holder)

    def retry_wait(self) -> None:
        s = self._sched()
        if s is not None and s.current() is not None:
            s.lock_retry_wait()
        else:
            time.sleep(0.001)  # outside a schedule: a plain bounded back-off step

    def unblocked(self) -> None:
        s = self._sched()
        if s is not None:
            s.lock_unblocked()

    def done(self, op: str, lock: str, key: str, ok: bool) -> None:
        s = self._sched()
        if s is not None:
            s.lock_done(op, lock, key, ok, name=self.name)
