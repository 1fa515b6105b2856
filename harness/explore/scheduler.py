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
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..dialect import Dialect
from ..trace import ErrorInfo, Event, StepResult, Trace, WaitEdge
from .history import Op, mark_indeterminate

READY, RUNNING, BLOCKED_DB, BLOCKED_LOCK, DONE = "ready", "running", "blocked-db", "blocked-lock", "done"


class ScheduleAborted(BaseException):
    """Raised inside actor threads when the conductor gives up on a schedule (hang, divergence)."""


class FaultSkipped(BaseException):
    """Raised in an optional (fault) actor that the schedule never chose before the others finished."""


class Divergence(Exception):
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
    blocked_in_call: bool = False  # sticky: the current call was seen waiting in the server
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
        self._armed: dict[str, list[tuple[str, Any, str]]] = {}  # actor -> faults waiting for its next call
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
        self._released_check_due = False
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
            self.cond.notify_all()
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
            self.trace.events.append(Event(self._clock(), "fault", victim, detail={"fault": name or kind,
                                                                                   "armed": True}))

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
                    self.trace.events.append(Event(self._clock(), "fault", actor.name, sql=label,
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
            self.trace.events.append(Event(self._clock(), "op", op.actor, detail={
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
            actor.sid, actor.op_seq, actor.blocked_in_call = sid, actor.op_seq + 1, False
        error: BaseException | None = None
        value: Any = None
        try:
            value = fn()
            return value
        except BaseException as exc:
            error = exc
            if commits and self.dialect is not None and self.dialect.is_connection_error(exc):
                mark_indeterminate(exc)
            raise
        finally:
            with self.cond:
                # not the state: the conductor may already have moved a released waiter back to
                # RUNNING, and it must still pause here, or it would run beside the chosen actor
                was_blocked = actor.blocked_in_call
                actor.sid, actor.blocked_in_call = None, False
                self._event("complete", actor, label, error=error, after_wait=was_blocked,
                            result=value if isinstance(value, StepResult) else None)
                if was_blocked:  # resume only when chosen again: one actor at a time
                    actor.state, actor.label = READY, f"resume after {label}"
                self.cond.notify_all()
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
            self.cond.notify_all()

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
            self.trace.events.append(Event(self._clock(), "fault", actor.name if actor else None,
                                           detail={"fault": kind, **detail}))

    def _holder_name(self, holder: str | None) -> str | None:
        if holder is None:
            return None
        for actor in self.actors.values():
            if holder == actor.name or holder.startswith(actor.name + ":"):
                return actor.name
        return holder

    # -- the conductor ------------------------------------------------------------------------------
    def run(self) -> ScheduleRun:
        for actor in self.actors.values():
            actor.thread = threading.Thread(target=self._actor_main, args=(actor,), daemon=True,
                                            name=f"harness-actor-{actor.name}")
        with self.cond:
            for actor in self.actors.values():
                actor.state = RUNNING
                actor.thread.start()  # type: ignore[union-attr]
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
                        self._released_check_due = True
                        continue
                    if not self._wait_for_progress(lock_waiters):
                        self._hang("no actor can move")
                        break
                    continue
                ordered = sorted(runnable, key=lambda n: (n != current, list(self.actors).index(n)))
                choice = self.chooser.choose(ordered, current, len(self.schedule))
                if choice not in ordered:
                    raise Divergence(f"move {len(self.schedule) + 1} of the schedule is {choice!r}, but only "
                                     f"{', '.join(ordered)} can move there")
                if current is not None and choice != current and current in ordered:
                    self.preemptions += 1
                self._grant(choice)
                self._released_check_due = True  # the move may have released someone's lock
                current = choice
        except BaseException:
            self._abort()
            raise
        if self.trace.hung:
            self._abort()
        for actor in self.actors.values():
            if actor.thread is not None:
                actor.thread.join(timeout=5)
        results = {n: a.result or ActorResult(n, error=ScheduleAborted()) for n, a in self.actors.items()}
        for name, result in results.items():
            result.ops = self.actors[name].ops
        return ScheduleRun(self.schedule, self.labels, results, self.trace, self.trace.hung, self.preemptions)

    def _actor_main(self, actor: _Actor) -> None:
        with self.cond:  # before anything else, so the actor's first point is a real one
            self._by_thread[threading.get_ident()] = actor
        try:
            self.point("start")
            value = actor.fn()
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
                self.cond.notify_all()

    def _grant(self, name: str) -> None:
        actor = self.actors[name]
        self._stall_start = None
        with self.cond:
            actor.segments += 1
            self.schedule.append(name)
            self.labels.append(actor.label)
            if actor.state == BLOCKED_LOCK:
                actor.lock_key = None
            actor.state = RUNNING
            self.trace.events.append(Event(self._clock(), "launch", name, f"{name}{actor.segments}", actor.label))
            self.trace.interleaving.append(name)
        actor.go.set()

    def _settle(self) -> None:
        """Wait until no actor is running: each is paused, done, or blocked (per the server)."""
        deadline = time.monotonic() + self.options.hang_timeout
        delay = self.options.poll_first
        while True:
            with self.cond:
                if not any(a.state == RUNNING for a in self.actors.values()):
                    if not any(a.state == BLOCKED_DB for a in self.actors.values()):
                        return
                    if not self._released_check_due:
                        return
                self.cond.wait(timeout=delay)  # most calls finish within the first wait: no query
                running = [a for a in self.actors.values() if a.state == RUNNING]
                blocked = [a for a in self.actors.values() if a.state == BLOCKED_DB]
                in_db = [a for a in running if a.sid is not None]
                if not running and not (blocked and self._released_check_due):
                    return
            if (in_db or (blocked and self._released_check_due)) and not self._server_down:
                self._released_check_due = False
                waiting = self._server_waits()
                with self.cond:
                    for actor in self.actors.values():
                        if actor.sid is None:
                            continue
                        edges = [w for w in waiting if w.waiter == actor.name]
                        if actor.state == RUNNING and edges:
                            actor.state, actor.blocked_in_call = BLOCKED_DB, True
                            self._event("blocked", actor, actor.label, waits=edges)
                        elif actor.state == BLOCKED_DB and not edges:
                            actor.state = RUNNING  # released: it completes and pauses, or blocks anew
            delay = min(delay * 2, self.options.poll_max)
            if time.monotonic() > deadline:
                self._hang("an actor neither reached its next scheduling point nor blocked")
                return

    def _wait_for_progress(self, lock_waiters: list[str]) -> bool:
        """Nobody can be chosen: wait (bounded) for the server's deadlock detector or a lease to expire."""
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
                    waiter.go.set()
                    return True
                self.cond.wait(timeout=delay)
            self._released_check_due = True
            self._settle()
            delay = min(delay * 2, 0.02)
        return False

    def _server_waits(self) -> list[WaitEdge]:
        with self.cond:
            sids = dict(self._sids)
        edges = [WaitEdge(actor, None, what, "") for actor, what in
                 (self.network_stalls() if self.network_stalls is not None else {}).items()]
        if self.dialect is None or self.monitor is None or not sids:
            return edges
        for wait in self.dialect.waits(self.monitor, sorted(sids)):
            if wait.waiter in sids:
                edges.append(WaitEdge(sids[wait.waiter], sids.get(wait.holder) if wait.holder else None,
                                      wait.lock, wait.detail))
        return edges

    def wait_graph(self) -> list[WaitEdge]:
        edges = self._server_waits()
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
            self.trace.events.append(Event(self._clock(), "hang", detail={"reason": reason, "actors": states},
                                           waits=graph))
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

    def _event(self, kind: str, actor: _Actor, label: str, *, error: BaseException | None = None,
               waits: list[WaitEdge] | None = None, after_wait: bool = False,
               result: StepResult | None = None) -> None:
        if result is None and kind in ("complete", "done"):
            info = ActorResult(actor.name, error=error).error_info if error is not None and not isinstance(
                error, ScheduleAborted) else None
            result = StepResult(error=info)
        detail = {"after_wait": True} if after_wait else {}
        self.trace.events.append(Event(self._clock(), kind, actor.name, f"{actor.name}{actor.segments}",
                                       label, result=result, waits=waits or [], detail=detail))
