"""The one step executor: how a scenario step runs on its session's connection, for both paths.

Listed interleavings (the engine, one worker thread per session) and explored scenarios (one actor
thread per session, under the scheduler) differ in who decides the order and how a wait is seen; what
a step *does* is the same code here: its SQL for the backend (:func:`step_sql`), an action through the
actions registry or the SQL through the dialect (:func:`run_step`), with an :class:`ActionContext`
saying where client-side waits (Redis locks) and fault steps go.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from .dialect import Dialect
from .dialect.base import SqlCall
from .errors import ScenarioRunError
from .scenario.model import Scenario, Step, StepRef
from .trace import ErrorInfo, StepResult, WaitEdge


class FaultPort(Protocol):
    """What fault steps act through: the engine (listed interleavings) or the explorer's Race."""

    def kill_session(self, victim: str) -> None:
        """The server ends ``victim``'s connection now; returns once the server session is gone."""

    def inject_error(self, victim: str, code: str, message: str) -> None:
        """``victim``'s next SQL step fails with this server error without reaching the server."""

    def lose_commit_ack(self, victim: str) -> None:
        """``victim``'s next SQL step runs, then its connection closes before the client hears."""


@dataclass
class ActionContext:
    """What a harness action (a non-SQL step) can use: its session's connection and the wait flag;
    fault steps also get ``faults`` (None where the run cannot inject faults)."""

    session: str
    conn: Any
    dialect: Dialect
    args: Mapping[str, Any]
    _worker: Any  # the engine's SessionWorker, or the explorer's stand-in: only .self_wait is used
    faults: FaultPort | None = None
    lock_observer: Any = None  # where a lock step reports client-side waits (None: the engine's worker)

    def waiting(self, lock: str, holder: str | None = None, detail: str = "") -> None:
        """Declare that this session now waits on something invisible to the database."""
        self._worker.self_wait = WaitEdge(self.session, holder, lock, detail)

    def done_waiting(self) -> None:
        self._worker.self_wait = None


Action = Callable[[ActionContext], StepResult]


def step_sql(scenario: Scenario, step: Step, backend: str) -> str:
    """A SQL step's text for ``backend`` ("" for an action step)."""
    if step.sql is None:
        return ""
    sql = step.sql.for_backend(backend)
    if sql is None:
        raise ScenarioRunError(f"{scenario.path}:{step.line}: step {step.name!r} has no SQL for backend "
                               f"{backend!r}; add `{backend}:` under its sql.")
    return sql


def run_step(step: Step, sql: str, ctx: ActionContext, actions: Mapping[str, Action],
             on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
    """Run one step on ``ctx.conn``: an action through ``actions``, else ``sql`` through the dialect.
    Errors are the step's result (an action's own bug is a ``harness`` error, not a crash); a lost
    connection is raised as :class:`ConnectionError` for the caller to record."""
    if step.action is None:
        return ctx.dialect.run_sql(ctx.conn, sql, on_notice)
    try:
        return actions[step.action](ctx)
    except ConnectionError:
        raise
    except Exception as exc:
        return StepResult(error=ErrorInfo("harness", f"{type(exc).__name__}: {exc}"))


def lost_connection(exc: BaseException) -> StepResult:
    """A step's result when its connection went away under it (the driver's error as its text)."""
    return StepResult(error=ErrorInfo("connection", f"connection lost: {exc}", "FATAL"))


class Completion(Protocol):
    """Whether a launched step is done: a :class:`threading.Event` set by its worker thread, or a
    :class:`_Polled` that reads the step's connection when asked."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def set(self) -> None: ...


@dataclass(eq=False)
class _Pending:
    ref: StepRef
    step: Step
    sql: str
    worker: "SessionWorker"
    t_launch: float
    done: Completion = field(default_factory=threading.Event)
    result: StepResult | None = None
    conn_lost: bool = False
    reported_waiting: bool = False
    canceled: bool = False
    target_notices: dict[str, int] = field(default_factory=dict)
    note: dict[str, Any] = field(default_factory=dict)  # extra detail for the complete event
    fault: dict[str, Any] | None = None  # a lost ack that fired in the worker, recorded at completion
    fault_at: float = 0.0
    victim: bool = False  # cancelled by the engine to break a wait-for cycle: its error is a deadlock


@dataclass
class _Armed:
    """A fault waiting for its session's next SQL step."""

    kind: str  # inject_error | lose_commit_ack
    by_step: str
    error: ErrorInfo | None = None


_BEGIN = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.I)


def starts_transaction(sql: str | None) -> bool:
    """Whether a step's SQL opens a transaction (ends a session's run outside one)."""
    return bool(sql) and _BEGIN.match(sql or "") is not None


class _Polled:
    """A step the dialect sent from the engine's thread (``Capabilities.inline_sql``): asking whether
    it is done, or waiting for it, reads its connection -- isolationtester's ``try_complete_step``,
    with no thread hop per step."""

    def __init__(self, pending: _Pending, call: SqlCall) -> None:
        self.pending, self.call, self._set = pending, call, False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        if not self._set:
            self._drive(0.0)
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            self._drive(max(0.0, left))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self._set

    def _drive(self, timeout: float) -> None:
        p = self.pending
        try:
            result = self.call.poll(timeout)
        except ConnectionError as exc:
            result = lost_connection(exc)
            p.conn_lost = True
        if result is not None:
            p.result = result
            self._set = True


class SessionWorker:
    """One session: a connection and a thread that runs its steps one by one."""

    def __init__(self, name: str, conn: Any, dialect: Dialect, clock: Callable[[], float]) -> None:
        self.name, self.conn, self.dialect, self.clock = name, conn, dialect, clock
        self.sid = dialect.session_id(conn)
        self.active: _Pending | None = None
        self.self_wait: WaitEdge | None = None
        self.lost: str | None = None  # how the connection went away ("killed at step f1"), None if alive
        self.lost_reported = False  # a step already failed with the driver's error for that loss
        self.outside_tx = False  # the server rolled its transaction back; no BEGIN since
        self.armed: list[_Armed] = []
        self.total_notices = 0
        self._notices: list[tuple[float, ErrorInfo]] = []
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"harness-session-{name}")
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def on_notice(self, notice: ErrorInfo) -> None:
        with self._lock:
            self._notices.append((self.clock(), notice))

    def drain_notices(self) -> list[tuple[float, ErrorInfo]]:
        with self._lock:
            out, self._notices = self._notices, []
        return out

    def launch(self, pending: _Pending, work: Callable[[], StepResult]) -> None:
        self.active = pending

        def job() -> None:
            try:
                pending.result = work()
            except ConnectionError as exc:
                pending.result = lost_connection(exc)
                pending.conn_lost = True
            except Exception as exc:  # an action's own bug: a result, not an engine crash
                pending.result = StepResult(error=ErrorInfo("harness", f"{type(exc).__name__}: {exc}"))
            finally:
                self.self_wait = None
                pending.done.set()

        self._jobs.put(job)

    def start(self, pending: _Pending, sql: str) -> None:
        """Send a SQL step from the caller's thread (``Capabilities.inline_sql``); ``pending.done``
        then reads the connection when asked."""
        self.active = pending
        try:
            pending.done = _Polled(pending, self.dialect.start_sql(self.conn, sql, self.on_notice))
        except ConnectionError as exc:
            pending.result = lost_connection(exc)
            pending.conn_lost = True
            pending.done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in this worker's thread (its connection is only used there) and return its value."""
        box: dict[str, Any] = {}
        ready = threading.Event()

        def job() -> None:
            try:
                box["v"] = fn()
            except Exception as exc:
                box["e"] = exc
            finally:
                ready.set()

        self._jobs.put(job)
        ready.wait()
        if "e" in box:
            raise box["e"]
        return box["v"]

    def run_now(self, sql: str) -> StepResult:
        """Run SQL synchronously on this session (setup/teardown), in this worker's thread (or the
        caller's, where the dialect drives SQL inline: no step is in flight then)."""
        if self.dialect.capabilities.inline_sql:
            try:
                return self.dialect.run_sql(self.conn, sql, self.on_notice)
            except ConnectionError as exc:
                return lost_connection(exc)
        box: dict[str, StepResult] = {}
        ready = threading.Event()

        def job() -> None:
            try:
                box["r"] = self.dialect.run_sql(self.conn, sql, self.on_notice)
            except ConnectionError as exc:
                box["r"] = lost_connection(exc)
            finally:
                ready.set()

        self._jobs.put(job)
        ready.wait()
        return box["r"]

    def stop(self) -> None:
        self._jobs.put(None)
        try:
            self.conn.close()
        except Exception:
            pass
