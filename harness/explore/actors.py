"""The records the scheduler passes around: actor states, results, a schedule's run, its errors."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ..dialect.base import error_info
from ..errors import AsyncActorError, Divergence, FaultSkipped, ScheduleAborted
from ..trace import ErrorInfo, Trace, WaitEdge
from .history import Op

READY, RUNNING, BLOCKED_DB, BLOCKED_LOCK, DONE = "ready", "running", "blocked-db", "blocked-lock", "done"


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
        return None if self.error is None else error_info(self.error)


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
    step: str | None = None  # the scenario step its call runs (scenario sessions), for the trace
    sql: str | None = None  # the statement its call sends, when known
    fired: str | None = None  # the fault that fired in its current call (its result is the fault's doing)
    params: str | None = None  # its current statement's bound parameters, as the trace shows them
    note: dict[str, Any] | None = None  # extra detail for its current call's complete event
    victim: bool = False  # the harness cancelled its call to break a wait-for cycle
    in_call: bool = False  # inside a database call: a nested one (a driver under an instrumented layer) is its part
    lock_key: str | None = None
    lock_waits: WaitEdge | None = None
    blocked_at: int = 0  # progress moves (see Conductor._progress) when its lock attempt last failed
    quiet_retry: bool = False  # retrying a harness lock while nobody else could move: no decision
    segments: int = 0
    result: ActorResult | None = None
    optional: bool = False  # a fault: may never move; skipped once every required actor is done
    skip: bool = False
    ops: list[Op] = field(default_factory=list)
    wake: Callable[[], None] | None = None  # an async actor's: wakes its event loop (from any thread)


@dataclass
class SchedulerOptions:
    hang_timeout: float = 10.0  # no actor can move for this long: hang (wait-for graph recorded)
    poll_first: float = 0.0005
    poll_max: float = 0.005


__all__ = ["AsyncActorError", "ActorResult", "Chooser", "Divergence", "FaultSkipped", "ScheduleAborted",
           "ScheduleRun", "SchedulerOptions"]
