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
counted blocked (see :meth:`.conductor.Conductor._settle`).  So whether a waiter released by a COMMIT can move is
read from the server after the COMMIT returned, never from a poll that happened to run during it; a
wait that began and ended between two decisions never shows in the schedule; events of one move are
put in a fixed order; and a wait-for cycle that the server would break by a timer (PostgreSQL) is
broken by the harness at once, its victim the actor whose wait closed it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, Iterator

from ..trace import Event, StepResult, WaitEdge
from .actors import (
    BLOCKED_LOCK,
    DONE,
    READY,
    RUNNING,
    ActorResult,
    AsyncActorError,
    Chooser,
    Divergence,
    FaultSkipped,
    ScheduleAborted,
    SchedulerOptions,
    ScheduleRun,
    _Actor,
)
from .conductor import Conductor
from .history import Op, mark_indeterminate

__all__ = ["ActorResult", "AsyncActorError", "Chooser", "Divergence", "FaultSkipped", "ScheduleAborted",
           "ScheduleRun", "Scheduler", "SchedulerOptions"]


#: the running actor, per context: set in each actor's thread, inherited by an async actor's tasks
CURRENT_ACTOR: ContextVar[tuple["Scheduler", _Actor] | None] = ContextVar("harness_actor", default=None)


class Scheduler(Conductor):
    """One schedule of a set of actors; create a new one per schedule.  Actor threads call the methods
    below at their scheduling points; the decisions are the conductor's."""

    #: awaited at the end of each async actor, in its loop (the race closes the connections opened there)
    loop_cleanup: Callable[[], Awaitable[None]] | None = None

    def current(self) -> _Actor | None:
        """The actor running this code: the context's (an async actor's tasks and the threads it hands
        work to inherit it), else the thread's."""
        held = CURRENT_ACTOR.get()
        if held is not None and held[0] is self:
            return held[1]
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
        if self.aborted and label == "ROLLBACK":  # an actor unwinding from an aborted schedule cleans up
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
                    actor.fired = name
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
             commits: bool = False, step: str | None = None, sql: str | None = None,
             on_error: Callable[[BaseException], Any] | None = None, params: str | None = None,
             note: dict[str, Any] | None = None) -> Any:
        """A scheduling point followed by a database call that may block in the server.

        ``point=False``: no decision before the call (a lock's own helper statements), but a wait in
        the server is still seen and the call still pauses before its actor goes on after one.
        ``commits``: the call may commit (COMMIT, or any autocommit statement): if the connection is
        lost during it, its outcome is unknown and the error is tagged so (see :mod:`.history`).
        ``step``/``sql``: the scenario step and statement the call runs, as the trace names them;
        ``on_error(exc)`` turns an error into the call's result (a scenario step's error is its result)."""
        actor = self.current()
        if actor is None or actor.in_call:  # outside actors, or a driver call inside an instrumented one
            return fn()
        self._begin_call(actor, label, sid, point, step, sql, params, note)
        outcome: list[Any] = [None, None]  # value, error: what the call's complete event reports
        try:
            outcome[0] = self._call_value(actor, fn())
            return outcome[0]
        except BaseException as exc:
            return self._call_failed(actor, exc, commits, on_error, outcome)
        finally:
            self._end_call(actor, label, outcome)

    async def acall(self, label: str, sid: int | None, fn: Callable[[], Awaitable[Any]], *, point: bool = True,
                    commits: bool = False, params: str | None = None) -> Any:
        """:meth:`call` for an awaited database call of an async actor (see :mod:`.aio`).  The point
        and the pause after a wait block the actor's thread, which runs only that actor's event loop."""
        actor = self.current()
        if actor is None or actor.in_call:
            return await fn()
        self._begin_call(actor, label, sid, point, None, None, params, None)
        outcome: list[Any] = [None, None]
        try:
            outcome[0] = self._call_value(actor, await fn())
            return outcome[0]
        except BaseException as exc:
            return self._call_failed(actor, exc, commits, None, outcome)
        finally:
            self._end_call(actor, label, outcome)

    def _begin_call(self, actor: _Actor, label: str, sid: int | None, point: bool, step: str | None,
                    sql: str | None, params: str | None, note: dict[str, Any] | None) -> None:
        if point:
            self.point(label)
        with self.cond:
            actor.in_call = True
            actor.sid, actor.op_seq, actor.blocked_in_call, actor.victim = sid, actor.op_seq + 1, False, False
            actor.step, actor.sql, actor.fired, actor.params, actor.note = step, sql, None, params, note

    def _call_value(self, actor: _Actor, value: Any) -> Any:
        if actor.victim and isinstance(value, StepResult) and value.error is not None and self.dialect:
            value.error = self.dialect.deadlock_info(value.error)  # a scenario step's result
        return value

    def _call_failed(self, actor: _Actor, exc: BaseException, commits: bool,
                     on_error: Callable[[BaseException], Any] | None, outcome: list[Any]) -> Any:
        """The call raised ``exc``: raise what the app should see, or return ``on_error``'s result."""
        error = exc
        if actor.victim and self.dialect is not None:  # the harness broke a cycle through this call
            error = self.dialect.deadlock_error(exc)
        if commits and self.dialect is not None and self.dialect.is_connection_error(error):
            mark_indeterminate(error)
        if on_error is not None and not isinstance(exc, (ScheduleAborted, FaultSkipped)):
            outcome[0] = on_error(error)
            return outcome[0]
        outcome[1] = error
        if error is exc:
            raise exc
        raise error from None

    def _end_call(self, actor: _Actor, label: str, outcome: list[Any]) -> None:
        value, error = outcome
        with self.cond:
            actor.in_call = False
            # only a wait confirmed at a settled point makes the actor pause after its call: one
            # that began and ended between two decisions is not part of the schedule
            was_blocked = actor.blocked_in_call
            actor.sid, actor.blocked_in_call, actor.edges, actor.reported = None, False, [], None
            self._event("complete", actor, label, error=error, after_wait=was_blocked,
                        result=value if isinstance(value, StepResult) else None)
            actor.step = actor.sql = None
            actor.state, actor.label = (READY, f"resume after {label}") if was_blocked else (RUNNING, label)
            self._changed()
        if was_blocked and not self.aborted:
            self._wait_grant(actor)

    def db_call(self, label: str, sid: int | None, fn: Callable[[], Any], *, conn: Any, point: bool = True,
                commits: bool = False, faults: bool = True, step: str | None = None,
                sql: str | None = None, on_error: Callable[[BaseException], Any] | None = None,
                params: str | None = None, note: dict[str, Any] | None = None) -> Any:
        """:meth:`call` for a database statement on ``conn``, where a fault armed for the actor fires
        (after the grant): an injected error instead of the call, a "before" function first, or a
        lost acknowledgement after a call that commits -- the connection is closed and the driver's
        connection-lost error raised."""
        def with_faults() -> Any:
            fault = self._fault(label, commits, faults, conn)
            if fault is not None and fault[0] == "before":
                fault[1](conn)
            value = fn()
            if fault is not None and fault[0] == "lost_ack":  # durable, but the client never hears so
                try:
                    conn.close()
                finally:
                    raise fault[1]
            return value

        return self.call(label, sid, with_faults, point=point, commits=commits, step=step, sql=sql, on_error=on_error,
                         params=params, note=note)

    async def adb_call(self, label: str, sid: int | None, fn: Callable[[], Awaitable[Any]], *, conn: Any,
                       point: bool = True, commits: bool = False, params: str | None = None) -> Any:
        """:meth:`db_call` for an awaited call of an async connection (its close is awaited too)."""
        async def with_faults() -> Any:
            fault = self._fault(label, commits, True, conn)
            if fault is not None and fault[0] == "before":
                raise AsyncActorError(f"the fault armed for this call ({self.current_fault_name()}) runs SQL on "
                                      "a DB-API connection before it, which an async connection is not; clock "
                                      "skew faults work on sync connections only (psycopg, psycopg2, PyMySQL).")
            value = await fn()
            if fault is not None and fault[0] == "lost_ack":
                try:
                    closing = conn.close()
                    if inspect.isawaitable(closing):
                        await closing
                finally:
                    raise fault[1]
            return value

        return await self.acall(label, sid, with_faults, point=point, commits=commits, params=params)

    def current_fault_name(self) -> str | None:
        actor = self.current()
        return actor.fired if actor is not None else None

    def _fault(self, label: str, commits: bool, faults: bool, conn: Any) -> tuple[str, Any] | None:
        """The armed fault that fires at this call (after the grant); an injected error is raised here."""
        fault = self.take_fault(label, commits) if faults else None
        if fault is not None and fault[0] in ("error", "lost_ack") and self.dialect is not None:
            fault = fault[0], self.dialect.error_for(conn, fault[1])
        if fault is not None and fault[0] == "error":
            raise fault[1]
        return fault

    def lock_blocked(self, lock: str, key: str, holder: str | None) -> None:
        """The current actor failed to take a lock the database cannot see (e.g. Redis) and will wait."""
        actor = self.current()
        if actor is None:
            return
        with self.cond:
            actor.lock_key, actor.blocked_at = key, self._progress
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

    def record(self, kind: str, *, sql: str | None = None, result: StepResult | None = None,
               step: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """An event of the current actor that is no scheduling point (a session's setup statement, a
        transaction the server rolled back)."""
        actor = self.current()
        if actor is None:
            return
        with self.cond:
            self._emit(Event(self._clock(), kind, actor.name, step, sql, result=result, detail=dict(detail or {})))

    def annotate(self, detail: dict[str, Any]) -> None:
        """Add to the current call's ``complete`` event (e.g. the first rows it returned)."""
        actor = self.current()
        if actor is not None:
            with self.cond:
                actor.note = {**(actor.note or {}), **detail}

    def lock_done(self, op: str, lock: str, key: str, ok: bool, name: str | None = None) -> None:
        """The current actor acquired or released a lock (``ok``: it got / released it): a ``lock`` event,
        so a trace shows who held which lock from when to when (``name``: the key as the code named it)."""
        actor = self.current()
        if actor is None:
            return
        with self.cond:
            self._emit(Event(self._clock(), "lock", actor.name, f"{actor.name}{actor.segments}",
                             f"{op} {lock} {key}", detail={"op": op, "lock": lock, "key": key, "ok": ok,
                                                           **({"name": name} if name else {})}))

    def fault(self, kind: str, detail: dict[str, Any]) -> None:
        actor = self.current()
        with self.cond:
            self._emit(Event(self._clock(), "fault", actor.name if actor else None, detail={"fault": kind, **detail}))

    async def _run_async(self, awaitable: Awaitable[Any]) -> Any:
        actor, loop = self.current(), asyncio.get_running_loop()
        if actor is not None:
            def wake() -> None:
                loop.call_soon_threadsafe(lambda: None)
            actor.wake = wake
        try:
            return await awaitable
        finally:  # async connections live in this loop, which ends with the actor
            if self.loop_cleanup is not None:
                await self.loop_cleanup()

    def _holder_name(self, holder: str | None) -> str | None:
        if holder is None:
            return None
        for actor in self.actors.values():
            if holder == actor.name or holder.startswith(actor.name + ":"):
                return actor.name
        return holder

    def _actor_main(self, actor: _Actor) -> None:
        with self.cond:  # before anything else, so the actor's first point is a real one
            self._by_thread[threading.get_ident()] = actor
        CURRENT_ACTOR.set((self, actor))
        try:
            self.point("start")
            value = actor.fn()
            if inspect.isawaitable(value):  # an `async def` actor: its own event loop, on its own thread
                value = asyncio.run(self._run_async(value))
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
