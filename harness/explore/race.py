"""Races: actors (application code) + checks, explored over schedules on a real database.

    race = Race(database)                      # a harness Database (fixture, or server.create_database())
    race.setup("CREATE TABLE rules (...)")
    race.actor("A", lambda: save_rule(race.connect(), race.lock("redis", "k"), rule))
    race.actor("B", lambda: save_rule(race.connect(), race.lock("redis", "k"), rule))
    race.check_sql("one row", "SELECT count(*) FROM rules", equals=1)
    result = race.explore(max_schedules=100)     # Hypothesis; shrinks to the minimal schedule
    result.failure.schedule                      # e.g. ["A", "A", "A", "B", "B", "B", "A"]
    race.replay(result.failure.schedule)         # the same outcome, every time

Actors may take no argument or one (:class:`ActorContext`).  Connections, engines and locks handed out
by the race are instrumented: their calls are scheduling points, their waits are seen by the scheduler.
"""

from __future__ import annotations

import inspect
import itertools
import unittest
import warnings
import os
import time
from datetime import timedelta
from enum import Enum
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky as HypothesisFlaky
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.statistics import collector

from ..dialect import ConnInfo, execute
from ..errors import HarnessError
from ..provision import Database
from ..provision.base import AttachedLifecycle
from ..results import Outcome
from ..check import Violation, expected_text, rows_match
from ..trace import Event, StepResult, Trace
from .history import Op, classify, durability_violations
from .instrument import InstrumentedConnection, instrument, instrument_engine
from .scheduler import ActorResult, Chooser, Divergence, Scheduler, SchedulerOptions, ScheduleRun
from .strategies import (ContinueChooser, HypothesisChooser, IndexChooser, PCTChooser, RandomChooser,
                         ReplayChooser, SerialChooser, bounded_exhaustive, format_schedule)

#: Hypothesis settings per profile (HARNESS_PROFILE or explore(profile=...)); plain data, not a registry
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 100},
    "ci": {"max_examples": 200, "derandomize": True},
    "thorough": {"max_examples": 2000},
}


@dataclass
class ActorContext:
    """What an actor may use: instrumented connections/engines/locks, points, its name."""

    name: str
    race: "Race"

    def connect(self, **kwargs: Any) -> InstrumentedConnection:
        """A connection whose every execute/commit/rollback is a scheduling point (see :meth:`Race.connect`)."""
        return self.race.connect(**kwargs)

    def engine(self, **kwargs: Any) -> Any:
        """A SQLAlchemy engine on instrumented connections, for ORM code under test (:meth:`Race.engine`)."""
        return self.race.engine(**kwargs)

    def lock(self, kind: str, key: str, **kwargs: Any) -> Any:
        """A Redis / GET_LOCK / advisory lock whose waits the scheduler sees (:meth:`Race.lock`)."""
        return self.race.lock(kind, key, **kwargs)

    def point(self, label: str) -> None:
        """A scheduling point of the actor's own, where the explorer may switch to another actor."""
        self.race.point(label)

    @contextmanager
    def op(self, name: str, value: Any) -> Iterator[Op]:
        """Mark an operation (``with ctx.op("add", 3): ...``): its outcome -- ok, fail, or unknown
        when the connection was lost while it might have committed -- goes into the history that
        :meth:`Race.check_durable` and ``check(fn(conn, results))`` read (``results[name].ops``)."""
        op = Op(self.name, name, value)
        try:
            yield op
        except BaseException as exc:
            op.status, op.error = classify(exc), f"{type(exc).__name__}: {exc}".strip()
            raise
        else:
            op.status = classify(None)
        finally:
            if self.race._scheduler is not None:
                self.race._scheduler.record_op(op)


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
        from ..report.text import trace_lines

        lines = [f"schedule: {self.schedule_text}"] + [f"  - {v}" for v in self.violations]
        return "\n".join(lines + trace_lines(self.trace))


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
                       schedules_run=self.schedules_run, seed=self.seed)


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

    def run(self, race: "Race", chooser: Chooser) -> ScheduleOutcome:
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
        self.count += 1
        if isinstance(chooser, HypothesisChooser):
            race._remember(tuple(chooser.taken), outcome)
        if self.progress is not None:
            self.progress(self.count, self.budget)
        if not outcome.passed:
            self.first = self.count
        return outcome


class Race:
    """Actors, setup and checks for one database; explore or replay their schedules."""

    def __init__(self, database: Database, *, name: str = "race", redis: Any = None,
                 hang_timeout: float = 10.0, allowed_errors: Iterable[str | type] = (),
                 replay_hint: Callable[[str], str] | None = None, forced_schedule: str | None = None,
                 save_dir: str | Path | None = None) -> None:
        """``redis``: a ConnInfo (or a callable giving one) for redis locks; ``replay_hint(schedule)``
        says how to replay a failure (the pytest fixture gives the pytest command); ``forced_schedule``
        makes the assert_* helpers replay that schedule instead of exploring."""
        self.database, self.name = database, name
        self.replay_hint = replay_hint or (lambda sched: f"race.replay({sched!r})")
        self.forced_schedule = forced_schedule
        self.save_dir = Path(save_dir) if save_dir else None
        self.backend = database.backend
        self.dialect = database.dialect
        self._redis = redis  # ConnInfo of a Redis server (or a callable giving one), for redis locks
        self.options = SchedulerOptions(hang_timeout=hang_timeout)
        self.actors: dict[str, Callable[..., Any]] = {}
        self._setup: list[str | Callable[[Any], None]] = []
        self._teardown: list[str | Callable[[Any], None]] = []
        self._checks: list[tuple[str, Callable[[Any, dict[str, ActorResult]], Violation | None]]] = []
        self.faults: dict[str, Callable[..., Any]] = {}  # optional moves: the schedule places them, or not
        self.allowed_errors = list(allowed_errors)
        self._scheduler: Scheduler | None = None
        self._opened: list[Any] = []
        self._serial_outcomes: set[Any] | None = None
        self._observe_sql: str | None = None
        self._monitor: Any = None
        self._fault_admin: Any = None  # the connection kill_session faults terminate sessions from
        # network faults: a loopback proxy per faulty link ("db:<actor>", "redis"), made when a fault
        # on it is declared and reset after every schedule
        self._links: dict[str, Any] = {}
        self._clock_in_setup = False  # a skew_clock fault installs the PostgreSQL clock schema in setup
        self._outlasting: set[str] = set()  # actors whose partitions outlast Redis leases
        self._redis_keys: set[str] = set()  # deleted after every schedule: state must not leak
        self.redis_namespace = False
        # scenario sessions: the steps each runs when a listed order is replayed (None: all of them)
        self.step_plan: dict[str, list[str]] | None = None  # scenario lock steps use harness:<database>:* keys: reset them all
        # PostgreSQL connections are kept between schedules (a connect forks a backend: ~3 ms, four
        # per schedule were a third of its time); a DISCARD-style reset gives each a clean session
        self._idle: dict[bool, list[Any]] = {True: [], False: []}
        self._lent: list[tuple[bool, Any]] = []
        # scenario files: step results judged against their expectations, and checks evaluated on the
        # server's text by the same evaluator as listed interleavings (harness.check)
        self.step_checker: Callable[[Trace], list[Violation]] | None = None
        self.trace_checker: Callable[[Trace, Any], list[Violation]] | None = None
        self._text: Any = None  # a session returning the server's text, for scenario checks
        self._prepared = False  # the database is set up for the harness's deadlock handling
        self._seen: dict[tuple[int, ...], ScheduleOutcome] = {}  # decisions -> a run of them (diagnosis)
        self._facts: list[str] = []  # runs of the same decisions that differed

    def close(self) -> None:
        """Close the race's own control connection (actors' connections close after each schedule)."""
        self._close_opened()
        self._forget_connections()
        for link in self._links.values():
            link.close()
        self._links.clear()

    def __enter__(self) -> "Race":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- declaring -----------------------------------------------------------------------------------
    def actor(self, name: str, fn: Callable[..., Any] | None = None) -> Any:
        """Register an actor (usable as a decorator). ``fn()`` or ``fn(ctx)``."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.actors:
                raise HarnessError(f"actor {name!r} is registered twice in race {self.name!r}.")
            self.actors[name] = f
            return f
        return register(fn) if fn is not None else register

    def fault(self, name: str, fn: Callable[..., Any]) -> None:
        """An optional move the explorer may place anywhere, or never: shrinking drops unneeded faults."""
        if name in self.actors or name in self.faults:
            raise HarnessError(f"{name!r} is already an actor or fault of race {self.name!r}.")
        self.faults[name] = fn

    def inject_error(self, victim: str, code: str, message: str = "injected by the harness") -> Callable[[], None]:
        """A fault: ``victim``'s next statement fails with this SQLSTATE / error number."""
        return lambda: self._arm(victim, "error", self.dialect.make_error(code, message))

    def lose_commit_ack(self, victim: str) -> Callable[[], None]:
        """A fault: ``victim``'s next COMMIT is durable, but its connection drops before the answer."""
        return lambda: self._arm(victim, "lost_ack", self.dialect.connection_lost())

    def kill_session(self, victim: str) -> Callable[[], None]:
        """A fault: the server ends ``victim``'s sessions now (pg_terminate_backend / KILL CONNECTION)."""
        def kill() -> None:
            sched = self._scheduler
            if sched is None:
                return
            if self._fault_admin is None:  # kept between schedules; not the conductor's (it polls waits)
                self._fault_admin = self.dialect.connect(self.database.info, autocommit=True)
            for sid in sched.sessions_of(victim):
                self.dialect.terminate(self._fault_admin, sid)
            for sid in sched.sessions_of(victim):
                # go on once the server ended it (transaction rolled back, locks released): the next
                # move then sees a settled server, and the schedule replays exactly
                if not self.dialect.wait_session_gone(self._fault_admin, sid, self.options.hang_timeout):
                    raise HarnessError(f"{victim}'s server session {sid} was still there "
                                       f"{self.options.hang_timeout:g}s after it was killed.")
            sched.fault("kill session", {"victim": victim})
        return kill

    def skew_clock(self, victim: str, ms: float, clock: Any = None) -> Callable[[], None]:
        """A fault: ``victim``'s clock jumps by ``ms`` (negative: back) from here on.

        With a :class:`harness.clock.FakeClock` (the application's clock), its reading for ``victim``
        is skewed at once.  Without, the database clock of ``victim``'s session is, at its next
        statement: PostgreSQL shadows now()/clock_timestamp()/... and adds the offset to the running
        clock; MariaDB/MySQL can only freeze a session clock, so it freezes at its reading + ``ms``.
        """
        if clock is not None:
            def skew_app() -> None:
                clock.skew(victim, ms)
                if self._scheduler is not None:
                    self._scheduler.fault("clock skew", {"victim": victim, "ms": ms, "clock": "application"})
            return skew_app
        from ..clock import DbClock

        db_clock = DbClock(self.backend)
        if db_clock.pg and not self._clock_in_setup:  # the schema is DDL: installed before any transaction
            self._setup.insert(0, db_clock.install)
            self._clock_in_setup = True

        def skew_session(conn: Any) -> None:
            if db_clock.pg or execute(conn, "SELECT @harness_clock_frozen")[0][0] is not None:
                db_clock.advance(conn, ms)
            else:
                db_clock.freeze(conn, db_clock.now(conn) + timedelta(milliseconds=ms))

        def skew_db() -> None:
            if self._scheduler is not None:
                self._scheduler.arm(victim, "before", skew_session, f"clock skew {ms:+g} ms")
        return skew_db

    # network faults (each actor's database link, the Redis lock service) ---------------------------
    def partition(self, victim: str, *, outlast_leases: bool = False) -> Callable[[], None]:
        """A fault: ``victim``'s database link holds all traffic from now on (nothing is lost).

        Its next call waits on the network, which the scheduler sees as blocked (wait-for graph:
        ``network partition``); other actors go on -- and wait for its locks.  The link heals when
        no other actor can move (or at the end of the schedule): the partition lasts as long as the
        schedule keeps others busy.  ``outlast_leases``: it also lasts until actors waiting for a
        Redis lock got it (real time passes until the victim's lease lapses) -- the partitioned
        holder that still believes it holds the lock.
        """
        link = self._db_link(victim)
        if outlast_leases:
            self._outlasting.add(victim)
        return lambda: self._net_fault(link.partition, "partition", victim)

    def cut(self, victim: str) -> Callable[[], None]:
        """A fault: ``victim``'s database connections are reset from the client's side (TCP RST); its
        next call fails with the driver's connection error, the server rolls back what was open."""
        link = self._db_link(victim)
        return lambda: self._net_fault(link.cut, "cut link", victim)

    def delay(self, victim: str, ms: float) -> Callable[[], None]:
        """A fault: every packet on ``victim``'s database link is held ``ms`` from now on (real time
        passes: leases expire, timeouts fire)."""
        link = self._db_link(victim)
        return lambda: self._net_fault(lambda: link.delay(ms), f"delay {ms:g} ms", victim)

    def redis_outage(self) -> Callable[[], None]:
        """A fault: the Redis lock service becomes unreachable (connections reset, new ones refused)
        for the rest of the schedule: does the code under test fail open or closed?"""
        if self._redis is None:
            raise HarnessError("redis_outage needs a Redis server: Race(..., redis=server.info).")
        link = self._link("redis", lambda: self.redis_info)
        return lambda: self._net_fault(link.down, "redis outage", None)

    def _db_link(self, victim: str) -> Any:
        return self._link(f"db:{victim}", lambda: self.database.info)

    def _link(self, name: str, upstream: Callable[[], ConnInfo]) -> Any:
        from ..netproxy import LinkProxy

        if name not in self._links:
            info = upstream()
            self._links[name] = LinkProxy(info.host, info.port, name=name).start()
        return self._links[name]

    def _net_fault(self, act: Callable[[], None], what: str, victim: str | None) -> None:
        act()
        if self._scheduler is not None:
            self._scheduler.fault(what, {"victim": victim} if victim else {})

    def _via_link(self, name: str, info: ConnInfo) -> ConnInfo:
        link = self._links.get(name)
        return info if link is None else replace(info, host=link.host, port=link.port)

    def _stalled_links(self) -> dict[str, Any]:
        """Actor -> its database link, for links whose partition holds someone's traffic."""
        return {name.removeprefix("db:"): link for name, link in self._links.items()
                if name.startswith("db:") and link.stalled}

    def _network_stalls(self) -> dict[str, str]:
        """Actors waiting on the network (a partition holds their traffic): wait-for graph entries."""
        return {actor: "network partition" for actor in self._stalled_links()}

    def _heal_stalled(self, lock_waiters: bool) -> bool:
        """No actor can move: end the partitions someone waits on (recorded); False if none -- or, while
        actors wait for a lock, none that should outlast leases."""
        stalled = {actor: link for actor, link in self._stalled_links().items()
                   if not (lock_waiters and actor in self._outlasting)}
        for actor, link in stalled.items():
            link.heal()
            if self._scheduler is not None:
                self._scheduler.fault("heal", {"victim": actor})
        return bool(stalled)

    def crash_server(self) -> Callable[[], None]:
        """A fault: SIGKILL the database server and restart it on the same data (crash recovery).

        Every session is gone: calls in flight fail with the driver's connection error (a COMMIT in
        flight has an unknown outcome), actors reconnect with ``ctx.connect()``.  Needs a server this
        process started (``server_factory`` in pytest); start it with fsync on to check durability
        against machine crashes too.
        """
        if isinstance(self.database.server.lifecycle, AttachedLifecycle):
            raise HarnessError(
                f"race {self.name!r}: a server crash needs a server this process started and may kill "
                f"(this one is {self.database.server.lifecycle.description}); in pytest use "
                "server_factory(backend, fsync=True) and Race(server.create_database())."
            )
        return self._crash

    def _crash(self) -> None:
        sched, server = self._scheduler, self.database.server
        with sched.server_down() if sched is not None else nullcontext():
            server.kill()
            killed = time.perf_counter()
            server.restart()
            restarted = time.perf_counter()
            self._forget_connections()
            if sched is not None:
                sched.monitor = self._control()
        if sched is not None:
            sched.fault("server crash", {"restart_ms": round((restarted - killed) * 1000, 1)})

    def _forget_connections(self) -> None:
        """After a crash: every kept connection is dead (lent ones are dropped when returned)."""
        for raw in [*self._idle[True], *self._idle[False], self._monitor, self._fault_admin, self._text]:
            try:
                if raw is not None:
                    raw.close()
            except Exception:
                pass
        self._idle, self._monitor, self._fault_admin, self._text = {True: [], False: []}, None, None, None

    def _arm(self, victim: str, kind: str, error: BaseException) -> None:
        if self._scheduler is not None:
            self._scheduler.arm(victim, kind, error)

    def setup(self, sql_or_fn: str | Callable[[Any], None]) -> None:
        """Run before every schedule (SQL on an autocommit connection, or fn(conn))."""
        self._setup.append(sql_or_fn)

    def teardown(self, sql_or_fn: str | Callable[[Any], None]) -> None:
        """Run after every schedule, after the checks, so the next schedule starts from the same state."""
        self._teardown.append(sql_or_fn)

    def check(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """A Python predicate run after each schedule: ``fn(conn)`` or ``fn(conn, results)``; it fails
        by returning False or raising AssertionError (its message is the violation)."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            label = name or f.__name__
            takes_results = len(inspect.signature(f).parameters) >= 2

            def run(conn: Any, results: dict[str, ActorResult]) -> Violation | None:
                try:
                    ok = f(conn, results) if takes_results else f(conn)
                except AssertionError as exc:
                    message = f"check {label} failed: {exc}" if str(exc) else f"check {label} failed"
                    return Violation("check", label, message, "holds", str(exc) or "failed")
                return None if ok is None or ok else Violation("check", label, f"check {label} failed", "holds",
                                                               "failed")
            self._checks.append((label, run))
            return f
        return register(fn) if fn is not None else register

    def check_sql(self, name: str, sql: str, *, empty: bool | None = None, equals: Any = None) -> None:
        """An SQL invariant: the query returns no rows (``empty=True``) or one value (``equals=``)."""
        kind = "equals" if equals is not None else ("nonempty" if empty is False else "empty")

        def run(conn: Any, results: dict[str, ActorResult]) -> Violation | None:
            holds, actual = rows_match(kind, equals, execute(conn, sql))
            if holds:
                return None
            expected = expected_text(kind, equals)
            return Violation("check", name, f"check {name} violated: expected {expected}, got {actual}",
                             expected, actual)
        self._checks.append((name, run))

    def check_durable(self, name: str, sql: str, *, op: str | None = None, rows_per_op: int = 1) -> None:
        """Durability and atomicity against the actors' operation history (``ctx.op``).

        ``sql`` returns one row per written row, its first column the value of the operation that
        wrote it.  Every acknowledged operation (named ``op``, or any) must have all ``rows_per_op``
        rows, a failed one none, one with an unknown outcome (connection lost while committing) all
        or none; rows no operation wrote are violations too.
        """
        def run(conn: Any, results: dict[str, ActorResult]) -> Violation | None:
            ops = [o for r in results.values() for o in r.ops if op is None or o.name == op]
            problems = durability_violations(ops, execute(conn, sql), rows_per_op=rows_per_op)
            if not problems:
                return None
            return Violation("check", name, f"check {name} violated: " + "; ".join(problems), "durable",
                             "; ".join(problems))
        self._checks.append((name, run))

    def serializable(self, observe_sql: str) -> None:
        """Serializability oracle: every schedule must end in a state some serial order reaches.

        The serial orders are run first to learn the allowed values of ``observe_sql``.
        """
        self._observe_sql = observe_sql
        self._serial_outcomes = None

    @property
    def redis_info(self) -> Any:
        """Where the race's Redis server is (a ConnInfo), asked for on first use so no test starts it needlessly."""
        return self._redis() if callable(self._redis) else self._redis

    # -- assertions for tests ------------------------------------------------------------------------
    def assert_no_race(self, max_schedules: int | None = None, **explore_kwargs: Any) -> ExploreResult:
        """Explore; fail with the minimal schedule, its trace and the replay command if any fails."""
        if self.forced_schedule:
            outcome = self.replay(self.forced_schedule)
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
        if self.forced_schedule:
            outcome = self.replay(self.forced_schedule)
            if outcome.passed:
                raise AssertionError(f"the replayed schedule {self.forced_schedule!r} passes")
            return ExploreResult("replay", 1, outcome.duration, outcome, 1, budget=1,
                                 stop_reason=StopReason.FAILURE, replayed=True)
        result = self.explore(max_schedules=max_schedules, **explore_kwargs)
        if result.failure is None:
            raise AssertionError(f"expected a race, but {result.schedules_run} schedules of race "
                                 f"{self.name!r} ({result.strategy}) all passed")
        return result

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

    # -- handles for actors --------------------------------------------------------------------------
    def _sched(self) -> Scheduler | None:
        return self._scheduler

    def connect(self, **kwargs: Any) -> InstrumentedConnection:
        """A new instrumented connection with the driver's defaults (autocommit off)."""
        autocommit = bool(kwargs.pop("autocommit", False))
        quiet = bool(kwargs.pop("quiet", False))
        actor = self._scheduler.current() if self._scheduler else None
        if actor is not None and f"db:{actor.name}" in self._links:  # network faults: through its proxy
            info = self._via_link(f"db:{actor.name}", self.database.info)
            # a call (no decision) so that a connect held by a partition is seen as waiting; its
            # session id is not known yet (0)
            raw = self._scheduler.call("connect", 0, lambda: self.dialect.connect(  # type: ignore[union-attr]
                info, autocommit=autocommit, **kwargs), point=False)
            self._opened.append(raw)
        elif self.backend == "postgres" and not kwargs and self._idle[autocommit]:
            raw = self._idle[autocommit].pop()
            self._lent.append((autocommit, raw))
        elif self.backend == "postgres" and not kwargs:
            raw = self.dialect.connect(self.database.info, autocommit=autocommit)
            self._lent.append((autocommit, raw))
        else:
            raw = self.dialect.connect(self.database.info, autocommit=autocommit, **kwargs)
            self._opened.append(raw)
        return instrument(raw, self._sched, quiet=quiet)

    def _return_lent(self) -> None:
        """Reset lent PostgreSQL connections and keep them for the next schedule."""
        for autocommit, raw in self._lent:
            try:
                if raw.closed or raw.broken:
                    continue
                raw.rollback()
                raw.autocommit = True
                # DISCARD ALL minus DEALLOCATE ALL: psycopg auto-prepares repeated queries and would
                # then use prepared statements the server forgot
                raw.execute("CLOSE ALL; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); "
                            "DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES")
                raw.autocommit = autocommit
                self._idle[autocommit].append(raw)
            except Exception:
                try:
                    raw.close()
                except Exception:
                    pass
        self._lent.clear()

    def engine(self, **kwargs: Any) -> Any:
        """An instrumented SQLAlchemy engine for this database (psycopg 3 / PyMySQL)."""
        info = self.database.info
        scheme = "postgresql+psycopg" if self.backend == "postgres" else "mysql+pymysql"
        from sqlalchemy.engine import URL

        url = URL.create(scheme, username=info.user or None, password=info.password or None, host=info.host,
                         port=info.port, database=info.dbname)
        engine = instrument_engine(url, self._sched, **kwargs)
        self._opened.append(engine)
        return engine

    def lock(self, kind: str, key: str, *, ttl_ms: int = 30_000, conn: Any = None, xact: bool = False) -> Any:
        """A lock client whose waits the scheduler sees: ``redis``, ``get_lock`` or ``advisory``."""
        from .. import locks

        observer = _SchedulerObserver(self)
        actor = self._scheduler.current() if self._scheduler else None
        owner = actor.name if actor else "harness"
        if kind == "redis":
            if self.redis_info is None:
                raise HarnessError("race.lock('redis', ...) needs a Redis server: Race(..., redis=server.info).")
            client = self._redis_client(actor_side=True)
            self._opened.append(client)
            key = self.redis_key(key)
            self._redis_keys.add(key)
            return locks.RedisLock(client, key, ttl_ms=ttl_ms, token=locks.new_token(owner), observer=observer)
        # the lock's own statements (savepoints, lock_timeout) are watched, not decisions: the
        # observer's point before acquire/release is the one decision a lock operation needs
        connection = conn if conn is not None else self.connect(autocommit=True, quiet=True)
        if kind == "get_lock":
            return locks.MySQLUserLock(connection, locks.user_lock_name(self.database.name, key), observer=observer)
        if kind == "advisory":
            return locks.PgAdvisoryLock(connection, key, xact=xact, observer=observer)
        raise HarnessError(f"unknown lock kind {kind!r}; use redis, get_lock or advisory.")

    def call(self, label: str, conn: Any, fn: Callable[[], Any], *, statement: bool = True,
             step: str | None = None, sql: str | None = None,
             on_error: Callable[[BaseException], Any] | None = None) -> Any:
        """Run ``fn`` (a call on the raw connection ``conn``) as a scheduling point whose waits in the
        server are watched; for actors that drive a connection themselves (scenario sessions).  At a
        ``statement`` a fault armed for the actor fires as on an instrumented connection; ``conn`` is
        autocommit, so a lost commit acknowledgement applies to any statement (and closes ``conn``)."""
        sched = self._scheduler
        if sched is None:
            return fn()
        try:
            sid: int | None = self.dialect.session_id(conn)
        except Exception:  # a connection already lost: nothing to watch in the server
            sid = None
        if sid is not None:
            sched.register_session(sid)
        return sched.db_call(label, sid, fn, conn=conn, commits=statement, faults=statement, step=step, sql=sql,
                             on_error=on_error)

    def step_lock_observer(self) -> Any:
        """The lock observer for a scenario step's lock action: its waits are the scheduler's facts
        (a Redis wait is invisible to the database), its step was the decision already."""
        return _SchedulerObserver(self, points=False)

    def track(self, handle: Any) -> Any:
        """Close this handle (connection, client) after the current schedule."""
        self._opened.append(handle)
        return handle

    def redis_key(self, key: str) -> str:
        """Redis keys are namespaced per race database: parallel runs share one Redis server."""
        return f"harness:{self.database.name}:{key}"

    def point(self, label: str) -> None:
        """A user-defined scheduling point (``harness.point`` inside actor code)."""
        if self._scheduler is not None:
            self._scheduler.point(label)

    def expire_lease(self, key: str) -> None:
        """Fault: the current holder's Redis lease on ``key`` vanishes now (recorded in the trace)."""
        from .. import locks

        client = self._redis_client()
        try:
            expiry = locks.expire_lease(client, self.redis_key(key))
        finally:
            client.close()
        if self._scheduler is not None:
            self._scheduler.fault("lease expiry", {"key": key, "holder": expiry.holder})

    # -- one schedule --------------------------------------------------------------------------------
    def _control(self) -> Any:
        if self._monitor is None or getattr(self._monitor, "closed", False) or getattr(self._monitor, "open", True) is False:
            self._monitor = self.dialect.connect(self.database.info, autocommit=True)
            if not self._prepared:  # before any actor session exists: they all inherit it
                self._prepared = True
                problem = self.dialect.prepare_race_database(self._monitor, self.database.name,
                                                             self.options.hang_timeout)
                if problem:
                    warnings.warn(f"race {self.name!r} on {self.backend}: {problem}", stacklevel=3)
        return self._monitor

    def text_session(self) -> Any:
        """A connection that returns values as the server's text, as listed interleavings see them
        (scenario checks are evaluated on it, by the same evaluator)."""
        if self._text is None or getattr(self._text, "closed", False) or getattr(self._text, "open", True) is False:
            self._text = self.dialect.open_session(self.database.info)
        return self._text

    def _run_hooks(self, hooks: list[str | Callable[[Any], None]], conn: Any) -> None:
        for hook in hooks:
            if callable(hook):
                hook(conn)
            else:
                execute(conn, hook)

    def run_schedule(self, chooser: Chooser) -> ScheduleOutcome:
        """Set up, run the actors under ``chooser``, check, tear down."""
        if not self.actors:
            raise HarnessError(f"race {self.name!r} has no actors; add some with race.actor(name, fn).")
        start = time.perf_counter()
        if self._observe_sql is not None:
            self._serial_states()  # learn the allowed final states first, on a clean database
        control = self._control()
        self._run_hooks(self._setup, control)
        try:
            actors = {name: self._bind(name, fn) for name, fn in {**self.actors, **self.faults}.items()}
            sched = Scheduler(actors, chooser, dialect=self.dialect, monitor=control, scenario=self.name,
                              backend=self.backend, server=f"{self.database.server.flavor} "
                              f"{self.database.server.version}", options=self.options,
                              optional=frozenset(self.faults))
            if self._links:
                sched.network_stalls, sched.on_stuck = self._network_stalls, self._heal_stalled
            self._scheduler = sched
            try:
                run = sched.run()
            finally:
                self._scheduler = None
                self._close_opened()
                for link in self._links.values():
                    link.reset()  # healed, up, no delay, no connection left
            control = self._control()  # a new one if a crash fault restarted the server
            violations = self._evaluate(run, control)
        finally:  # also when Hypothesis stops a test case mid-draw, or a replay diverges
            try:
                self._run_hooks(self._teardown, self._control())
            except Exception as exc:
                raise HarnessError(
                    f"the teardown of race {self.name!r} failed ({type(exc).__name__}: {exc}); it must bring "
                    "the database back to what setup expects after any schedule, including one where a fault "
                    "lost data (write DROP TABLE IF EXISTS ...)."
                ) from None
            self._reset_redis()
        return ScheduleOutcome(run.schedule, run.labels, run.results, violations, run.trace, run.preemptions,
                               time.perf_counter() - start, run.options)

    def _redis_client(self, *, actor_side: bool = False) -> Any:
        """A Redis client: the harness's own goes straight to the server; an actor's goes through the
        Redis link when an outage is declared, and never retries (redis-py's default back-off would
        hide an outage for seconds)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        info = self._via_link("redis", self.redis_info) if actor_side else self.redis_info
        return redis.Redis(host=info.host, port=info.port, password=info.password or None,
                           retry=Retry(NoBackoff(), 0), socket_timeout=30)

    def _reset_redis(self) -> None:
        """Delete what the schedule left in Redis: the keys race locks used and, when scenario steps
        take Redis locks (keys ``harness:<database>:*``), the whole namespace."""
        if not self._redis_keys and not self.redis_namespace:
            return
        client = self._redis_client()
        try:
            keys = set(self._redis_keys)
            if self.redis_namespace:
                keys.update(client.scan_iter(match=self.redis_key("*"), count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def _bind(self, name: str, fn: Callable[..., Any]) -> Callable[[], Any]:
        try:
            wants_ctx = len(inspect.signature(fn).parameters) >= 1
        except (TypeError, ValueError):
            wants_ctx = False
        ctx = ActorContext(name, self)
        return (lambda: fn(ctx)) if wants_ctx else fn

    def _close_opened(self) -> None:
        self._return_lent()
        for handle in self._opened:
            try:
                (handle.dispose if hasattr(handle, "dispose") else handle.close)()
            except Exception:
                pass
        self._opened.clear()

    def _allowed(self, error: BaseException) -> bool:
        code = ActorResult("", error=error).error_info
        for allowed in self.allowed_errors:
            if isinstance(allowed, type) and isinstance(error, allowed):
                return True
            if isinstance(allowed, str) and code is not None and code.matches(allowed):
                return True
        return False

    def _evaluate(self, run: ScheduleRun, conn: Any) -> list[Violation]:
        violations: list[Violation] = []
        if run.hung:
            hang = next(e for e in run.trace.events if e.kind == "hang")
            graph = ", ".join(f"{w.waiter} waits for {w.holder or '?'} ({w.lock})" for w in hang.waits)
            violations.append(Violation("hang", None, f"hang: {hang.detail.get('reason')}; wait-for graph: "
                                        f"{graph or 'none seen'}"))
        for name, result in run.results.items():
            if result.error is not None and not run.hung and not self._allowed(result.error):
                info = result.error_info
                what = info.message if info else str(result.error)
                violations.append(Violation("actor", name, f"actor {name} raised {what}", "no error",
                                            f"{info.code}: {what}" if info and info.code else what))
        if not run.hung:
            violations += self.step_checker(run.trace) if self.step_checker is not None else []
            for label, check in self._checks:
                try:
                    problem = check(conn, run.results)
                except Exception as exc:  # e.g. a crash lost the table the check reads: a finding
                    problem = Violation("check", label, f"check {label} could not run: {type(exc).__name__}: "
                                        f"{exc}".strip(), "holds", f"{type(exc).__name__}: {exc}")
                run.trace.events.append(Event(run.trace.events[-1].t if run.trace.events else 0.0, "check",
                                              None, label, None, result=StepResult(),
                                              detail={"ok": problem is None,
                                                      "expected": problem.expected if problem else "holds",
                                                      "actual": problem.actual if problem else "holds"}))
                if problem:
                    violations.append(problem)
            if self.trace_checker is not None:
                violations += self.trace_checker(run.trace, conn)
            if self._observe_sql is not None:
                state = tuple(tuple(r) for r in execute(conn, self._observe_sql))
                allowed = self._serial_states()
                if state not in allowed:
                    violations.append(Violation(
                        "serializability", None, f"not serializable: final state {state} is reached by no serial "
                        f"order (serial orders give {sorted(allowed)})", f"one of {sorted(allowed)}", str(state)))
        return violations

    def _serial_states(self) -> set[Any]:
        if self._serial_outcomes is None:
            observe, self._observe_sql = self._observe_sql, None  # serial runs only record, not judge
            states: set[Any] = set()
            try:
                for order in itertools.permutations(self.actors):
                    control = self._control()
                    self._run_hooks(self._setup, control)
                    sched = Scheduler({n: self._bind(n, f) for n, f in self.actors.items()}, SerialChooser(order),
                                      dialect=self.dialect, monitor=control, options=self.options)
                    self._scheduler = sched
                    try:
                        sched.run()
                    finally:
                        self._scheduler = None
                        self._close_opened()
                    states.add(tuple(tuple(r) for r in execute(control, observe)))  # type: ignore[arg-type]
                    self._run_hooks(self._teardown, control)
            finally:
                self._observe_sql = observe
            self._serial_outcomes = states
        return self._serial_outcomes

    # -- exploring -----------------------------------------------------------------------------------
    def replay(self, schedule: str | Sequence[str]) -> ScheduleOutcome:
        """Run exactly this schedule (``"A A B"`` or a list); raises Divergence if it cannot be followed."""
        moves = schedule.replace(",", " ").split() if isinstance(schedule, str) else list(schedule)
        unknown = sorted(set(moves) - set(self.actors) - set(self.faults))
        if unknown:
            raise HarnessError(f"the schedule names actors {unknown} that race {self.name!r} does not have "
                               f"(actors: {', '.join(self.actors)}).")
        return self.run_schedule(ReplayChooser(moves))

    def explore(self, *, strategy: str = "auto", max_schedules: int | None = None,
                profile: str | None = None, seed: int | None = None, preemption_bound: int = 2,
                pct_depth: int = 2, database_dir: str | Path | None = None,
                stop_at_first: bool = True, minimize: bool = True,
                progress: Callable[[int, int], None] | None = None) -> ExploreResult:
        """Search schedules for a failing one; the reported failure is minimal (shrunk) and replayable.

        At most ``max_schedules`` schedules are run by the search; runs that confirm and minimize a
        failure, and Hypothesis test cases abandoned mid-schedule, are counted apart; why the search
        stopped is ``stop_reason``."""
        profile = profile or os.environ.get("HARNESS_PROFILE", "dev")
        if profile not in PROFILES:
            raise HarnessError(f"unknown exploration profile {profile!r}; use one of {', '.join(PROFILES)}.")
        if strategy not in ("auto", "hypothesis", "exhaustive", "pct", "random"):
            raise HarnessError(f"unknown strategy {strategy!r}; use auto, hypothesis, exhaustive, pct or random.")
        budget = max_schedules or PROFILES[profile]["max_examples"]
        seed = seed if seed is not None else 0
        start = time.perf_counter()
        tally = _Tally(budget, progress=progress)
        failure: ScheduleOutcome | None = None
        exhausted = False

        def one(chooser: Chooser) -> ScheduleOutcome:
            return tally.run(self, chooser)

        # one unrecorded run first: lazy initialisation in the code under test (an ORM's first connect
        # queries its dialect) must not make the first schedule take other decisions than its replays
        self.run_schedule(ContinueChooser())
        try:
            if strategy == "auto":
                # 1. failures stored in the example database first; 2. every schedule with at most one
                # preemption (most races need one: CHESS's observation), up to half the budget, in a
                # fixed order; 3. Hypothesis generation with what is left
                failure, _ = self._explore_hypothesis(one, budget, profile, database_dir, phases=[Phase.reuse])
                if failure is None:
                    failure = self._first_failure(bounded_exhaustive(one, 1, max(1, budget // 2)))
                if failure is None and tally.count < budget:
                    failure, exhausted = self._explore_hypothesis(one, budget - tally.count, profile,
                                                                  database_dir, phases=[Phase.generate])
            elif strategy == "hypothesis":
                failure, exhausted = self._explore_hypothesis(one, budget, profile, database_dir)
            elif strategy in ("random", "pct"):
                for i in range(budget):
                    chooser: Chooser = RandomChooser(seed + i) if strategy == "random" else PCTChooser(
                        seed + i, depth=pct_depth, expected_moves=max(10, 4 * len(self.actors) * 6),
                        actors=list(self.actors))
                    outcome = one(chooser)
                    if not outcome.passed:
                        failure = outcome
                        if stop_at_first:
                            break
            else:
                search = bounded_exhaustive(one, preemption_bound, budget)
                failure = self._first_failure(search, stop_at_first)
                # the enumeration ended below the budget: every schedule within the bound was tried
                exhausted = failure is None and tally.count < budget
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
        return ExploreResult(strategy, tally.count, time.perf_counter() - start, failure, tally.first, seed,
                             verified, reason, budget, tally.shrink_runs, tally.aborted)

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
                            database_dir: str | Path | None, phases: list[Phase] | None = None
                            ) -> tuple[ScheduleOutcome | None, bool]:
        """Hypothesis generation (no shrinking: :meth:`minimize` does that, deterministically);
        returns the failure found and whether Hypothesis ran out of distinct schedules."""
        kwargs = {**PROFILES[profile], "max_examples": budget}
        db_dir = Path(database_dir or os.environ.get("HARNESS_EXAMPLES_DIR", ".hypothesis/harness"))
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
            return search

        def exhausted() -> bool:  # "nothing left to do" after generating: the choice tree is exhausted
            return bool(stats) and stats[-1].get("stopped-because") == "nothing left to do" and \
                Phase.generate in (phases or [Phase.generate])

        try:
            with collector.with_value(stats.append):  # type: ignore[arg-type]
                make_search(DirectoryBasedExampleDatabase(str(db_dir)))()
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


class _SchedulerObserver:
    """harness.locks.LockObserver backed by the race's scheduler: lock waits are scheduling facts.
    ``points=False`` for a lock taken inside a call that was already a decision (a YAML lock step)."""

    def __init__(self, race: Race, points: bool = True) -> None:
        self.race, self.points = race, points

    def _sched(self) -> Scheduler | None:
        return self.race._scheduler

    def point(self, label: str) -> None:
        s = self._sched()
        if s is not None and self.points:
            s.point(label)

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        s = self._sched()
        if s is not None:
            s.lock_blocked(lock, key, holder)

    def retry_wait(self) -> None:
        s = self._sched()
        if s is not None and s.current() is not None:
            s.lock_retry_wait()
        else:
            time.sleep(0.001)  # outside a schedule: a plain bounded back-off step

    def unblocked(self) -> None:
        s = self._sched()
        if s is not None:
            s.lock_unblocked()


__all__ = ["ActorContext", "Divergence", "ExploreResult", "PROFILES", "Race", "ScheduleOutcome", "ContinueChooser"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
