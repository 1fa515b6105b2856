"""The interleaving engine: run a scenario's steps on real connections, one at a time, in a given order.

Each session has its own connection and worker thread; a monitor connection asks the server which
sessions wait for which (:meth:`Dialect.waits`).  A step is launched, and the engine moves on as soon
as it has **completed** or the server says it is **blocked**; blocked steps stay in flight and
complete later, in their place in the trace.  The control flow follows PostgreSQL's isolationtester
(``run_permutation`` / ``try_complete_step``): a step asked of a session that still waits first waits
for that session; the blocker annotations ``(*)``, ``(other)`` and ``(other notices N)`` hold a step
as waiting; deadlocks and serialization failures are ordinary results.  Every wait is bounded: past
``step_timeout`` the engine records the wait-for graph as a ``hang`` event and cancels (then
terminates) the stuck sessions, so a wrong schedule never hangs CI.

Where the dialect can send a SQL step and read it later (``Capabilities.inline_sql``: the
isolationtester drop-in's libpq), SQL steps skip the worker thread and are read from the engine's own
thread whenever it asks whether they are done.

Harness actions (lock, clock, ... steps) run in the session's worker thread through ``actions``; an
action that waits on something the database cannot see (a Redis lock) reports it with
:meth:`ActionContext.waiting` so the scheduler treats the session as blocked.

Fault steps (``kill_session``, ``inject_error``, ``lose_commit_ack``) act on *another* session, so
they run on the engine's own thread with the control connection, through :class:`FaultPort`.  A
session whose connection is gone (killed, closed by a lost acknowledgement, or lost otherwise) stays
gone for the rest of the interleaving: the step that meets the loss gets the driver's error, later
steps fail at once saying where the connection went, and the engine reconnects the session before
teardown and the next interleaving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .dialect import ConnInfo, Dialect
from .engine_faults import _EngineFaults
from .engine_setup import EngineSetup
from .errors import HarnessError, ScenarioRunError
from .orders import all_interleavings
from .scenario.model import FAULT_ACTIONS, Blocker, Interleaving, Scenario, Step, StepRef
from .steps import Action, ActionContext, FaultPort, SessionWorker, _Armed, _Pending, run_step, starts_transaction, step_sql
from .trace import ErrorInfo, Event, StepResult, Trace, WaitEdge


@dataclass
class EngineOptions:
    step_timeout: float = 10.0  # no progress on a waited-for step for this long: hang
    on_timeout: str = "abort"  # "abort": hang event, cancel all, stop; "cancel": isolationtester's cancel
    cancel_timeout: float = 5.0  # after a cancel, how long before terminating the session
    poll_first: float = 0.001  # first blocked check after launch (isolationtester: 10 ms)
    poll_max: float = 0.010
    application_name: Callable[[str], str] | None = None
    print_setup_results: bool = True  # record rows returned by setup SQL (isolationtester prints them)
    reset_sessions: bool = True  # ROLLBACK leftovers after each interleaving (off for isolation specs)
    # break wait-for cycles among the run's sessions as the explorer does (victim: the step whose wait
    # closed the cycle), where the server leaves them to a timer; off for isolation specs, which pick
    # their victims with deadlock_timeout settings of their own
    break_deadlocks: bool = False


class Engine(EngineSetup):
    """Runs interleavings of one scenario on one database; connections are reused between runs."""

    def __init__(self, scenario: Scenario, backend: str, dialect: Dialect, info: ConnInfo,
                 options: EngineOptions | None = None, actions: Mapping[str, Action] | None = None,
                 server: str = "", connector: Callable[[str], Any] | None = None) -> None:
        """``connector(session_name)`` overrides how connections are opened (e.g. a libpq conninfo
        string for the isolationtester drop-in); the control connection is named "control connection"."""
        self.scenario, self.backend, self.dialect, self.info = scenario, backend, dialect, info
        self.connector = connector
        self.options = options or EngineOptions(step_timeout=scenario.timeouts.step)
        self.actions = dict(actions or {})
        self.server = server
        self._t0 = time.monotonic()
        self.control: Any = None
        self.monitor: Any = None
        self.workers: dict[str, SessionWorker] = {}

    # -- connections -------------------------------------------------------------------------------
    def clock(self) -> float:
        return time.monotonic() - self._t0

    def _app_name(self, session: str) -> str | None:
        return self.options.application_name(session) if self.options.application_name else None

    def open(self) -> "Engine":
        try:
            self.control = self._connect("control connection")
            self.monitor = self.control
            for session in self.scenario.sessions:
                self._open_worker(session.name)
        except HarnessError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ScenarioRunError(f"cannot connect to {self.info.redacted()}: {exc}") from exc
        return self

    def _connect(self, name: str) -> Any:
        if self.connector is not None:
            return self.connector(name)
        return self.dialect.open_session(self.info, self._app_name(name))

    def _open_worker(self, name: str) -> None:
        self.workers[name] = SessionWorker(name, self._connect(name), self.dialect, self.clock)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()
        if self.control is not None:
            try:
                self.control.close()
            except Exception:
                pass
            self.control = self.monitor = None

    def __enter__(self) -> "Engine":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one interleaving --------------------------------------------------------------------------
    def run(self, interleaving: Interleaving,
            after_steps: Callable[[Trace, Any], None] | None = None) -> Trace:
        """Run setup, the steps in order, ``after_steps`` (checks), then teardown; return the trace."""
        self._t0 = time.monotonic()
        trace = Trace(self.scenario.name, self.backend, [r.step for r in interleaving.steps],
                      server=self.server, sessions=[s.name for s in self.scenario.sessions])
        for name in list(self.workers):
            self.workers[name].total_notices = 0
            self.workers[name].armed.clear()
        self._setup(trace)
        waiting: list[_Pending] = []
        try:
            for ref in interleaving.steps:
                step = self.scenario.step(ref.step)
                worker = self.workers[step.session]
                started = self.clock()
                while worker.active is not None and not trace.hung:
                    old = worker.active
                    if self.options.on_timeout == "abort" and self._stuck_on_idle_holder(old, trace, step):
                        break
                    if not self._try_complete(old, trace, nonblock=False, retry=True):
                        waiting.remove(old)
                    waiting = self._try_complete_all(waiting, trace, nonblock=True)
                    if worker.active is not None and self.clock() - started > 2 * self.options.step_timeout:
                        self._hang(trace, waiting, f"step {worker.active.step.name} never completed")
                if trace.hung:
                    break
                pending = self._launch(ref, step, worker, trace)
                must_wait = self._try_complete(pending, trace, nonblock=True, retry=False)
                waiting = self._try_complete_all(waiting, trace, nonblock=True)
                if must_wait:
                    waiting.append(pending)
            if not trace.hung:
                waiting = self._try_complete_all(waiting, trace, nonblock=False)
                if waiting:
                    self._hang(trace, waiting, "failed to complete permutation due to mutually-blocking steps")
            if after_steps is not None and not trace.hung:
                after_steps(trace, self.control)
        except BaseException:
            self._abort_sessions()  # an open transaction would make teardown wait forever
            raise
        finally:
            self._revive_lost()
            if self.options.reset_sessions:
                self._reset_sessions()
            self._teardown(trace)
        return trace

    def _revive_lost(self) -> None:
        """Sessions whose connection went away get a new one for teardown and the next interleaving
        (whose setup sets their isolation level and runs their setup again)."""
        for name in [n for n, w in self.workers.items() if w.lost is not None and w.active is None]:
            self._reconnect(name)

    def _abort_sessions(self) -> None:
        for name, worker in list(self.workers.items()):
            if worker.active is not None:
                self._cancel(worker.active)
            self._terminate(worker)
            self._reconnect(name)

    def _reset_sessions(self) -> None:
        """Roll back what a scenario left open, so teardown and the next interleaving start clean."""
        for worker in self.workers.values():
            if worker.active is None:
                worker.run_now("ROLLBACK")
            worker.drain_notices()

    def _launch(self, ref: StepRef, step: Step, worker: SessionWorker, trace: Trace) -> _Pending:
        sql = self._sql_of(step)
        pending = _Pending(ref, step, sql, worker, self.clock())
        for blocker in ref.blockers:
            if blocker.step is not None and blocker.notices is not None:
                other = self.workers[self.scenario.step(blocker.step).session]
                pending.target_notices[blocker.step] = other.total_notices + blocker.notices
        trace.events.append(Event(pending.t_launch, "launch", worker.name, step.name, sql or None,
                                  detail={"action": step.action} if step.action else {}))
        if worker.lost is not None and (worker.lost_reported or step.action is not None):
            self._finish_now(pending, StepResult(error=ErrorInfo(
                "connection", f"session {worker.name}'s connection was {worker.lost}; its later steps fail until "
                              "the next interleaving, which starts on a new connection")), not_sent=True)
        elif worker.lost is not None:  # the first step after a kill meets the driver's own error
            worker.launch(pending, lambda: self.dialect.run_sql(worker.conn, sql, worker.on_notice))
        elif step.action is not None:
            action = self.actions.get(step.action)
            if action is None:
                raise ScenarioRunError(f"{self.scenario.path}:{step.line}: step {step.name!r} uses action "
                                       f"{step.action!r}, which this run does not provide "
                                       f"(available: {', '.join(sorted(self.actions)) or 'none'}).")
            if step.action in FAULT_ACTIONS:  # acts on another session: on the engine's own thread
                ctx = ActionContext(worker.name, worker.conn, self.dialect, step.args, worker,
                                    faults=_EngineFaults(self, trace, worker.name, step.name))
                self._finish_now(pending, run_step(step, sql, ctx, self.actions))
            else:
                ctx = ActionContext(worker.name, worker.conn, self.dialect, step.args, worker)
                worker.launch(pending, lambda: run_step(step, sql, ctx, self.actions))
        elif worker.armed:
            armed = worker.armed.pop(0)
            if armed.kind == "inject_error":
                assert armed.error is not None
                trace.events.append(Event(self.clock(), "fault", worker.name, step.name, sql, detail={
                    "fault": "inject_error", "fired": True, "code": armed.error.code, "by_step": armed.by_step}))
                self._finish_now(pending, StepResult(error=armed.error), injected=True)
            else:
                worker.launch(pending, lambda: self._lose_ack(pending, armed))
        elif self.dialect.capabilities.inline_sql:  # sent from here, read when the engine asks
            worker.start(pending, sql)
        else:
            ctx = ActionContext(worker.name, worker.conn, self.dialect, step.args, worker)
            worker.launch(pending, lambda: run_step(step, sql, ctx, self.actions, worker.on_notice))
        return pending

    @staticmethod
    def _finish_now(pending: _Pending, result: StepResult, **note: Any) -> None:
        """A step that completes without its worker (refused, injected, or a fault step)."""
        pending.result = result
        pending.note.update(note)
        pending.worker.active = pending
        pending.done.set()

    def _lose_ack(self, pending: _Pending, armed: _Armed) -> StepResult:
        """In the worker: the step runs for real (a COMMIT is durable), then the connection closes
        before the client hears, which sees the driver's own connection-lost error."""
        worker = pending.worker
        real = self.dialect.run_sql(worker.conn, pending.sql, worker.on_notice)
        pending.fault_at = self.clock()
        pending.fault = {"fault": "lose_commit_ack", "fired": True, "by_step": armed.by_step, "server_result":
                         f"error {real.error.code}: {real.error.message}" if real.error else "ok"}
        try:
            worker.conn.close()
        except Exception:
            pass
        raise ConnectionError(str(self.dialect.connection_lost()))

    def _sql_of(self, step: Step) -> str:
        return step_sql(self.scenario, step, self.backend)

    # -- isolationtester's try_complete_step(s) ---------------------------------------------------
    def _try_complete_all(self, waiting: list[_Pending], trace: Trace, *, nonblock: bool) -> list[_Pending]:
        while True:
            before = len(waiting)
            notices_before = sum(w.total_notices for w in self.workers.values())
            still = [p for p in waiting if self._try_complete(p, trace, nonblock=nonblock, retry=True)]
            have_blocker = any(p.ref.blockers for p in still)
            notices_after = sum(w.total_notices for w in self.workers.values())
            waiting = still
            if not (have_blocker and (len(waiting) < before or notices_after != notices_before)):
                return waiting

    def _try_complete(self, p: _Pending, trace: Trace, *, nonblock: bool, retry: bool) -> bool:
        """True if ``p`` is (still) waiting, False once it completed and was recorded."""
        if trace.hung:  # the hang handler already cancelled and recorded every active step
            return False
        if not retry and any(b.step is None for b in p.ref.blockers):
            self._report_waiting(p, trace, [], forced=True)
            return True
        start = self.clock()
        delay = self.options.poll_first
        while not p.done.is_set():
            if p.done.wait(delay):
                break
            if self.options.break_deadlocks and self.dialect.capabilities.harness_breaks_deadlocks:
                self._break_cycle(trace)
            if nonblock:
                waits = self._waits([p], settled_only=True)
                if waits and not p.done.is_set():
                    self._flush_notices(p.worker, trace, p.step.name)
                    if not retry and not p.reported_waiting:
                        self._report_waiting(p, trace, waits)
                    return True
            elapsed = self.clock() - start
            if elapsed > self.options.step_timeout and not p.canceled:
                if self.options.on_timeout == "cancel":
                    p.canceled = True
                    self._cancel(p)
                    trace.events.append(Event(self.clock(), "cancel", p.worker.name, p.step.name,
                                              detail={"after_seconds": int(elapsed)}))
                else:
                    self._hang(trace, [p] + [w.active for w in self.workers.values()
                                             if w.active is not None and w.active is not p],
                               f"step {p.step.name} made no progress for {self.options.step_timeout:g}s")
                    return False
            if elapsed > 2 * self.options.step_timeout:
                self._hang(trace, [p], f"step {p.step.name} timed out")
                return False
            delay = min(delay * 2, self.options.poll_max)
        self._flush_notices(p.worker, trace, p.step.name)
        blocker = self._active_blocker(p)
        if blocker is not None:
            if not retry:
                self._report_waiting(p, trace, [], held_by=blocker)
            return True
        self._complete(p, trace)
        return False

    def _active_blocker(self, p: _Pending) -> str | None:
        for b in p.ref.blockers:
            if b.step is None:
                continue
            other = self.workers[self.scenario.step(b.step).session]
            if b.notices is None:
                if other.active is not None and other.active.step.name == b.step:
                    return b.step
            elif other.total_notices < p.target_notices.get(b.step, 0):
                return b.step
        return None

    def _report_waiting(self, p: _Pending, trace: Trace, waits: list[WaitEdge], *, forced: bool = False,
                        held_by: str | None = None) -> None:
        p.reported_waiting = True
        detail: dict[str, Any] = {}
        if forced:
            detail["forced"] = True
        if held_by:
            detail["held_by_step"] = held_by
        trace.events.append(Event(self.clock(), "blocked", p.worker.name, p.step.name, p.sql or None,
                                  waits=waits, detail=detail))

    def _complete(self, p: _Pending, trace: Trace) -> None:
        assert p.result is not None
        if p.victim and p.result.error is not None:
            p.result.error = self.dialect.deadlock_info(p.result.error)
        worker = p.worker
        if p.fault is not None:  # a lost ack: the closed session ends (rolls back) before anything goes on
            p.fault["session_ended"] = self.dialect.wait_session_gone(self.control, worker.sid,
                                                         self.options.step_timeout)
            trace.events.append(Event(p.fault_at, "fault", worker.name, p.step.name, p.sql or None,
                                      detail=p.fault))
        detail: dict[str, Any] = {"after_wait": True} if p.reported_waiting else {}
        if p.conn_lost:
            detail["connection_lost"] = True
        detail.update(p.note)
        if starts_transaction(p.sql):
            worker.outside_tx = False
        elif worker.outside_tx:
            detail["outside_transaction"] = True  # runs as autocommit: its transaction was rolled back
        trace.events.append(Event(self.clock(), "complete", worker.name, p.step.name, p.sql or None,
                                  result=p.result, detail=detail))
        worker.active = None
        error = p.result.error
        if error is not None and not p.conn_lost and not worker.outside_tx and \
                worker.call(lambda: self.dialect.ended_transaction(worker.conn, error)):
            worker.outside_tx = True
            trace.events.append(Event(self.clock(), "rollback", worker.name, p.step.name, detail={
                "by_server": True, "code": error.code}))
        if p.conn_lost:  # stays gone for the rest of the interleaving (see _launch, _revive_lost)
            if worker.lost is None:
                worker.lost = (f"closed at step {p.step.name} (lose_commit_ack of step {p.fault['by_step']})"
                               if p.fault is not None else f"lost at step {p.step.name}")
            worker.lost_reported = True

    def _flush_notices(self, worker: SessionWorker, trace: Trace, step: str | None) -> None:
        # notices count for `(step notices N)` once the scheduler has seen them, as in isolationtester
        # (its notice processor runs only while it polls that session's connection)
        drained = worker.drain_notices()
        worker.total_notices += len(drained)
        for t, notice in drained:
            extra = getattr(notice, "extra", None) or {}  # dialect-specific (e.g. libpq's formatted text)
            trace.events.append(Event(t, "notice", worker.name, step,
                                      detail={"severity": notice.severity, "message": notice.message,
                                              "code": notice.code, **extra}))


__all__ = ["ActionContext", "Blocker", "Engine", "EngineOptions", "FaultPort", "ScenarioRunError",
           "all_interleavings"]
