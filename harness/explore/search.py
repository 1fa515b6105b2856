"""The search over schedules: strategies, the budget, Hypothesis generation, stop reasons, and the
facts reported when two runs of the same decisions differ.

Search is separate from execution (as in Hypothesis): a strategy only takes decisions (a Chooser);
:meth:`~.race.Race.run_schedule` executes one schedule.  At most the budget is run by the search
itself; runs that confirm or minimize a failure, and cases Hypothesis abandons mid-schedule, are
counted apart (:class:`_Tally`).
"""

from __future__ import annotations

import itertools
import os
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky as HypothesisFlaky
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.statistics import collector

from ..errors import HarnessError
from .actors import Chooser
from .exampledb import example_database
from .outcome import ExploreResult, ScheduleOutcome, StopReason
from .racebase import RaceBase
from .shard import Shard, resolve_shard, sharded_exhaustive
from .strategies import ContinueChooser, HypothesisChooser, PCTChooser, RandomChooser

#: Hypothesis settings per profile (HARNESS_PROFILE or explore(profile=...)); plain data, not a registry
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 100},
    "ci": {"max_examples": 200, "derandomize": True},
    "thorough": {"max_examples": 2000},
}


class _Found(Exception):
    def __init__(self, outcome: ScheduleOutcome) -> None:
        super().__init__(outcome.violations[0] if outcome.violations else "failure")
        self.outcome = outcome


class _BudgetSpent(BaseException):
    """Stops a Hypothesis search at the budget (a BaseException: Hypothesis lets it through at once)."""


@dataclass
class _Tally:
    """What one exploration ran: the search's schedules (capped at the budget), the first failure,
    confirmation/shrink runs after it and test cases Hypothesis abandoned mid-schedule."""

    budget: int
    count: int = 0
    first: int | None = None
    shrink_runs: int = 0
    aborted: int = 0
    progress: Callable[[int, int], None] | None = None
    probes: int = 0  # shards: runs that only showed the tree's shape (see .shard)
    phase: int = 1  # 0 stored failures, 1 systematic or sampling, 2 Hypothesis generation
    first_key: tuple[int, ...] | None = None  # how one unsharded search orders this failure (see .shard)
    tried: list[str] = field(default_factory=list)  # the schedules of the search, in order

    def run(self, race: RaceBase, chooser: Chooser) -> ScheduleOutcome:
        if self.first is not None:  # Hypothesis replays the failure it reports: not a new schedule
            self.shrink_runs += 1
            return race.run_schedule(chooser)
        if self.count >= self.budget:
            raise _BudgetSpent()
        try:
            outcome = race.run_schedule(chooser)
        except (HarnessError, _BudgetSpent, KeyboardInterrupt):
            raise
        except BaseException:  # Hypothesis stopped the case mid-draw (StopTest, overrun)
            self.aborted += 1
            raise
        return self.adopt(race, chooser, outcome)

    def probe(self, race: RaceBase, chooser: Chooser) -> ScheduleOutcome:
        self.probes += 1
        return race.run_schedule(chooser)

    def adopt(self, race: RaceBase, chooser: Chooser, outcome: ScheduleOutcome, probed: bool = False) -> ScheduleOutcome:
        """Count a schedule that ran as one of the search's (a probe of this shard's own, or a run)."""
        if self.count >= self.budget:
            raise _BudgetSpent()
        self.probes -= probed
        self.count += 1
        self.tried.append(outcome.schedule_text)
        if isinstance(chooser, HypothesisChooser):
            race._remember(tuple(chooser.taken), outcome)
        if self.progress is not None:
            self.progress(self.count, self.budget)
        if not outcome.passed:
            self.first = self.count
            seed = getattr(chooser, "seed", None)
            self.first_key = (self.phase, *(getattr(chooser, "taken", None) or ([seed] if seed is not None else [])))
        return outcome


class SearchMixin(RaceBase):
    """The search over schedules: budgets, strategies, Hypothesis, stop reasons, divergence facts."""

    def explore(self, *, strategy: str = "auto", max_schedules: int | None = None,
                profile: str | None = None, seed: int | None = None, preemption_bound: int = 2,
                pct_depth: int = 2, database_dir: str | Path | None = None,
                stop_at_first: bool = True, minimize: bool = True,
                progress: Callable[[int, int], None] | None = None,
                shard: Shard | str | None = None) -> ExploreResult:
        """Search schedules for a failing one; the reported failure is minimal (shrunk) and replayable.

        At most ``max_schedules`` schedules are run by the search; runs that confirm and minimize a
        failure, and Hypothesis test cases abandoned mid-schedule, are counted apart; why the search
        stopped is ``stop_reason``.  ``shard`` (``"K/N"``, default ``HARNESS_SHARD``) runs this shard's
        part: ``max_schedules`` is the total over the N shards (see :mod:`.shard`)."""
        profile = profile or os.environ.get("HARNESS_PROFILE", "dev")
        if profile not in PROFILES:
            raise HarnessError(f"unknown exploration profile {profile!r}; use one of {', '.join(PROFILES)}.")
        if strategy not in STRATEGIES:
            raise HarnessError(f"unknown strategy {strategy!r}; use {', '.join(STRATEGIES)}.")
        part = resolve_shard(shard if shard is not None else self.shard)
        total = max_schedules or PROFILES[profile]["max_examples"]
        budget = part.budget(total)
        seed = seed if seed is not None else 0
        start = time.perf_counter()
        tally = _Tally(budget, progress=progress or self.progress)
        run = _SearchRun(self, tally, budget, profile, database_dir, seed, preemption_bound, pct_depth, stop_at_first,
                         part, total)
        # one unrecorded run first: lazy initialisation in the code under test (an ORM's first connect
        # queries its dialect) must not make the first schedule take other decisions than its replays
        self.run_schedule(ContinueChooser())
        failure: ScheduleOutcome | None = None
        exhausted = False
        try:
            failure, exhausted = STRATEGIES[strategy](run)
        except _BudgetSpent:
            pass
        verified = False
        before = tally.count
        if failure is not None and minimize:
            failure, verified, runs = self.minimize(failure)
            tally.shrink_runs += runs
        reason = StopReason.FAILURE if failure is not None else (
            StopReason.EXHAUSTED if exhausted else StopReason.BUDGET)
        assert tally.count == before <= budget
        result = ExploreResult(strategy, tally.count, time.perf_counter() - start, failure, tally.first, seed,
                               verified, reason, budget, tally.shrink_runs, tally.aborted,
                               shard=str(part) if part.count > 1 else None, tried=tally.tried, probe_runs=tally.probes,
                               found_key=tally.first_key)
        self.last_result = result
        return result

    def _remember(self, decisions: tuple[int, ...], outcome: ScheduleOutcome) -> None:
        """Keep who could move at each move for these decisions; a second run of the same decisions
        that differs is a fact for the divergence message (see :meth:`_diagnose`)."""
        before = self._seen.get(decisions)
        if before is None:
            if len(self._seen) < 5000:
                self._seen[decisions] = outcome
            return
        if before.options != outcome.options:
            move = next(i for i, (a, b) in enumerate(itertools.zip_longest(before.options, outcome.options))
                        if a != b)
            a, b = (x.options[move] if move < len(x.options) else [] for x in (before, outcome))
            changed = sorted(set(a) ^ set(b))
            waits = [f"{e.session} waited ({', '.join(f'for {w.holder or chr(63)} on {w.lock}' for w in e.waits)})"
                     for x in (before, outcome) for e in x.trace.events
                     if e.kind == "blocked" and e.session in changed]
            self._facts.append(f"at move {move + 1} after {' '.join(outcome.schedule[:move]) or 'the start'}, "
                               f"one run could move {', '.join(a) or 'nobody'} and another "
                               f"{', '.join(b) or 'nobody'}: {', '.join(changed)} changed"
                               + (f"; waits seen: {'; '.join(sorted(set(waits)))}" if waits else ""))
        elif before.violations != outcome.violations:
            self._facts.append(f"schedule {outcome.schedule_text} gave {before.violations or 'no violation'} once "
                               f"and {outcome.violations or 'no violation'} once: the code under test or its "
                               "data varies between runs of one schedule (state left by an earlier schedule, "
                               "time, randomness?)")

    def _diagnose(self) -> str:
        if self._facts:
            return "Facts: " + "; ".join(dict.fromkeys(self._facts[:3])) + "."
        return ("No two runs of the same decisions differed in who could move or in their verdict; Hypothesis "
                "saw a different number of decisions, so an actor's path depends on something the schedule "
                "does not fix (its own randomness, time or state left by an earlier schedule).")

    @staticmethod
    def _first_failure(outcomes: Iterable[ScheduleOutcome], stop_at_first: bool = True) -> ScheduleOutcome | None:
        failure = None
        for outcome in outcomes:
            if not outcome.passed and failure is None:
                failure = outcome
                if stop_at_first:
                    break
        return failure

    def _explore_hypothesis(self, one: Callable[[Chooser], ScheduleOutcome], budget: int, profile: str,
                            database_dir: str | Path | None, phases: list[Phase] | None = None,
                            seed: int | None = None) -> tuple[ScheduleOutcome | None, bool]:
        """Hypothesis generation (no shrinking: :meth:`minimize` does that, deterministically);
        returns the failure found and whether Hypothesis ran out of distinct schedules.  ``seed`` (a
        shard's) fixes generation in place of the profile's ``derandomize``."""
        kwargs = {**PROFILES[profile], "max_examples": budget}
        if seed is not None:
            kwargs.pop("derandomize", None)
        stored = None if kwargs.get("derandomize") else example_database(database_dir)  # derandomize: no database
        stats: list[dict[str, Any]] = []

        def make_search(database: Any) -> Callable[[], None]:
            # quiet: the harness reports what it finds; Hypothesis's own lines (a "@seed(...)" hint on
            # Ctrl-C, which reads like a test failure) would only mislead
            @settings(deadline=None, database=database, print_blob=False, verbosity=Verbosity.quiet,
                      suppress_health_check=list(HealthCheck), phases=phases or [Phase.reuse, Phase.generate],
                      report_multiple_bugs=False, **kwargs)
            @given(st.data())
            def search(data: Any) -> None:
                outcome = one(HypothesisChooser(data))
                if not outcome.passed:
                    raise _Found(outcome)

            # distinct example-database keys per race and backend (same test function otherwise)
            search._hypothesis_internal_add_digest = f"{self.name}/{self.backend}".encode()  # type: ignore[attr-defined]
            if seed is not None:  # what @seed sets, minus the database it turns off: shards share failures
                search._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
            return search

        def exhausted() -> bool:  # "nothing left to do" after generating: the choice tree is exhausted
            return bool(stats) and stats[-1].get("stopped-because") == "nothing left to do" and \
                Phase.generate in (phases or [Phase.generate])

        try:
            with collector.with_value(stats.append):  # type: ignore[arg-type]
                make_search(stored)()
        except _Found as found:
            return found.outcome, False
        except unittest.SkipTest:  # the reuse phase alone, and nothing stored: nothing ran, not a skip
            return None, False
        except (HypothesisFlaky, FlakyStrategyDefinition) as exc:
            # a stored example from an earlier, different version of the scenario (or of the code under
            # test) no longer behaves as recorded: search again without the stale examples
            try:
                with collector.with_value(stats.append):  # type: ignore[arg-type]
                    make_search(None)()
            except _Found as found:
                return found.outcome, False
            except (HypothesisFlaky, FlakyStrategyDefinition):
                raise HarnessError(
                    f"race {self.name!r} on {self.backend}: the same decisions gave different schedules "
                    f"({_first_line(exc)}). {self._diagnose()}"
                ) from None
        return None, exhausted()



@dataclass
class _SearchRun:
    """One exploration's search state, handed to a strategy: ``one(chooser)`` runs and counts one
    schedule (raising _BudgetSpent at the budget); ``hypothesis(budget, phases)`` a Hypothesis search."""

    race: SearchMixin
    tally: _Tally
    budget: int
    profile: str
    database_dir: str | Path | None
    seed: int
    preemption_bound: int
    pct_depth: int
    stop_at_first: bool
    shard: Shard
    total: int  # the budget over all shards

    def one(self, chooser: Chooser) -> ScheduleOutcome:
        return self.tally.run(self.race, chooser)

    def hypothesis(self, budget: int, phases: list[Phase] | None = None) -> tuple[ScheduleOutcome | None, bool]:
        self.tally.phase = 0 if phases == [Phase.reuse] else 2
        seed = self.shard.hypothesis_seed(self.seed) if self.shard.count > 1 else None
        return self.race._explore_hypothesis(self.one, budget, self.profile, self.database_dir, phases=phases,
                                             seed=seed)

    def systematic(self, bound: int, limit: int) -> ScheduleOutcome | None:
        """The first failure among this shard's schedules with at most ``bound`` preemptions."""
        self.tally.phase = 1
        race, tally = self.race, self.tally
        return self.first(sharded_exhaustive(self.one, lambda c: tally.probe(race, c), bound, limit, self.shard,
                                             adopt=lambda c, o: tally.adopt(race, c, o, probed=True)))

    def first(self, outcomes: Iterable[ScheduleOutcome]) -> ScheduleOutcome | None:
        return SearchMixin._first_failure(outcomes, self.stop_at_first)


#: a strategy takes a search run and returns (the failure found, whether it ran out of schedules)
Strategy = Callable[[_SearchRun], "tuple[ScheduleOutcome | None, bool]"]


def auto_search(run: _SearchRun) -> tuple[ScheduleOutcome | None, bool]:
    """1. failures stored in the example database first; 2. every schedule with at most one preemption
    (most races need one: CHESS's observation), up to half the budget, in a fixed order; 3. Hypothesis
    generation with what is left."""
    failure, _ = run.hypothesis(run.budget, [Phase.reuse])
    if failure is None:
        failure = run.systematic(1, max(1, run.budget // 2))
    if failure is None and run.tally.count < run.budget:
        return run.hypothesis(run.budget - run.tally.count, [Phase.generate])
    return failure, False


def hypothesis_search(run: _SearchRun) -> tuple[ScheduleOutcome | None, bool]:
    """Hypothesis alone: stored failures, then generation."""
    return run.hypothesis(run.budget)


def exhaustive_search(run: _SearchRun) -> tuple[ScheduleOutcome | None, bool]:
    """Every schedule with at most ``preemption_bound`` preemptions (iterative context bounding); it
    ran out when the enumeration ended below the budget."""
    failure = run.systematic(run.preemption_bound, run.budget)
    return failure, failure is None and run.tally.count < run.budget


def _sampling(make: Callable[[_SearchRun, int], Chooser]) -> Strategy:
    def search(run: _SearchRun) -> tuple[ScheduleOutcome | None, bool]:
        run.tally.phase = 1  # shards take every N-th seed: together, the seeds one search would take
        return run.first(run.one(make(run, run.seed + i)) for i in range(run.total) if run.shard.owns(i)), False
    return search


#: the strategies by name (``explore(strategy=...)``, YAML ``explore: {strategy: ...}``)
STRATEGIES: dict[str, Strategy] = {
    "auto": auto_search,
    "hypothesis": hypothesis_search,
    "exhaustive": exhaustive_search,
    "pct": _sampling(lambda run, seed: PCTChooser(seed, depth=run.pct_depth, actors=list(run.race.actors),
                                                  expected_moves=max(10, 4 * len(run.race.actors) * 6))),
    "random": _sampling(lambda run, seed: RandomChooser(seed)),
}

def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
