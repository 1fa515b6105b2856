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
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..check import Violation, expected_text, rows_match
from ..dialect import execute
from ..errors import AsyncActorError, HarnessError
from ..provision import Database
from ..trace import Event, StepResult, Trace
from .actors import ActorResult, Chooser, ScheduleRun, SchedulerOptions
from .apps import AppsMixin
from .capture import DriverCapture
from .context import ActorContext
from .faults import FaultsMixin
from .history import durability_violations
from .minimize import MinimizeMixin
from .outcome import ExploreResult, ScheduleOutcome, StopReason
from .resources import ResourcesMixin
from .scheduler import Scheduler
from .search import PROFILES
from .strategies import ContinueChooser, ReplayChooser, SerialChooser
from .verdicts import VerdictsMixin


class Race(FaultsMixin, ResourcesMixin, AppsMixin, VerdictsMixin, MinimizeMixin):
    """Actors, setup and checks for one database; explore or replay their schedules."""


    def __init__(self, database: Database, *, name: str = "race", redis: Any = None,
                 hang_timeout: float = 10.0, allowed_errors: Iterable[str | type] = (),
                 replay_hint: Callable[[str], str] | None = None, forced_schedule: str | None = None,
                 save_dir: str | Path | None = None, capture: bool = True) -> None:
        """``redis``: a ConnInfo (or a callable giving one) for redis locks; ``replay_hint(schedule)``
        says how to replay a failure (the pytest fixture gives the pytest command); ``forced_schedule``
        makes the assert_* helpers replay that schedule instead of exploring; ``capture``: instrument
        the connections the app opens itself (:meth:`capture_drivers`), from the first schedule on."""
        self.database, self.name = database, name
        self.replay_hint = replay_hint or (lambda sched: f"race.replay({sched!r})")
        self.forced_schedule = forced_schedule
        self.shard: Any = None  # "K/N": explore() runs that shard's part (pytest --harness-shard sets it)
        self.progress: Callable[[int, int], None] | None = None  # explore()'s default progress callback
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
        self.redis_namespace = False  # scenario lock steps use harness:<database>:* keys: reset them all
        # scenario sessions: the steps each runs when a listed order is replayed (None: all of them)
        self.step_plan: dict[str, list[str]] | None = None
        # PostgreSQL connections are kept between schedules (a connect forks a backend: ~3 ms, four
        # per schedule were a third of its time); a DISCARD-style reset gives each a clean session
        self._idle: dict[bool, list[Any]] = {True: [], False: []}
        self._lent: list[tuple[bool, Any]] = []
        self._idle_sessions: dict[str, Any] = {}  # scenario sessions' connections, by actor (session_for)
        self._lent_sessions: list[tuple[str, Any]] = []
        # scenario files: step results judged against their expectations, and checks evaluated on the
        # server's text by the same evaluator as listed interleavings (harness.check)
        self.step_checker: Callable[[Trace], list[Violation]] | None = None
        self.trace_checker: Callable[[Trace, Any], list[Violation]] | None = None
        self._text: Any = None  # a session returning the server's text, for scenario checks
        self._prepared = False  # the database is set up for the harness's deadlock handling
        self._seen: dict[tuple[int, ...], ScheduleOutcome] = {}  # decisions -> a run of them (diagnosis)
        self._facts: list[str] = []  # runs of the same decisions that differed
        # the app's own connections, engines and clock (apps.py)
        self.capture = capture
        self._capture = DriverCapture(self._sched)
        self._db_clock: Any = None
        self._engines: list[Any] = []
        self._engine_cache: dict[str, Any] = {}
        self._warned_unseen = False
        self.last_result: ExploreResult | None = None
        self.expects_race = False  # assert_finds_race: a found failure is the expected outcome

    def close(self) -> None:
        """Close the race's own control connection (actors' connections close after each schedule)."""
        self._close_opened()
        self._release_apps()
        self._forget_connections()
        for link in self._links.values():
            link.close()
        self._links.clear()

    def __enter__(self) -> "Race":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def actor(self, name: str, fn: Callable[..., Any] | None = None) -> Any:
        """Register an actor (usable as a decorator). ``fn()`` or ``fn(ctx)``; an ``async def`` one (or
        one returning an awaitable) runs in an event loop of its own, on its own thread (docs/asyncio.md)."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.actors:
                raise HarnessError(f"actor {name!r} is registered twice in race {self.name!r}.")
            self.actors[name] = f
            return f
        return register(fn) if fn is not None else register

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

    def replay(self, schedule: str | Sequence[str]) -> ScheduleOutcome:
        """Run exactly this schedule (``"A A B"`` or a list); raises Divergence if it cannot be followed."""
        moves = schedule.replace(",", " ").split() if isinstance(schedule, str) else list(schedule)
        unknown = sorted(set(moves) - set(self.actors) - set(self.faults))
        if unknown:
            raise HarnessError(f"the schedule names actors {unknown} that race {self.name!r} does not have "
                               f"(actors: {', '.join(self.actors)}).")
        return self.run_schedule(ReplayChooser(moves))

    def run_schedule(self, chooser: Chooser) -> ScheduleOutcome:
        """Set up, run the actors under ``chooser``, check, tear down."""
        if not self.actors:
            raise HarnessError(f"race {self.name!r} has no actors; add some with race.actor(name, fn).")
        start = time.perf_counter()
        if self.capture:
            self.capture_drivers()
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
            sched.loop_cleanup = self._capture.close_loop_connections
            if self._links:
                sched.network_stalls, sched.on_stuck = self._network_stalls, self._heal_stalled
            self._scheduler = sched
            try:
                run = sched.run()
            finally:
                self._scheduler = None
                self._close_opened()
                self._reset_captured()
                for link in self._links.values():
                    link.reset()  # healed, up, no delay, no connection left
            unsupported = [r.error for r in run.results.values() if isinstance(r.error, AsyncActorError)]
            if unsupported:  # the actor used what the harness cannot schedule: no outcome to judge
                raise unsupported[0]
            control = self._control()  # a new one if a crash fault restarted the server
            violations = self._evaluate(run, control)
            self._warn_if_unseen(run)
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

    def _warn_if_unseen(self, run: ScheduleRun) -> None:
        """Actors that reached no scheduling point at all explore nothing: say so once, with the likely
        cause (database calls on connections the race never saw)."""
        if self._warned_unseen or any(label != "start" for label in run.labels) or run.hung:
            return
        self._warned_unseen = True
        warnings.warn(f"race {self.name!r}: actors {', '.join(self.actors)} reached no scheduling point, so "
                      "there is nothing to explore; their database calls run on connections the race does not "
                      "see -- an engine whose pool was filled before the race captured drivers needs "
                      "race.instrument_engine(engine), or call race.capture_drivers() before the app connects.",
                      stacklevel=3)

    def _run_hooks(self, hooks: list[str | Callable[[Any], None]], conn: Any) -> None:
        for hook in hooks:
            if callable(hook):
                hook(conn)
            else:
                execute(conn, hook)

    def _bind(self, name: str, fn: Callable[..., Any]) -> Callable[[], Any]:
        try:
            wants_ctx = len(inspect.signature(fn).parameters) >= 1
        except (TypeError, ValueError):
            wants_ctx = False
        ctx = ActorContext(name, self)
        return (lambda: fn(ctx)) if wants_ctx else fn

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


__all__ = ["PROFILES", "ActorContext", "ContinueChooser", "ExploreResult", "Race", "ScheduleOutcome", "StopReason"]
