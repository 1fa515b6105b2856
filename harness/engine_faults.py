"""Fault steps of a listed interleaving (kill_session, inject_error, lose_commit_ack), acting on
another session through the engine's control connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import HarnessError
from .steps import SessionWorker, _Armed
from .trace import ErrorInfo, Event, Trace

if TYPE_CHECKING:
    from .engine import Engine


@dataclass
class _EngineFaults:
    """Fault steps in a listed interleaving: they run on the engine's thread between two steps, so the
    control connection is theirs; what they do is recorded as ``fault`` events."""

    engine: Engine
    trace: Trace
    session: str  # the session whose step acts
    step: str

    def _victim(self, name: str) -> SessionWorker:
        worker = self.engine.workers.get(name)
        if worker is None:
            raise HarnessError(f"there is no session {name!r}; sessions: {', '.join(self.engine.workers)}.")
        return worker

    def _event(self, victim: str, **detail: Any) -> None:
        self.trace.events.append(Event(self.engine.clock(), "fault", victim, self.step,
                                       detail={"victim": victim, "by": self.session, **detail}))

    def kill_session(self, victim: str) -> None:
        worker, eng = self._victim(victim), self.engine
        if worker.lost is not None:
            self._event(victim, fault="kill_session", already=f"connection {worker.lost}")
            return
        # a step in flight (e.g. blocked on a lock) completes with the driver's error itself
        in_flight = worker.active.step.name if worker.active and not worker.active.done.is_set() else None
        eng.dialect.terminate(eng.control, worker.sid)
        if not eng.dialect.wait_session_gone(eng.control, worker.sid, eng.options.step_timeout):
            raise HarnessError(f"session {victim}'s server session {worker.sid} was still there "
                               f"{eng.options.step_timeout:g}s after it was killed.")
        worker.lost, worker.lost_reported = f"killed at step {self.step}", in_flight is not None
        self._event(victim, fault="kill_session", **({"in_flight": in_flight} if in_flight else {}))

    def inject_error(self, victim: str, code: str, message: str) -> None:
        self._victim(victim).armed.append(_Armed("inject_error", self.step, ErrorInfo(code, message)))
        self._event(victim, fault="inject_error", armed=True, code=code)

    def lose_commit_ack(self, victim: str) -> None:
        self._victim(victim).armed.append(_Armed("lose_commit_ack", self.step))
        self._event(victim, fault="lose_commit_ack", armed=True)
