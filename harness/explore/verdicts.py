"""A race's verdicts: the assert helpers tests call, the failure text they raise, the saved schedule, and
the report outcome of a race test (``--harness-report``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .outcome import ExploreResult, ScheduleOutcome, StopReason
from .search import SearchMixin


class VerdictsMixin(SearchMixin):
    """assert_no_race / assert_finds_race, and what a failure says and leaves behind."""

    def assert_no_race(self, max_schedules: int | None = None, **explore_kwargs: Any) -> ExploreResult:
        """Explore; fail with the minimal schedule, its trace and the replay command if any fails."""
        if self.forced_schedule:
            outcome = self.replay(self.forced_schedule)
            self.last_result = ExploreResult("replay", 1, outcome.duration, None if outcome.passed else outcome,
                                             budget=1, replayed=True)
            if not outcome.passed:
                raise AssertionError(self._failure_text(outcome, "the replayed schedule fails", replayed=True))
            return ExploreResult("replay", 1, outcome.duration, budget=1, replayed=True)
        result = self.explore(max_schedules=max_schedules, **explore_kwargs)
        if result.failure is not None:
            raise AssertionError(self._failure_text(result.failure, f"race found after "
                                                    f"{result.first_failure_after} schedule(s)"))
        return result

    def assert_finds_race(self, max_schedules: int | None = None, **explore_kwargs: Any) -> ExploreResult:
        """Explore expecting a failure (for demonstrations of a known bug); returns the minimal one."""
        self.expects_race = True
        if self.forced_schedule:
            outcome = self.replay(self.forced_schedule)
            if outcome.passed:
                raise AssertionError(f"the replayed schedule {self.forced_schedule!r} passes")
            self.last_result = ExploreResult("replay", 1, outcome.duration, outcome, 1, budget=1,
                                             stop_reason=StopReason.FAILURE, replayed=True)
            return self.last_result
        result = self.explore(max_schedules=max_schedules, **explore_kwargs)
        if result.failure is None:
            raise AssertionError(f"expected a race, but {result.schedules_run} schedules of race "
                                 f"{self.name!r} ({result.strategy}) all passed")
        return result

    def report_outcome(self, *, test: str, path: str, passed: bool) -> Any:
        """The race test's last exploration as a report :class:`harness.results.Outcome` (None if it did
        not explore): its minimal failing schedule and trace, and the pytest command replaying it."""
        import shlex

        from ..results import Outcome

        result = self.last_result
        if result is None:
            return None
        failure = result.failure
        argv = shlex.split(self.replay_hint(failure.schedule_text)) if failure is not None else None
        return Outcome(test, path, self.backend, "exploration", failure.schedule if failure else [], passed,
                       "violates" if self.expects_race else "holds", failure.violated if failure else [],
                       [] if passed else (failure.violations if failure else ["no race found"]), result.elapsed,
                       failure.trace if failure else None, kind="exploration", schedules_run=result.schedules_run,
                       seed=result.seed, found_after=result.first_failure_after,
                       preemptions=failure.preemptions if failure else None, exhausted=result.exhausted,
                       stop_reason=result.stop_reason.value, replayed=result.replayed, replay_command=argv)

    def _failure_text(self, outcome: ScheduleOutcome, headline: str, replayed: bool = False) -> str:
        saved = self.save_schedule(outcome)
        from ..redact import sanitize

        what = "replayed schedule" if replayed else "minimal schedule"
        return sanitize(f"{headline}; {what} ({outcome.preemptions} preemption(s)):\n{outcome.describe()}\n"
                        f"replay: {self.replay_hint(outcome.schedule_text)}" + (f"\nsaved: {saved}" if saved else ""))

    def save_schedule(self, outcome: ScheduleOutcome) -> Path | None:
        """Write the failing schedule to a JSON file (for ``harness replay FILE``)."""
        if self.save_dir is None:
            return None
        import shlex

        from ..replay import save_schedule

        hint = self.replay_hint(outcome.schedule_text)  # built with shlex.quote: splits back exactly
        try:
            argv = shlex.split(hint)
        except ValueError:  # not a command line; `harness replay` will refuse it
            argv = [hint]
        return save_schedule(self.save_dir, f"{self.name}-{self.backend}",
                             {"kind": "race", "race": self.name, "backend": self.backend,
                              "schedule": outcome.schedule_text, "violations": outcome.violations}, argv)
