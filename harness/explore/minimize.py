"""Minimizing a failure: the fewest preemptions, none removable, each candidate replayed exactly.

Bounded enumeration first (every schedule with fewer preemptions, in a fixed order, as CHESS does),
so the result does not depend on where the search started; then single preemptions are dropped while
the schedule still fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .actors import Chooser
from .outcome import ScheduleOutcome
from .racebase import RaceBase
from .strategies import IndexChooser, ReplayChooser, bounded_exhaustive


class MinimizeMixin(RaceBase):
    """Shrinking a failure to the fewest preemptions, verified by exact replays."""

    def minimize(self, failure: ScheduleOutcome, budget: int = 400) -> tuple[ScheduleOutcome, bool, int]:
        """The failing schedule with the fewest preemptions, none of which can be removed.

        First every schedule with fewer preemptions than ``failure`` is tried in a fixed order (bounded
        enumeration, as CHESS does: few schedules have few preemptions), so the result does not depend
        on where Hypothesis happened to start; then preemptions are dropped one at a time while the
        schedule still fails, replaying each candidate exactly.  Returns (minimal, verified, runs).
        """
        tried = 0
        for bound in range(failure.preemptions):
            for outcome in bounded_exhaustive(self.run_schedule, bound, budget - tried):
                tried += 1
                if not outcome.passed:
                    minimal, verified, runs = self._drop_preemptions(outcome)
                    return minimal, verified, tried + runs
            if tried >= budget:
                break
        minimal, verified, runs = self._drop_preemptions(failure)
        return minimal, verified, tried + runs

    def _drop_preemptions(self, failure: ScheduleOutcome) -> tuple[ScheduleOutcome, bool, int]:
        recorder = IndexChooser([])
        current = self.run_schedule(_Recording(ReplayChooser(failure.schedule), recorder))
        runs = 1
        if current.passed:  # not reproducible: report what was found, unverified
            return failure, False, runs
        indexes = list(recorder.taken)
        changed = True
        while changed:
            changed = False
            for pos in range(len(indexes)):
                if indexes[pos] == 0:
                    continue
                candidate = indexes[:pos] + [0] + indexes[pos + 1:]
                chooser = IndexChooser(candidate)
                outcome = self.run_schedule(chooser)
                runs += 1
                if not outcome.passed:
                    indexes, current, changed = list(chooser.taken), outcome, True
                    break
        return current, True, runs


@dataclass
class _Recording:
    """Delegates to a chooser while recording the decisions as indexes (for minimization)."""

    inner: Chooser
    recorder: IndexChooser
    decisions: list[int] = field(default_factory=list)

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        choice = self.inner.choose(runnable, current, index)
        if len(runnable) > 1 and choice in runnable:
            self.recorder.taken.append(list(runnable).index(choice))
        return choice
