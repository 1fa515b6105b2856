"""Faults the explorer places: lost acknowledgements, killed sessions, injected errors, clock skew,
network partitions, cuts and delays, Redis outages, server crashes, lease expiry.

Each ``race.<fault>(...)`` returns the function a fault actor runs (``race.fault(name, fn)``): the
schedule decides where it lands, or whether at all, and shrinking drops the ones a failure does not
need.  Faults that act on a victim's next database call are armed on the scheduler, which fires them
at that call (Scheduler.db_call), the same way for instrumented connections and scenario sessions.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import timedelta
from typing import Any, Callable

from ..dialect import ConnInfo, execute
from ..errors import HarnessError
from ..provision.base import AttachedLifecycle
from .racebase import RaceBase


class FaultsMixin(RaceBase):
    """Faults the explorer places: each returns the fault actor's function (see :meth:`Race.fault`)."""

    def fault(self, name: str, fn: Callable[..., Any]) -> None:
        """An optional move the explorer may place anywhere, or never: shrinking drops unneeded faults."""
        if name in self.actors or name in self.faults:
            raise HarnessError(f"{name!r} is already an actor or fault of race {self.name!r}.")
        self.faults[name] = fn

    def inject_error(self, victim: str, code: str, message: str = "injected by the harness") -> Callable[[], None]:
        """A fault: ``victim``'s next statement fails with this SQLSTATE / error number."""
        return lambda: self._arm(victim, "error", self.dialect.make_error(code, message))

    def lose_commit_ack(self, victim: str) -> Callable[[], None]:
        """A fault: ``victim``'s next COMMIT is durable, but its connection drops before the answer."""
        return lambda: self._arm(victim, "lost_ack", self.dialect.connection_lost())

    def kill_session(self, victim: str) -> Callable[[], None]:
        """A fault: the server ends ``victim``'s sessions now (pg_terminate_backend / KILL CONNECTION)."""
        def kill() -> None:
            sched = self._scheduler
            if sched is None:
                return
            if self._fault_admin is None:  # kept between schedules; not the conductor's (it polls waits)
                self._fault_admin = self.dialect.connect(self.database.info, autocommit=True)
            for sid in sched.sessions_of(victim):
                self.dialect.terminate(self._fault_admin, sid)
            for sid in sched.sessions_of(victim):
                # go on once the server ended it (transaction rolled back, locks released): the next
                # move then sees a settled server, and the schedule replays exactly
                if not self.dialect.wait_session_gone(self._fault_admin, sid, self.options.hang_timeout):
                    raise HarnessError(f"{victim}'s server session {sid} was still there "
                                       f"{self.options.hang_timeout:g}s after it was killed.")
            sched.fault("kill session", {"victim": victim})
        return kill

    def skew_clock(self, victim: str, ms: float, clock: Any = None) -> Callable[[], None]:
        """A fault: ``victim``'s clock jumps by ``ms`` (negative: back) from here on.

        With a :class:`harness.clock.FakeClock` (the application's clock), its reading for ``victim``
        is skewed at once.  Without, the database clock of ``victim``'s session is, at its next
        statement: PostgreSQL shadows now()/clock_timestamp()/... and adds the offset to the running
        clock; MariaDB/MySQL can only freeze a session clock, so it freezes at its reading + ``ms``.
        """
        if clock is not None:
            def skew_app() -> None:
                clock.skew(victim, ms)
                if self._scheduler is not None:
                    self._scheduler.fault("clock skew", {"victim": victim, "ms": ms, "clock": "application"})
            return skew_app
        from ..clock import DbClock

        db_clock = DbClock(self.backend)
        if db_clock.pg and not self._clock_in_setup:  # the schema is DDL: installed before any transaction
            self._setup.insert(0, db_clock.install)
            self._clock_in_setup = True

        def skew_session(conn: Any) -> None:
            if db_clock.pg or execute(conn, "SELECT @harness_clock_frozen")[0][0] is not None:
                db_clock.advance(conn, ms)
            else:
                db_clock.freeze(conn, db_clock.now(conn) + timedelta(milliseconds=ms))

        def skew_db() -> None:
            if self._scheduler is not None:
                self._scheduler.arm(victim, "before", skew_session, f"clock skew {ms:+g} ms")
        return skew_db

    # network faults (each actor's database link, the Redis lock service) ---------------------------

    def partition(self, victim: str, *, outlast_leases: bool = False) -> Callable[[], None]:
        """A fault: ``victim``'s database link holds all traffic from now on (nothing is lost).

        Its next call waits on the network, which the scheduler sees as blocked (wait-for graph:
        ``network partition``); other actors go on -- and wait for its locks.  The link heals when
        no other actor can move (or at the end of the schedule): the partition lasts as long as the
        schedule keeps others busy.  ``outlast_leases``: it also lasts until actors waiting for a
        Redis lock got it (real time passes until the victim's lease lapses) -- the partitioned
        holder that still believes it holds the lock.
        """
        link = self._db_link(victim)
        if outlast_leases:
            self._outlasting.add(victim)
        return lambda: self._net_fault(link.partition, "partition", victim)

    def cut(self, victim: str) -> Callable[[], None]:
        """A fault: ``victim``'s database connections are reset from the client's side (TCP RST); its
        next call fails with the driver's connection error, the server rolls back what was open."""
        link = self._db_link(victim)
        return lambda: self._net_fault(link.cut, "cut link", victim)

    def delay(self, victim: str, ms: float) -> Callable[[], None]:
        """A fault: every packet on ``victim``'s database link is held ``ms`` from now on (real time
        passes: leases expire, timeouts fire)."""
        link = self._db_link(victim)
        return lambda: self._net_fault(lambda: link.delay(ms), f"delay {ms:g} ms", victim)

    def redis_outage(self) -> Callable[[], None]:
        """A fault: the Redis lock service becomes unreachable (connections reset, new ones refused)
        for the rest of the schedule: does the code under test fail open or closed?"""
        if self._redis is None:
            raise HarnessError("redis_outage needs a Redis server: Race(..., redis=server.info).")
        link = self._link("redis", lambda: self.redis_info)
        return lambda: self._net_fault(link.down, "redis outage", None)

    def expire_lease(self, key: str) -> None:
        """Fault: the current holder's Redis lease on ``key`` vanishes now (recorded in the trace)."""
        from .. import locks

        client = self._redis_client()
        try:
            expiry = locks.expire_lease(client, self.redis_key(key))
        finally:
            client.close()
        if self._scheduler is not None:
            self._scheduler.fault("lease expiry", {"key": key, "holder": expiry.holder})

    def crash_server(self) -> Callable[[], None]:
        """A fault: SIGKILL the database server and restart it on the same data (crash recovery).

        Every session is gone: calls in flight fail with the driver's connection error (a COMMIT in
        flight has an unknown outcome), actors reconnect with ``ctx.connect()``.  Needs a server this
        process started (``server_factory`` in pytest); start it with fsync on to check durability
        against machine crashes too.
        """
        if isinstance(self.database.server.lifecycle, AttachedLifecycle):
            raise HarnessError(
                f"race {self.name!r}: a server crash needs a server this process started and may kill "
                f"(this one is {self.database.server.lifecycle.description}); in pytest use "
                "server_factory(backend, fsync=True) and Race(server.create_database())."
            )
        return self._crash

    def _crash(self) -> None:
        sched, server = self._scheduler, self.database.server
        with sched.server_down() if sched is not None else nullcontext():
            server.kill()
            killed = time.perf_counter()
            server.restart()
            restarted = time.perf_counter()
            self._forget_connections()
            if sched is not None:
                sched.monitor = self._control()
        if sched is not None:
            sched.fault("server crash", {"restart_ms": round((restarted - killed) * 1000, 1)})

    def _arm(self, victim: str, kind: str, error: BaseException) -> None:
        if self._scheduler is not None:
            self._scheduler.arm(victim, kind, error)

    def _db_link(self, victim: str) -> Any:
        return self._link(f"db:{victim}", lambda: self.database.info)

    def _link(self, name: str, upstream: Callable[[], ConnInfo]) -> Any:
        from ..netproxy import LinkProxy

        if name not in self._links:
            info = upstream()
            self._links[name] = LinkProxy(info.host, info.port, name=name).start()
        return self._links[name]

    def _net_fault(self, act: Callable[[], None], what: str, victim: str | None) -> None:
        act()
        if self._scheduler is not None:
            self._scheduler.fault(what, {"victim": victim} if victim else {})

    def _via_link(self, name: str, info: ConnInfo) -> ConnInfo:
        link = self._links.get(name)
        return info if link is None else replace(info, host=link.host, port=link.port)

    def _stalled_links(self) -> dict[str, Any]:
        """Actor -> its database link, for links whose partition holds someone's traffic."""
        return {name.removeprefix("db:"): link for name, link in self._links.items()
                if name.startswith("db:") and link.stalled}

    def _network_stalls(self) -> dict[str, str]:
        """Actors waiting on the network (a partition holds their traffic): wait-for graph entries."""
        return {actor: "network partition" for actor in self._stalled_links()}

    def _heal_stalled(self, lock_waiters: bool) -> bool:
        """No actor can move: end the partitions someone waits on (recorded); False if none -- or, while
        actors wait for a lock, none that should outlast leases."""
        stalled = {actor: link for actor, link in self._stalled_links().items()
                   if not (lock_waiters and actor in self._outlasting)}
        for actor, link in stalled.items():
            link.heal()
            if self._scheduler is not None:
                self._scheduler.fault("heal", {"victim": actor})
        return bool(stalled)
