"""What the stack-comparison benchmarks (app_paths, async_paths, django_orm, stacks) share: one two-actor
race per request handler, explored exhaustively over one bounded space, timed, and its serial schedule's
decision points counted.  No check: every schedule passes, so each search covers the whole space."""

from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Sequence

from harness.explore import Race

Handler = Callable[[Race], Callable[[], Any]]


class FirstRunnable:
    """A chooser letting the first runnable actor go on: the serial schedule A..., B...."""

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        return runnable[0]


def race_rate(database: Any, make: Handler, *, setup: Sequence[str], teardown: Sequence[str], rounds: int,
              budget: int, name: str, context: Callable[[Race], AbstractContextManager[Any]] | None = None,
              ) -> tuple[float, int, int]:
    """(median seconds per schedule, decision points of the serial schedule, schedules per exploration)."""
    per_schedule: list[float] = []
    points: list[int] = []
    count = 0
    for _ in range(rounds):
        with Race(database, name=name) as race, (context or (lambda r: nullcontext()))(race):
            race.capture_drivers()
            for sql in setup:
                race.setup(sql)
            for sql in teardown:
                race.teardown(sql)
            request = make(race)
            race.actor("A", request)
            race.actor("B", request)
            started = time.perf_counter()
            result = race.explore(strategy="exhaustive", preemption_bound=2, max_schedules=budget)
            per_schedule.append((time.perf_counter() - started) / max(1, result.schedules_run))
            count = result.schedules_run
            points.append(len(race.run_schedule(FirstRunnable()).labels))
    return statistics.median(per_schedule), int(statistics.median(points)), count
