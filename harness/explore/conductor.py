"""The conductor: which actor moves next, and when the schedule has settled enough to decide.

It owns the decision loop of :class:`~.scheduler.Scheduler` (the class actors' threads call into):
grant one actor, wait until the schedule settles (see :meth:`Conductor._settle`), ask the chooser,
repeat; it breaks wait-for cycles the server leaves to a timer.  Reporting hangs with the wait-for
graph and where a stuck actor is, and putting each move's trace events in a fixed order, are in
:mod:`.conductor_records`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..dialect import Dialect
from ..trace import Event, Trace, WaitEdge, wait_cycle
from .actors import (
    BLOCKED_DB,
    BLOCKED_LOCK,
    DONE,
    READY,
    RUNNING,
    ActorResult,
    Chooser,
    Divergence,
    ScheduleAborted,
    SchedulerOptions,
    ScheduleRun,
    _Actor,
)
from .conductor_records import ConductorRecords


class Conductor(ConductorRecords):
    """The decision loop and its bookkeeping; :class:`~.scheduler.Scheduler` adds the actor-side API."""

    def __init__(self, actors: dict[str, Callable[[], Any]], chooser: Chooser, *, dialect: Dialect | None,
                 monitor: Any, scenario: str = "", backend: str = "", server: str = "",
                 options: SchedulerOptions | None = None, optional: frozenset[str] = frozenset()) -> None:
        self.actors = {n: _Actor(n, fn, optional=n in optional) for n, fn in actors.items()}
        self._order = {n: i for i, n in enumerate(self.actors)}
        # actor -> faults waiting for its next call: (kind, payload, name in the trace)
        self._armed: dict[str, list[tuple[str, Any, str]]] = {}
        self.chooser, self.dialect, self.monitor = chooser, dialect, monitor
        bind = getattr(chooser, "bind", None)
        if bind is not None:  # choosers that follow steps read each actor's pending point
            bind(lambda name: self.actors[name].label)
        self.options = options or SchedulerOptions()
        self.cond = threading.Condition()
        self.aborted = False
        self._by_thread: dict[int, _Actor] = {}
        self._sids: dict[int, str] = {}  # server session id -> actor
        self._t0 = time.monotonic()
        self.trace = Trace(scenario, backend, [], server=server, sessions=list(actors))
        self.schedule: list[str] = []
        self.labels: list[str] = []
        self.preemptions = 0
        self.offered: list[list[str]] = []  # who could move at each move
        # moves that were not a lock waiter's retry: a waiter may retry only after one (two waiters'
        # failing retries must not enable each other forever)
        self._progress = 0
        # every state change an actor's thread makes bumps this; a server poll confirms the blocked set
        # only for the value it was taken at (see _settle)
        self._changes = 0
        self._confirmed = -1
        # events of the current move, put in the trace in a fixed order when the move settles
        self._pending: list[tuple[int, int, Event]] = []
        self._mover: str | None = None
        self._stall_start: float | None = None  # lock-only retries with no real move since then
        self._server_down = False  # a crash fault is restarting the server: do not ask it about waits
        # network faults (set by the race): who waits on a held link, and what to do when nobody can
        # move -- ``on_stuck(lock_waiters_present)`` heals a partition (True) or lets time pass for
        # leases first (False); both None without network faults
        self.network_stalls: Callable[[], dict[str, str]] | None = None
        self.on_stuck: Callable[[bool], bool] | None = None

    def run(self) -> ScheduleRun:
        threads = []
        for actor in self.actors.values():
            actor.thread = threading.Thread(target=self._actor_main, args=(actor,), daemon=True,
                                            name=f"harness-actor-{actor.name}")
            threads.append(actor.thread)
        with self.cond:
            for actor, thread in zip(self.actors.values(), threads):
                actor.state = RUNNING
                thread.start()
        current: str | None = None
        try:
            while True:
                self._settle()
                with self.cond:
                    if all(a.state == DONE for a in self.actors.values()):
                        break
                    if all(a.state == DONE for a in self.actors.values() if not a.optional):
                        for a in self.actors.values():  # faults the schedule never placed: not fired
                            if a.state != DONE:
                                a.skip = True
                                a.go.set()
                        self.cond.wait(timeout=0.05)
                        continue
                    runnable = [a.name for a in self.actors.values() if a.state == READY]
                    lock_waiters = [a.name for a in self.actors.values() if a.state == BLOCKED_LOCK]
                    # a harness-lock waiter may retry once another actor has moved since it failed
                    runnable += [n for n in lock_waiters if self._progress > self.actors[n].blocked_at]
                if not runnable:
                    if self.on_stuck is not None and self.on_stuck(bool(lock_waiters)):  # a partition healed
                        self._confirmed = -1
                        continue
                    if not self._wait_for_progress(lock_waiters):
                        self._hang("no actor can move")
                        break
                    continue
                ordered = sorted(runnable, key=lambda n: (n != current, self._order[n]))
                choice = self.chooser.choose(ordered, current, len(self.schedule))
                self.offered.append(ordered)
                if choice not in ordered:
                    raise Divergence(self._divergence(choice, ordered))
                if current is not None and choice != current and current in ordered:
                    self.preemptions += 1
                self._grant(choice)
                current = choice
        except BaseException:
            self._abort()
            raise
        finally:
            with self.cond:
                self._flush()
        if self.trace.hung:
            self._abort()
        for actor in self.actors.values():
            if actor.thread is not None:
                actor.thread.join(timeout=5)
        results = {n: a.result or ActorResult(n, error=ScheduleAborted()) for n, a in self.actors.items()}
        for name, result in results.items():
            result.ops = self.actors[name].ops
        return ScheduleRun(self.schedule, self.labels, results, self.trace, self.trace.hung, self.preemptions,
                           self.offered)

    def _divergence(self, choice: str, runnable: list[str]) -> str:
        """Why move N cannot be ``choice``: what each actor that cannot move is doing."""
        move = len(self.schedule) + 1
        if choice not in self.actors:
            why = f"there is no actor {choice!r} (actors: {', '.join(self.actors)})"
        else:
            actor = self.actors[choice]
            if actor.state == DONE:
                why = f"{choice} has already finished"
            elif actor.state == BLOCKED_DB:
                why = f"{choice} waits in the server ({_edges_text(actor.edges)})"
            elif actor.state == BLOCKED_LOCK and actor.lock_waits is not None:
                why = f"{choice} waits for {actor.lock_waits.lock} {actor.lock_waits.detail}"
            else:
                why = f"{choice} is {actor.state} at {actor.label}"
        return (f"the schedule cannot be followed: move {move} is {choice!r}, but only {', '.join(runnable)} "
                f"can move there ({why}); moves so far: {' '.join(self.schedule) or 'none'}. A schedule "
                "replays only against the scenario and code it was found with.")

    def _grant(self, name: str) -> None:
        actor = self.actors[name]
        self._stall_start = None
        with self.cond:
            self._flush()
            actor.segments += 1
            self.schedule.append(name)
            self.labels.append(actor.label)
            if actor.state == BLOCKED_LOCK:
                actor.lock_key = None
            else:
                self._progress += 1
            actor.state = RUNNING
            self._mover = name
            self._emit(Event(self._clock(), "launch", name, f"{name}{actor.segments}", actor.label))
            self.trace.interleaving.append(name)
            self._changed()
        actor.go.set()

    def _settle(self) -> None:
        """Return once the runnable set is a fact of the schedule, not of timing.

        Settled means: no actor is running, and a server poll during which no actor changed state
        showed every actor counted blocked still waiting on a settled wait (a holder the server
        names) and no wait-for cycle the server is about to break.  Until then the conductor waits for
        running actors and asks the server again.  A released waiter is thus seen released whatever a
        poll during the releasing COMMIT said, and a wait that began and ended between two decisions
        (a deadlock victim's rollback freeing its peer) is never confirmed, so never in the schedule.
        A cycle the server leaves to a timer (PostgreSQL) is broken here, once confirmed.
        """
        started = time.monotonic()
        delay = self.options.poll_first
        while True:
            with self.cond:
                running = [a for a in self.actors.values() if a.state == RUNNING]
                blocked = [a for a in self.actors.values() if a.state == BLOCKED_DB]
                version = self._changes
                if not running and (not blocked or self._confirmed == version):
                    if blocked and self._break_cycle(blocked):
                        continue
                    self._flush()
                    return
                if running:
                    # most calls finish within the first wait: no query; any change wakes us
                    self.cond.wait(timeout=delay)
                    in_db = any(a.sid is not None for a in self.actors.values() if a.state == RUNNING)
                    if self._changes != version or not in_db:
                        if time.monotonic() - started > self.options.hang_timeout:
                            self._hang(self._stuck_reason([a for a in self.actors.values() if a.state == RUNNING]))
                            return
                        delay = self.options.poll_first if self._changes != version else min(
                            delay * 2, self.options.poll_max)
                        continue
                    version = self._changes
            if self._server_down:
                with self.cond:
                    self.cond.wait(timeout=delay)
                continue
            edges, unsettled = self._server_waits()
            with self.cond:
                confirmed = self._changes == version
                for actor in self.actors.values():
                    if actor.state not in (RUNNING, BLOCKED_DB) or actor.sid is None:
                        continue
                    mine = [w for w in edges if w.waiter == actor.name]
                    if mine and actor.name not in unsettled:
                        actor.state, actor.edges = BLOCKED_DB, mine
                    else:
                        actor.state, actor.edges = RUNNING, []
                        confirmed = False
                if confirmed and any(a.state == RUNNING for a in self.actors.values()):
                    confirmed = False
                if confirmed and not (self.dialect is not None and self.dialect.capabilities.harness_breaks_deadlocks):
                    # the server breaks each cycle the moment it closes (InnoDB): one seen here is
                    # being broken right now -- ask again
                    confirmed = not wait_cycle(self._blocked_edges())
                if confirmed:
                    self._confirm()
            delay = min(delay * 2, self.options.poll_max)
            if time.monotonic() - started > self.options.hang_timeout:
                self._hang(self._stuck_reason([a for a in self.actors.values() if a.state == RUNNING]))
                return

    def _blocked_edges(self) -> list[WaitEdge]:
        return [w for a in self.actors.values() if a.state == BLOCKED_DB for w in a.edges]

    def _confirm(self) -> None:
        """The blocked set is settled (under ``cond``): waits become part of the schedule."""
        self._confirmed = self._changes
        for actor in self.actors.values():
            if actor.state != BLOCKED_DB:
                continue
            if not actor.blocked_in_call:
                actor.blocked_in_call, actor.blocked_move = True, len(self.schedule)
            if actor.reported != actor.edges:
                actor.reported = list(actor.edges)
                self._event("blocked", actor, actor.label, waits=actor.edges)

    def _break_cycle(self, blocked: list[_Actor]) -> bool:
        """Break a wait-for cycle among confirmed waiters when the server leaves it to a timer: cancel
        the call of the member whose wait closed it (the latest confirmed; ties by declaration order);
        the victim sees the server's own deadlock error (see Dialect.deadlock_error)."""
        if self.dialect is None or self.monitor is None or not self.dialect.capabilities.harness_breaks_deadlocks:
            return False
        cycle = wait_cycle(self._blocked_edges())
        if not cycle:
            return False
        victim = max((self.actors[n] for n in cycle), key=lambda a: (a.blocked_move, self._order[a.name]))
        if victim.victim or victim.sid is None:
            return False  # already cancelled: its error is on its way
        victim.victim = True
        self._emit(Event(self._clock(), "deadlock", victim.name, f"{victim.name}{victim.segments}", victim.label,
                         waits=[w for n in cycle for w in self.actors[n].edges],
                         detail={"cycle": cycle, "victim": victim.name, "broken_by": "harness"}))
        sid = victim.sid
        self.cond.release()
        try:
            self.dialect.cancel(self.monitor, sid)
        finally:
            self.cond.acquire()
        self._confirmed = -1
        return True

    def _wait_for_progress(self, lock_waiters: list[str]) -> bool:
        """Nobody can be chosen: wait (bounded) for an event in the server (a lock_timeout, a lease
        expiring, a cycle the server breaks) that lets someone move."""
        deadline = time.monotonic() + self.options.hang_timeout
        delay = 0.001
        done_before = sum(a.state == DONE for a in self.actors.values())
        while time.monotonic() < deadline:
            with self.cond:
                # progress: someone can be chosen, or someone finished (not: a fault that finished
                # long ago -- that made this return at once, and the conductor spin)
                if any(a.state == READY for a in self.actors.values()) or \
                        sum(a.state == DONE for a in self.actors.values()) > done_before:
                    return True
                # an actor held by a partition waits for no server event: leases may lapse meanwhile
                stalled = self.network_stalls() if self.network_stalls is not None else {}
                db_blocked = any(a.state == BLOCKED_DB and a.name not in stalled for a in self.actors.values())
                if lock_waiters and not db_blocked:
                    # only harness-lock waiters: let real time pass (a lease may expire), then let the
                    # first one retry without recording a decision (no choice was made) -- bounded:
                    # retries that never let anyone else move count against the hang timeout
                    now = time.monotonic()
                    self._stall_start = self._stall_start or now
                    if now - self._stall_start > self.options.hang_timeout:
                        return False
                    self.cond.wait(timeout=min(0.05, 0.001 * 2 ** min(10, int((now - self._stall_start) * 20))))
                    # the retry is no decision: its attempt runs without pausing at the lock's point,
                    # and a failed one is not traced, so real time decides nothing the schedule shows
                    waiter = self.actors[lock_waiters[0]]
                    waiter.state, waiter.lock_key, waiter.quiet_retry = RUNNING, None, True
                    self._changed()
                    waiter.go.set()
                    return True
                self.cond.wait(timeout=delay)
                self._confirmed = -1  # ask the server again: a wait may have ended without a change
            self._settle()
            delay = min(delay * 2, 0.02)
        return False

    def _actor_main(self, actor: _Actor) -> None:
        """The body of an actor's thread (the Scheduler's)."""
        raise NotImplementedError

    def _changed(self) -> None:
        """An actor changed state (under ``cond``): what the server said before is no longer settled."""
        self._changes += 1
        self.cond.notify_all()


def _edges_text(edges: list[WaitEdge]) -> str:
    return ", ".join(f"for {w.holder or 'an unknown session'} on {w.lock}" for w in edges) or "on a lock"


