"""Exploration: application code (actors) driven through generated schedules.

See :class:`harness.explore.race.Race` for the API and :mod:`.scheduler` for how one schedule runs.
"""

from .race import PROFILES, ActorContext, ExploreResult, Race, ScheduleOutcome, StopReason
from .scheduler import Divergence, ScheduleAborted
from .strategies import format_schedule, parse_schedule

__all__ = ["PROFILES", "ActorContext", "Divergence", "ExploreResult", "Race", "ScheduleAborted",
           "ScheduleOutcome", "StopReason", "format_schedule", "parse_schedule"]
