"""The engine's setup and teardown of a listed interleaving: the scenario's blocks (SQL, or Python:
``{call: module:function}``), each session's isolation level and its own blocks.

Split from :mod:`harness.engine`; the :class:`~harness.engine.Engine` inherits this and sets the
attributes declared below.
"""

from __future__ import annotations

from typing import Any, Callable

from .dialect import ConnInfo
from .engine_waits import EngineWaits
from .errors import ScenarioError, ScenarioRunError
from .scenario.model import SqlText
from .steps import SessionWorker
from .trace import ErrorInfo, Event, StepResult, Trace


class EngineSetup(EngineWaits):
    """Setup and teardown blocks of an engine's scenario (see the module docstring)."""

    backend: str
    info: ConnInfo
    control: Any

    def _flush_notices(self, worker: SessionWorker, trace: Trace, step: str | None) -> None:
        raise NotImplementedError

    def _run_control(self, sql: str) -> StepResult:
        return self.dialect.run_sql(self.control, sql)

    def _setup(self, trace: Trace) -> None:
        for block in self.scenario.setup:
            self._setup_block(trace, None, block, self._run_control, fatal=True)
        for session in self.scenario.sessions:
            worker = self.workers[session.name]
            if session.isolation:
                sql = self.dialect.isolation_sql(session.isolation)
                result = worker.run_now(sql)
                trace.events.append(Event(self.clock(), "setup", session.name, None, sql, result=result))
                if result.error:
                    raise ScenarioRunError(f"{self.scenario.path}:{session.line}: isolation level "
                                           f"{session.isolation!r} of session {session.name!r} was refused: "
                                           f"{result.error.message}")
            for block in session.setup:
                self._setup_block(trace, session.name, block, worker.run_now, fatal=True)

    def _teardown(self, trace: Trace) -> None:
        for session in self.scenario.sessions:
            worker = self.workers.get(session.name)
            if worker is None:
                continue
            for block in session.teardown:
                self._setup_block(trace, session.name, block, worker.run_now, fatal=False, kind="teardown")
        for block in self.scenario.teardown:
            self._setup_block(trace, None, block, self._run_control, fatal=False, kind="teardown")

    def _setup_block(self, trace: Trace, session: str | None, block: SqlText,
                     run: Callable[[str], StepResult], *, fatal: bool, kind: str = "setup") -> None:
        if block.call is not None:
            self._hook_block(trace, block, kind, fatal)
            return
        sql = block.for_backend(self.backend)
        if sql is None:
            return
        result = run(sql)
        if session is not None:
            self._flush_notices(self.workers[session], trace, None)
        trace.events.append(Event(self.clock(), kind, session, None, sql, result=result))
        if result.error and fatal:
            where = f"session {session!r} " if session else ""
            raise ScenarioRunError(f"{self.scenario.path}:{block.line}: {where}{kind} failed: "
                                   f"{result.error.severity}: {result.error.message}"
                                   + (f" ({result.error.code})" if result.error.code else ""))

    def _hook_block(self, trace: Trace, block: SqlText, kind: str, fatal: bool) -> None:
        """A scenario's Python setup/teardown (``{call: module:function}``), on the control connection."""
        from .scenario.hooks import SetupContext, run_hook

        assert block.call is not None and self.control is not None
        result = StepResult()
        try:
            run_hook(self.scenario.path, block.call, block.args, block.line, kind,
                     SetupContext(self.backend, self.info, self.control))
        except ScenarioError as exc:
            if fatal:
                raise
            result = StepResult(error=ErrorInfo(None, str(exc)))
        trace.events.append(Event(self.clock(), kind, None, None, f"call {block.call}", result=result))
