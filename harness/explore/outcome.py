"""What explorations return: one schedule's outcome, why a search stopped, a search's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..check import Violation
from ..results import Outcome
from ..trace import Trace
from .actors import ActorResult
from .strategies import format_schedule


@dataclass
class ScheduleOutcome:
    """One schedule's result: who moved, what the actors returned or raised, which checks failed."""

    schedule: list[str]
    labels: list[str]
    results: dict[str, ActorResult]
    records: list[Violation]  # what went wrong, as records; empty when everything held
    trace: Trace
    preemptions: int = 0
    duration: float = 0.0
    options: list[list[str]] = field(default_factory=list)  # who could move at each move

    @property
    def violations(self) -> list[str]:
        """The records as sentences (for messages)."""
        return [v.message for v in self.records]

    @property
    def violated(self) -> list[str]:
        """The checks that failed, by name."""
        return sorted({v.subject for v in self.records if v.kind == "check" and v.subject})

    @property
    def passed(self) -> bool:
        return not self.records

    @property
    def schedule_text(self) -> str:
        return format_schedule(self.schedule)

    def describe(self) -> str:
        """The schedule and a step-by-step account, for failure messages."""
        from ..report.text import story_lines, trace_lines

        lines = [f"schedule: {self.schedule_text}"] + [f"  - {v}" for v in self.violations]
        return "\n".join(lines + story_lines(self.trace) + trace_lines(self.trace))


class StopReason(str, Enum):
    """Why a search stopped, recorded as data (as Hypothesis's ExitReason), never inferred from counts."""

    FAILURE = "failure found"
    BUDGET = "budget spent"
    EXHAUSTED = "space exhausted"  # the strategy says every distinct schedule it can make was tried


@dataclass
class ExploreResult:
    strategy: str
    schedules_run: int  # schedules of the search proper: never more than ``budget``
    elapsed: float
    failure: ScheduleOutcome | None = None  # minimal failing schedule, if any
    first_failure_after: int | None = None  # schedules run until the first failure
    seed: int | None = None
    minimal_verified: bool = False  # no preemption of the failure can be removed
    stop_reason: StopReason = StopReason.BUDGET
    budget: int = 0
    shrink_runs: int = 0  # runs spent confirming and minimizing the failure, not counted above
    aborted_runs: int = 0  # Hypothesis test cases abandoned mid-schedule (over-long draws), not counted above
    replayed: bool = False  # the failure is a schedule the user gave, not one found and minimized
    shard: str | None = None  # "K/N" when this is one shard's part (see .shard)
    tried: list[str] = field(default_factory=list)  # the search's schedules, in the order they ran
    probe_runs: int = 0  # shards: runs that only showed the schedule tree's shape, not counted above
    found_key: tuple[int, ...] | None = None  # orders shards' first failures as one search would find them

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def exhausted(self) -> bool:
        return self.stop_reason is StopReason.EXHAUSTED

    def to_outcome(self, scenario: str, path: str, backend: str, expect_violation: bool = False) -> Outcome:
        """As a results Outcome (for reports): passes when the verdict matches the expectation."""
        found = self.failure is not None
        passed = found == expect_violation
        problems = [] if passed else (self.failure.violations if self.failure else
                                      [f"expected a violation, but {self.schedules_run} schedules passed"])
        trace = self.failure.trace if self.failure else None
        return Outcome(scenario, path, backend, "exploration", self.failure.schedule if self.failure else [],
                       passed, "violates" if expect_violation else "holds",
                       violated=self.failure.violated if self.failure else [], problems=problems,
                       duration=self.elapsed, trace=trace, kind="exploration",
                       schedules_run=self.schedules_run, seed=self.seed, shard=self.shard,
                       found_key=list(self.found_key) if self.found_key else None)
