"""The conductor's bookkeeping that is not a decision: the trace events of each move, in a fixed
order, and the way out of a schedule that cannot go on (the server's wait-for graph, a hang report that
says where a stuck actor is, releasing every actor).  A mixin of :class:`~.conductor.Conductor`."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from typing import Any, Callable

from ..dialect import Dialect
from ..trace import Event, StepResult, Trace, WaitEdge
from .actors import BLOCKED_LOCK, RUNNING, ActorResult, ScheduleAborted, SchedulerOptions, _Actor


class ConductorRecords:
    """Trace events and stops (see the module docstring); the state is the Conductor's."""

    actors: dict[str, _Actor]
    cond: threading.Condition
    dialect: Dialect | None
    monitor: Any
    options: SchedulerOptions
    trace: Trace
    aborted: bool
    network_stalls: Callable[[], dict[str, str]] | None
    _sids: dict[int, str]
    _order: dict[str, int]
    _pending: list[tuple[int, int, Event]]
    _mover: str | None
    _t0: float

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
            in_python = [(a.thread.ident, a.wake) for a in self.actors.values()
                         if a.state == RUNNING and a.sid is None and a.thread is not None and a.thread.ident]
            for actor in self.actors.values():
                actor.go.set()
            self.cond.notify_all()
        for ident, wake in in_python:  # a loop or sleep in actor code: stop it at its next bytecode
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(ScheduleAborted))
            if wake is not None:  # an async actor's loop waiting in select: run a bytecode now
                wake()
        for sid in stuck:
            try:
                if self.dialect is not None and self.monitor is not None:
                    self.dialect.terminate(self.monitor, sid)
            except Exception:
                pass

    # -- trace ------------------------------------------------------------------------------------
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
        detail: dict[str, Any] = {"after_wait": True} if after_wait else {}
        if kind == "complete" and actor.fired:
            detail["fault"] = actor.fired
        if kind in ("blocked", "complete") and actor.params:
            detail["params"] = actor.params
        if kind == "complete" and actor.note:
            detail.update(actor.note)
        in_call = kind in ("blocked", "complete") and actor.step is not None
        self._emit(Event(self._clock(), kind, actor.name, actor.step if in_call else f"{actor.name}{actor.segments}",
                         actor.sql if in_call and actor.sql else label, result=result, waits=list(waits or []),
                         detail=detail))
