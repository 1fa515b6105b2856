"""The conductor: runs actors (Python callables) so that exactly one moves between scheduling points.

Every actor runs on its own thread.  At a scheduling point (before a database execute/commit/rollback,
a lock operation, or ``point("label")``) the actor pauses and the conductor picks which runnable actor
goes next (the *decision*, taken by a :class:`Chooser`).  The granted actor runs until its next point;
if its database call waits for a lock inside the server (asked through :meth:`Dialect.waits`, exactly
as the engine does) or it waits for a harness lock (Redis), it is *blocked* and another actor is chosen.
A blocked call that completes later pauses again before its actor continues, so the run stays one-at-
a-time and therefore deterministic: the same decisions give the same outcome.

The sequence of actors that moved, segment by segment, is the *schedule* (printable as ``A A B A``),
which :class:`ReplayChooser` replays exactly.

Determinism rests on one rule: a decision is taken only when the schedule has *settled* -- no actor
runs, and a server poll taken after the last change, with nothing running, confirms every actor still
counted blocked (see :meth:`Scheduler._settle`).  So whether a waiter released by a COMMIT can move is
read from the server after the COMMIT returned, never from a poll that happened to run during it; a
wait that began and ended between two decisions never shows in the schedule; events of one move are
put in a fixed order; and a wait-for cycle that the server would break by a timer (PostgreSQL) is
broken by the harness at once, its victim the actor whose wait closed it.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..dialect import Dialect
from ..errors import HarnessError
from ..trace import ErrorInfo, Event, StepResult, Trace, WaitEdge
from .history import Op, mark_indeterminate

READY, RUNNING, BLOCKED_DB, BLOCKED_LOCK, DONE = "ready", "running", "blocked-db", "blocked-lock", "done"


class ScheduleAborted(BaseException):
    """Raised inside actor threads when the conductor gives up on a schedule (hang, divergence)."""


class FaultSkipped(BaseException):
    """Raised in an optional (fault) actor that the schedule never chose before the others finished."""


class AsyncActorError(HarnessError):
    """An actor returned a coroutine: it would never run (a false pass), so the run stops."""


class Divergence(HarnessError):
    """A replayed schedule asked for an actor that is not runnable at that point."""


class Chooser(Protocol):
    """Takes the decisions of one schedule. ``runnable`` lists the current actor first when it can go on."""

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str: ...


@dataclass
class ActorResult:
    name: str
    value: Any = None
    error: BaseException | None = None
    ops: list[Op] = field(default_factory=list)  # what the actor marked with ctx.op(), with outcomes

    @property
    def error_info(self) -> ErrorInfo | None:
        if self.error is None:
            return None
        code = getattr(self.error, "sqlstate", None)
        if code is None and getattr(self.error, "args", None) and isinstance(self.error.args[0], int):
            code = str(self.error.args[0])
        return ErrorInfo(code, f"{type(self.error).__name__}: {self.error}")


@dataclass
class ScheduleRun:
    """What one schedule did: the segments (who moved), results per actor, and the trace."""

    schedule: list[str]
    labels: list[str]
    results: dict[str, ActorResult]
    trace: Trace
    hung: bool = False
    preemptions: int = 0
    options: list[list[str]] = field(default_factory=list)  # who could move at each move, in order


@dataclass(eq=False)
class _Actor:
    name: str
    fn: Callable[[], Any]
    state: str = READY
    label: str = "start"
    go: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    sid: int | None = None  # the server session an in-flight call runs on
    op_seq: int = 0
    blocked_in_call: bool = False  # sticky: the current call waited in the server at a settled point
    edges: list[WaitEdge] = field(default_factory=list)  # its server waits, as last polled
    reported: list[WaitEdge] | None = None  # the waits last put in the trace (None: not blocked)
    blocked_move: int = -1  # the move after which its current wait was first confirmed
    victim: bool = False  # the harness cancelled its call to break a wait-for cycle
    lock_key: str | None = None
    lock_waits: WaitEdge | None = None
    blocked_at: int = 0  # moves in the schedule when its harness-lock attempt last failed
    quiet_retry: bool = False  # retrying a harness lock while nobody else could move: no decision
    segments: int = 0
    result: ActorResult | None = None
    optional: bool = False  # a fault: may never move; skipped once every required actor is done
    skip: bool = False
    ops: list[Op] = field(default_factory=list)


@dataclass
class SchedulerOptions:
    hang_timeout: float = 10.0  # no actor can move for this long: hang (wait-for graph recorded)
    poll_first: float = 0.0005
    poll_max: float = 0.005


class Scheduler:
    """One schedule of a set of actors; create a new one per schedule."""

    def __init__(self, actors: dict[str, Callable[[], Any]], chooser: Chooser, *, dialect: Dialect | None,
                 monitor: Any, scenario: str = "", backend: str = "", server: str = "",
                 options: SchedulerOptions | None = None, optional: frozenset[str] = frozenset()) -> None:
        self.actors = {n: _Actor(n, fn, optional=n in optional) for n, fn in actors.items()}
        self._order = {n: i for i, n in enumerate(self.actors)}
        # actor -> faults waiting for its next call: (kind, payload, name in the trace)
        self._armed: dict[str, list[tuple[str, Any, str]]] = {}
        self.chooser, self.dialect, self.monitor = chooser, dialect, monitor
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

    # -- called from actor threads ------------------------------------------------------------------
    def current(self) -> _Actor | None:
        return self._by_thread.get(threading.get_ident())

    def register_session(self, sid: int) -> None:
        """Tell the scheduler that the current actor owns this server session (for wait graphs)."""
        actor = self.current()
        if actor is not None:
            with self.cond:
                self._sids[sid] = actor.name

    def point(self, label: str) -> None:
        """Pause here until the conductor lets this actor move."""
        actor = self.current()
        if actor is None or actor.quiet_retry:  # outside an actor (setup, checks), or a quiet retry
            return
        with self.cond:
            actor.state, actor.label = READY, label
            self._changed()
        self._wait_grant(actor)

    def _wait_grant(self, actor: _Actor) -> None:
        while not actor.go.wait(0.5):
            if self.aborted:
                raise ScheduleAborted()
        actor.go.clear()
        if self.aborted:
            raise ScheduleAborted()
        if actor.skip:
            raise FaultSkipped()

    def arm(self, victim: str, kind: str, payload: Any = None, name: str | None = None) -> None:
        """A fault for ``victim``'s next database call: ("error", exception), ("lost_ack", exception) or
        ("before", fn): ``fn(raw_connection)`` runs first (e.g. to skew that session's clock).
        ``name`` is what the trace calls it (default: ``kind``)."""
        with self.cond:
            self._armed.setdefault(victim, []).append((kind, payload, name or kind))
            self._emit(Event(self._clock(), "fault", victim, detail={"fault": name or kind, "armed": True}))

    def take_fault(self, label: str, commits: bool) -> tuple[str, Any] | None:
        """The fault armed for the current actor that applies to this call, if any (it is used up);
        a lost acknowledgement applies only to a call that commits."""
        actor = self.current()
        if actor is None:
            return None
        with self.cond:
            pending = self._armed.get(actor.name, [])
            for i, (kind, payload, name) in enumerate(pending):
                if kind in ("error", "before") or (kind == "lost_ack" and commits):
                    del pending[i]
                    self._emit(Event(self._clock(), "fault", actor.name, sql=label,
                                     detail={"fault": name, "fired": True}))
                    return kind, payload
        return None

    def record_op(self, op: Op) -> None:
        """An operation of the current actor finished (``ctx.op``): kept with its result, traced."""
        actor = self.current()
        with self.cond:
            op.seq = sum(len(a.ops) for a in self.actors.values()) + 1
            if actor is not None:
                actor.ops.append(op)
            self._emit(Event(self._clock(), "op", op.actor, detail={
                "op": op.name, "value": repr(op.value), "status": op.status, **({"error": op.error} if op.error else {})}))

    @contextmanager
    def server_down(self) -> Iterator[None]:
        """While the server is killed and restarted: the conductor does not poll it for waits."""
        with self.cond:
            self._server_down = True
        try:
            yield
        finally:
            with self.cond:
                self._server_down = False
                self._changed()

    def sessions_of(self, actor: str) -> list[int]:
        with self.cond:
            return [sid for sid, name in self._sids.items() if name == actor]

    def call(self, label: str, sid: int | None, fn: Callable[[], Any], *, point: bool = True,
             commits: bool = False) -> Any:
        """A scheduling point followed by a database call that may block in the server.

        ``point=False``: no decision before the call (a lock's own helper statements), but a wait in
        the server is still seen and the call still pauses before its actor goes on after one.
        ``commits``: the call may commit (COMMIT, or any autocommit statement): if the connection is
        lost during it, its outcome is unknown and the error is tagged so (see :mod:`.history`)."""
        if point:
            self.point(label)
        actor = self.current()
        if actor is None:
            return fn()
        with self.cond:
            actor.sid, actor.op_seq, actor.blocked_in_call, actor.victim = sid, actor.op_seq + 1, False, False
        error: BaseException | None = None
        value: Any = None
        try:
            value = fn()
            return value
        except BaseException as exc:
            error = exc
            if actor.victim and self.dialect is not None:  # the harness broke a cycle through this call
                error = self.dialect.deadlock_error(exc)
            if commits and self.dialect is not None and self.dialect.is_connection_error(error):
                mark_indeterminate(error)
            if error is exc:
                raise
            raise error from None
        finally:
            with self.cond:
                # only a wait confirmed at a settled point makes the actor pause after its call: one
                # that began and ended between two decisions is not part of the schedule
                was_blocked = actor.blocked_in_call
                actor.sid, actor.blocked_in_call, actor.edges, actor.reported = None, False, [], None
                self._event("complete", actor, label, error=error, after_wait=was_blocked,
                            result=value if isinstance(value, StepResult) else None)
                actor.state, actor.label = (READY, f"resume after {label}") if was_blocked else (RUNNING, label)
                self._changed()
            if was_blocked and not self.aborted:
                self._wait_grant(actor)

    def db_call(self, label: str, sid: int | None, fn: Callable[[], Any], *, conn: Any, point: bool = True,
                commits: bool = False, faults: bool = True) -> Any:
        """:meth:`call` for a database statement on ``conn``, where a fault armed for the actor fires
        (after the grant): an injected error instead of the call, a "before" function first, or a
        lost acknowledgement after a call that commits -- the connection is closed and the driver's
        connection-lost error raised."""
        def with_faults() -> Any:
            fault = self.take_fault(label, commits) if faults else None
            if fault is not None and fault[0] == "error":
                raise fault[1]
            if fault is not None and fault[0] == "before":
                fault[1](conn)
            value = fn()
            if fault is not None and fault[0] == "lost_ack":  # durable, but the client never hears so
                try:
                    conn.close()
                finally:
                    raise fault[1]
            return value

        return self.call(label, sid, with_faults, point=point, commits=commits)

    def lock_blocked(self, lock: str, key: str, holder: str | None) -> None:
        """The current actor failed to take a lock the database cannot see (e.g. Redis) and will wait."""
        actor = self.current()
        if actor is None:
            return
        with self.cond:
            actor.lock_key, actor.blocked_at = key, len(self.schedule)
            actor.lock_waits = WaitEdge(actor.name, self._holder_name(holder), lock, key)
            actor.state, actor.label = BLOCKED_LOCK, f"retry {lock} {key}"
            if not actor.quiet_retry:  # how often a quiet retry fails depends on real time: not traced
                self._event("blocked", actor, actor.label, waits=[actor.lock_waits])
            actor.quiet_retry = False
            self._changed()

    def lock_retry_wait(self) -> None:
        actor = self.current()
        if actor is not None:
            self._wait_grant(actor)

    def lock_unblocked(self) -> None:
        actor = self.current()
        if actor is not None:
            with self.cond:
                actor.lock_key, actor.lock_waits, actor.quiet_retry = None, None, False

    def fault(self, kind: str, detail: dict[str, Any]) -> None:
        actor = self.current()
        with self.cond:
            self._emit(Event(self._clock(), "fault", actor.name if actor else None, detail={"fault": kind, **detail}))

    def _holder_name(self, holder: str | None) -> str | None:
        if holder is None:
            return None
        for actor in self.actors.values():
            if holder == actor.name or holder.startswith(actor.name + ":"):
                return actor.name
        return holder

    def _changed(self) -> None:
        """An actor changed state (under ``cond``): what the server said before is no longer settled."""
        self._changes += 1
        self.cond.notify_all()

    # -- the conductor ------------------------------------------------------------------------------
    def run(self) -> ScheduleRun:
        for actor in self.actors.values():
            actor.thread = threading.Thread(target=self._actor_main, args=(actor,), daemon=True,
                                            name=f"harness-actor-{actor.name}")
        with self.cond:
            for actor in self.actors.values():
                actor.state = RUNNING
                actor.thread.start()
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
                    runnable += [n for n in lock_waiters if len(self.schedule) > self.actors[n].blocked_at]
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
                why = f"{choice} waits for {actor.lock_waits.lock} {actor.lock_waits.key}"
            else:
                why = f"{choice} is {actor.state} at {actor.label}"
        return (f"the schedule cannot be followed: move {move} is {choice!r}, but only {', '.join(runnable)} "
                f"can move there ({why}); moves so far: {' '.join(self.schedule) or 'none'}. A schedule "
                "replays only against the scenario and code it was found with.")

    def _actor_main(self, actor: _Actor) -> None:
        with self.cond:  # before anything else, so the actor's first point is a real one
            self._by_thread[threading.get_ident()] = actor
        try:
            self.point("start")
            value = actor.fn()
            if inspect.isawaitable(value):  # an `async def` actor: its body never ran
                close = getattr(value, "close", None)
                if close is not None:
                    close()
                raise AsyncActorError(f"actor {actor.name} returned a coroutine (an `async def` actor?): its "
                                      "body would never run, since actors are plain functions run on threads; "
                                      "make it a plain function (call async code with asyncio.run inside it).")
            actor.result = ActorResult(actor.name, value=value)
        except ScheduleAborted:
            actor.result = ActorResult(actor.name, error=ScheduleAborted("schedule aborted"))
        except FaultSkipped:
            actor.result = ActorResult(actor.name, value="not fired")
        except BaseException as exc:  # the actor's own failure is an outcome, not a harness error
            actor.result = ActorResult(actor.name, error=exc)
        finally:
            with self.cond:
                actor.state = DONE
                self._event("done", actor, "done", error=actor.result.error if actor.result else None)
                self._changed()

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
                if confirmed and not (self.dialect is not None and self.dialect.harness_breaks_deadlocks):
                    # the server breaks each cycle the moment it closes (InnoDB): one seen here is
                    # being broken right now -- ask again
                    confirmed = not _find_cycle(self._wait_graph_of_blocked())
                if confirmed:
                    self._confirm()
            delay = min(delay * 2, self.options.poll_max)
            if time.monotonic() - started > self.options.hang_timeout:
                self._hang(self._stuck_reason([a for a in self.actors.values() if a.state == RUNNING]))
                return

    def _wait_graph_of_blocked(self) -> dict[str, set[str]]:
        return {a.name: {w.holder for w in a.edges if w.holder} for a in self.actors.values()
                if a.state == BLOCKED_DB}

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
        if self.dialect is None or self.monitor is None or not self.dialect.harness_breaks_deadlocks:
            return False
        cycle = _find_cycle(self._wait_graph_of_blocked())
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

    def _stuck_reason(self, running: list[_Actor]) -> str:
        """Which actors neither reached their next scheduling point nor blocked, and where they are."""
        frames = sys._current_frames()
        parts = []
        for actor in running:
            frame = frames.get(actor.thread.ident) if actor.thread is not None and actor.thread.ident else None
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}" if frame else "?"
            doing = f"in the server running {actor.label!r}" if actor.sid is not None else \
                "in Python with no database call or lock (a loop or sleep?)"
            parts.append(f"actor {actor.name} is {doing}, at {where}")
        return (f"an actor neither reached its next scheduling point nor blocked within "
                f"{self.options.hang_timeout:g}s: " + "; ".join(parts))

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

    def _server_waits(self) -> tuple[list[WaitEdge], set[str]]:
        """Every actor's waits as the server (and the network links) report them now, and the actors
        whose waits are in transition (see ``Wait.settled``)."""
        with self.cond:
            sids = dict(self._sids)
        edges = [WaitEdge(actor, None, what, "") for actor, what in
                 (self.network_stalls() if self.network_stalls is not None else {}).items()]
        unsettled: set[str] = set()
        if self.dialect is None or self.monitor is None or not sids:
            return edges, unsettled
        for wait in self.dialect.waits(self.monitor, sorted(sids)):
            if wait.waiter in sids:
                edges.append(WaitEdge(sids[wait.waiter], sids.get(wait.holder) if wait.holder else None,
                                      wait.lock, wait.detail))
                if not wait.settled:
                    unsettled.add(sids[wait.waiter])
        return edges, unsettled

    def wait_graph(self) -> list[WaitEdge]:
        edges = self._server_waits()[0]
        with self.cond:
            edges += [a.lock_waits for a in self.actors.values() if a.state == BLOCKED_LOCK and a.lock_waits]
        return edges

    def _hang(self, reason: str) -> None:
        if self.trace.hung:
            return
        graph = self.wait_graph()
        with self.cond:
            self.trace.hung = True
            states = {a.name: f"{a.state} at {a.label}" for a in self.actors.values()}
            self._emit(Event(self._clock(), "hang", detail={"reason": reason, "actors": states}, waits=graph))
            self._flush()
        self._abort()

    def _abort(self) -> None:
        """Release every paused actor with ScheduleAborted; cancel calls stuck in the server."""
        with self.cond:
            self.aborted = True
            stuck = [a.sid for a in self.actors.values() if a.sid is not None]
            for actor in self.actors.values():
                actor.go.set()
            self.cond.notify_all()
        for sid in stuck:
            try:
                if self.dialect is not None and self.monitor is not None:
                    self.dialect.terminate(self.monitor, sid)
            except Exception:
                pass

    # -- trace ----------------------------------------------------------------------------------------
    def _clock(self) -> float:
        return time.monotonic() - self._t0

    def _emit(self, event: Event) -> None:
        """Queue an event of the current move (under ``cond``); :meth:`_flush` orders them."""
        self._pending.append((len(self._pending), self._order.get(event.session or "", len(self._order)), event))

    def _flush(self) -> None:
        """Put the current move's events in the trace (under ``cond``): the mover's first, then each
        other actor's in declaration order, each actor's in its own order -- threads that finish at
        the same moment (a COMMIT and the waiter it released) no longer decide the trace's order."""
        mover = self._order.get(self._mover or "", -1)
        ordered = sorted(self._pending, key=lambda p: (p[1] != mover, p[1], p[0]))
        self.trace.events.extend(e for _, _, e in ordered)
        self._pending.clear()

    def _event(self, kind: str, actor: _Actor, label: str, *, error: BaseException | None = None,
               waits: list[WaitEdge] | None = None, after_wait: bool = False,
               result: StepResult | None = None) -> None:
        if result is None and kind in ("complete", "done"):
            info = ActorResult(actor.name, error=error).error_info if error is not None and not isinstance(
                error, ScheduleAborted) else None
            result = StepResult(error=info)
        detail = {"after_wait": True} if after_wait else {}
        self._emit(Event(self._clock(), kind, actor.name, f"{actor.name}{actor.segments}",
                         label, result=result, waits=list(waits or []), detail=detail))


def _edges_text(edges: list[WaitEdge]) -> str:
    return ", ".join(f"for {w.holder or 'an unknown session'} on {w.lock}" for w in edges) or "on a lock"


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the wait-for graph among ``graph``'s nodes (in waiting order), or []."""
    for start in sorted(graph):
        path, node, seen = [start], start, {start}
        while True:
            nxt = sorted(h for h in graph.get(node, ()) if h in graph)
            if not nxt:
                break
            node = nxt[0]
            if node in seen:
                return path[path.index(node):]
            path.append(node)
            seen.add(node)
    return []
