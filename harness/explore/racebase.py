"""What the parts of a :class:`~.race.Race` share: its state, declared once for the type checker.

A race is split by concern into mixins (faults.py, resources.py, search.py, minimize.py) over this
base; :class:`~.race.Race` sets every attribute in its ``__init__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from ..check import Violation
from ..dialect import Dialect
from ..provision import Database
from ..trace import Trace
from .actors import ActorResult, Chooser, SchedulerOptions
from .outcome import ExploreResult, ScheduleOutcome
from .scheduler import Scheduler


class RaceBase:
    """State shared by the race's parts (see :class:`~.race.Race` for what each holds)."""

    database: Database
    name: str
    backend: str
    dialect: Dialect
    options: SchedulerOptions
    actors: dict[str, Callable[..., Any]]
    faults: dict[str, Callable[..., Any]]
    allowed_errors: list[str | type]
    save_dir: Path | None
    shard: Any
    progress: Callable[[int, int], None] | None
    _redis: Any
    _setup: list[str | Callable[[Any], None]]
    _teardown: list[str | Callable[[Any], None]]
    _scheduler: Scheduler | None
    _opened: list[Any]
    _monitor: Any
    _fault_admin: Any
    _links: dict[str, Any]
    _clock_in_setup: bool
    _outlasting: set[str]
    _redis_keys: set[str]
    redis_namespace: bool
    step_plan: dict[str, list[str]] | None
    _idle: dict[bool, list[Any]]
    _lent: list[tuple[bool, Any]]
    _idle_sessions: dict[str, Any]
    _lent_sessions: list[tuple[str, Any]]
    step_checker: Callable[[Trace], list[Violation]] | None
    trace_checker: Callable[[Trace, Any], list[Violation]] | None
    _text: Any
    _prepared: bool
    _seen: dict[tuple[int, ...], ScheduleOutcome]
    _facts: list[str]
    _engine_cache: dict[str, Any]
    last_result: ExploreResult | None  # the last exploration's (for reports of race tests)
    expects_race: bool
    forced_schedule: str | None
    replay_hint: Callable[[str], str]

    # defined by one part, used by others
    def run_schedule(self, chooser: Chooser) -> ScheduleOutcome:
        raise NotImplementedError

    def replay(self, schedule: str | Sequence[str]) -> ScheduleOutcome:
        raise NotImplementedError

    def _control(self) -> Any:
        raise NotImplementedError

    def setup(self, sql_or_fn: str | Callable[[Any], None]) -> None:
        raise NotImplementedError

    def teardown(self, sql_or_fn: str | Callable[[Any], None]) -> None:
        raise NotImplementedError

    def capture_drivers(self) -> None:
        raise NotImplementedError

    def instrument_engine(self, engine: Any) -> Any:
        raise NotImplementedError

    def _redis_client(self, *, actor_side: bool = False) -> Any:
        raise NotImplementedError

    def _via_link(self, name: str, info: Any) -> Any:
        raise NotImplementedError

    def _forget_connections(self) -> None:
        raise NotImplementedError

    def redis_key(self, key: str) -> str:
        raise NotImplementedError

    def minimize(self, failure: ScheduleOutcome, budget: int = 400) -> tuple[ScheduleOutcome, bool, int]:
        raise NotImplementedError

    def _remember(self, decisions: tuple[int, ...], outcome: ScheduleOutcome) -> None:
        raise NotImplementedError

    @property
    def redis_info(self) -> Any:
        raise NotImplementedError


__all__ = ["ActorResult", "RaceBase"]
