"""The engine's view of waits: who waits for whom, wait-for cycles it breaks, hangs it reports.

Split from :mod:`harness.engine` (the listed-interleaving driver) so each stays readable; the
:class:`~harness.engine.Engine` inherits these and sets the attributes declared below.
"""

from __future__ import annotations

from typing import Any, Callable

from .dialect import Dialect
from .scenario.model import Scenario, Step
from .steps import SessionWorker, _Pending
from .trace import Event, Trace, WaitEdge, wait_cycle


class EngineWaits:
    """Waits, cycles and hangs of an engine's sessions (see the module docstring)."""

    scenario: Scenario
    dialect: Dialect
    monitor: Any
    options: Any  # EngineOptions
    workers: dict[str, SessionWorker]
    clock: Callable[[], float]

    def _report_waiting(self, p: _Pending, trace: Trace, waits: list[WaitEdge], *, forced: bool = False,
                        held_by: str | None = None) -> None:
        raise NotImplementedError

    def _open_worker(self, name: str) -> None:
        raise NotImplementedError

    def _break_cycle(self, trace: Trace) -> None:
        """A wait-for cycle among the steps in flight: cancel the one launched last (its wait closed
        the cycle), whose result becomes the server's deadlock error (see Dialect.deadlock_info)."""
        active = [w.active for w in self.workers.values() if w.active is not None and not w.active.done.is_set()]
        if len(active) < 2:
            return
        edges = self._waits(active)
        cycle = wait_cycle(edges)
        if not cycle:
            return
        victim = max((p for p in active if p.worker.name in cycle), key=lambda p: p.t_launch)
        if victim.victim:
            return
        victim.victim = True
        if not victim.reported_waiting:  # it waited: its wait closed the cycle (as an explored run shows)
            self._report_waiting(victim, trace, [w for w in edges if w.waiter == victim.worker.name])
        trace.events.append(Event(self.clock(), "deadlock", victim.worker.name, victim.step.name, victim.sql or None,
                                  detail={"cycle": cycle, "victim": victim.worker.name, "broken_by": "harness"}))
        self._cancel(victim)
        # its error, and the waits its rollback frees, come before the engine looks at anything else:
        # otherwise whether the victim or a released step completes first would depend on timing
        victim.done.wait(self.options.step_timeout)

    def _stuck_on_idle_holder(self, p: _Pending, trace: Trace, asked: Step) -> bool:
        """The next step is asked of a session that waits for sessions with no step in flight: nothing
        can release it, so report it now instead of after the timeout (a generated order can do this)."""
        if p.done.is_set() or p.ref.blockers or p.worker.self_wait is not None:
            return False  # a harness-lock wait is a client retry loop: it moves once the key is free
        if self.scenario.timeouts.lock_wait == "server":
            return False  # the session's own lock-wait timeout ends the wait; its error is the step's result
        waits = [w for w in self._waits([p]) if w.waiter == p.worker.name]
        if not waits or any(w.holder is None or self.workers[w.holder].active is not None for w in waits):
            return False
        holders = ", ".join(sorted({w.holder for w in waits if w.holder}))
        self._hang(trace, [p], f"step {asked.name} was asked of session {p.worker.name}, which waits for "
                               f"{holders} with no step in flight: this interleaving cannot proceed")
        return True

    # -- who waits for whom ------------------------------------------------------------------------
    def _waits(self, pendings: list[_Pending], *, settled_only: bool = False) -> list[WaitEdge]:
        """The waits of these steps' sessions; ``settled_only``: without those in transition (a
        released MariaDB user lock still listed PENDING until its waiter wakes, see Wait.settled), so
        a step released by the step just run is seen completing, not still waiting."""
        by_sid = {w.sid: w.name for w in self.workers.values()}
        wanted = {p.worker.sid for p in pendings}
        edges: list[WaitEdge] = []
        own = [p.worker.self_wait for p in pendings if p.worker.self_wait is not None]
        edges.extend(w for w in own if w is not None)
        # ask about every session: holders only count if they are sessions of this run
        for wait in self.dialect.waits(self.monitor, sorted(by_sid)):
            if wait.waiter in wanted and (wait.settled or not settled_only):
                edges.append(WaitEdge(by_sid[wait.waiter],
                                      by_sid.get(wait.holder) if wait.holder else None, wait.lock, wait.detail))
        return edges

    def wait_graph(self) -> list[WaitEdge]:
        """The current wait-for graph among this engine's sessions."""
        active = [w.active for w in self.workers.values() if w.active is not None]
        return self._waits(active) if active else []

    # -- hangs and cleanup -------------------------------------------------------------------------
    def _hang(self, trace: Trace, stuck: list[_Pending], reason: str) -> None:
        if trace.hung:
            return
        trace.hung = True
        graph = self.wait_graph()
        trace.events.append(Event(self.clock(), "hang", detail={
            "reason": reason, "active": [p.step.name for p in stuck if p is not None]}, waits=graph))
        for worker in list(self.workers.values()):  # _reconnect replaces entries
            p = worker.active
            if p is None:
                continue
            self._cancel(p)
            if not p.done.wait(self.options.cancel_timeout):
                self._terminate(worker)
                p.done.wait(self.options.cancel_timeout)
            trace.events.append(Event(self.clock(), "cancel", worker.name, p.step.name, result=p.result,
                                      detail={"completed": p.done.is_set()}))
            worker.active = None
            if not p.done.is_set() or p.conn_lost:
                self._reconnect(worker.name)

    def _cancel(self, p: _Pending) -> None:
        try:
            self.dialect.cancel(self.monitor, p.worker.sid)
        except Exception:
            pass

    def _terminate(self, worker: SessionWorker) -> None:
        try:
            self.dialect.terminate(self.monitor, worker.sid)
        except Exception:
            pass

    def _reconnect(self, name: str) -> None:
        old = self.workers.pop(name)
        old.stop()
        self._open_worker(name)
