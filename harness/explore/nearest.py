"""The nearest passing schedule: a failing schedule with one of its choices taken back, run for real.

Reports show it beside the failure, so a reader sees which move order matters.  Each candidate is the
failure's own decisions with one choice of another actor replaced by "go on" (index 0, as the
minimizer counts preemptions), run through :meth:`run_schedule`; the first that passes is the answer.
"""

from __future__ import annotations

from .minimize import _Recording
from .outcome import ScheduleOutcome
from .racebase import RaceBase
from .strategies import IndexChooser, ReplayChooser


def nearest_passing(race: RaceBase, failure: ScheduleOutcome, limit: int = 8) -> ScheduleOutcome | None:
    """The failure with one preemption removed that passes, or None (not reproducible, none passes
    within ``limit`` runs)."""
    recorder = IndexChooser([])
    if race.run_schedule(_Recording(ReplayChooser(failure.schedule), recorder)).passed:
        return None  # the failure did not reproduce: nothing to compare with
    indexes = list(recorder.taken)
    tried = 0
    for pos, index in enumerate(indexes):
        if index == 0:
            continue
        if tried >= limit:
            break
        tried += 1
        outcome = race.run_schedule(IndexChooser(indexes[:pos] + [0] + indexes[pos + 1:]))
        if outcome.passed:
            return outcome
    return None
