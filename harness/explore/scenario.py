"""Explore YAML scenarios: their sessions' steps, or the Python actors they name, become race actors.

A session actor runs its steps in order on its own autocommit connection, each step a scheduling
point (so the explorer, not a listed interleaving, decides the order); a Python actor is
``package.module:function`` called as ``function(ctx, **args)``.  Checks and setup come from the
scenario; the verdict compares what was found with the scenario's ``explore.expect``.

Fault steps of sessions (kill_session, inject_error, lose_commit_ack) use the Race's own faults, with
the semantics of a listed interleaving: an injected error is the victim's step result, and a session
whose connection is gone runs its later steps as points that send nothing.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import Any, Callable

from ..check import check_violations, step_violations
from ..dialect import ConnInfo
from ..dialect.base import error_info
from ..errors import ScenarioError
from ..provision import Database, Server
from ..results import Outcome
from ..scenario.hooks import SetupContext, resolve_call, run_hook
from ..scenario.model import FAULT_KINDS, ActorSpec, FaultSpec, Scenario, Session
from ..steps import ActionContext, lost_connection, run_step, starts_transaction, step_sql
from ..trace import ErrorInfo, StepResult
from .nearest import nearest_passing
from .race import Race, ScheduleOutcome
from .strategies import StepChooser


def _resolve(scenario: Scenario, spec: ActorSpec) -> Callable[..., Any]:
    return resolve_call(scenario.path, spec.call, f"actor {spec.name!r}", spec.line)


def _hook(scenario: Scenario, block: Any, kind: str, backend: str, database: Database) -> Callable[[Any], None]:
    """A scenario's Python setup/teardown as a race hook (run on the race's control connection)."""
    def run(conn: Any) -> None:
        run_hook(scenario.path, block.call, block.args, block.line, kind, SetupContext(backend, database.info, conn))
    return run


def _session_actor(race: Race, scenario: Scenario, session: Session, backend: str, actions: dict[str, Any],
                   faults: "_RaceFaults") -> Callable[[Any], None]:
    dialect = race.dialect

    def run(ctx: Any) -> None:
        conn = race.session_for(ctx.name)
        sched = race._scheduler
        if session.isolation:
            isolation = dialect.isolation_sql(session.isolation)
            done = dialect.run_sql(conn, isolation)
            if sched is not None:
                sched.record("setup", sql=isolation, result=done)
        for block in session.setup:
            sql = block.for_backend(backend)
            if sql:
                dialect.run_sql(conn, sql)
        lost: str | None = None  # the step whose call found the connection gone

        def as_result(exc: BaseException) -> StepResult:
            """A step's error is its result, as in a listed interleaving (an injected server error, or
            the connection lost to a kill or a lost acknowledgement); anything else is a harness bug."""
            if isinstance(exc, ConnectionError) or dialect.is_connection_error(exc) or dialect.is_closed(conn):
                return lost_connection(exc)
            if dialect.error_code(exc) is None:
                raise exc
            return StepResult(error=error_info(exc))

        outside_tx = False  # the server rolled the session's transaction back; no BEGIN since
        plan = race.step_plan.get(session.name) if race.step_plan is not None else None
        by_name = {s.name: s for s in session.steps}
        for step in session.steps if plan is None else [by_name[name] for name in plan]:
            if lost is not None:  # as in a listed interleaving, the step fails without being sent
                refused = StepResult(error=ErrorInfo("connection", f"session {session.name}'s connection was lost at "
                                                     f"step {lost}; its later steps fail without being sent"))
                race.call(f"{step.name}: not sent", conn, lambda: refused, statement=False, step=step.name)
                continue
            ctx = ActionContext(session.name, conn, dialect, step.args, _NoWorker(), faults=faults,
                                lock_observer=race.step_lock_observer())
            sql = step_sql(scenario, step, backend)
            run = functools.partial(run_step, step, sql, ctx, actions)  # the engine's step executor
            if step.action is not None:
                result = race.call(f"{step.name}: {step.action}", conn, run, statement=False, step=step.name,
                                   on_error=as_result)
            else:
                if starts_transaction(sql):
                    outside_tx = False
                result = race.call(f"{step.name}: {sql}", conn, run, step=step.name, sql=sql, on_error=as_result,
                                   note={"outside_transaction": True} if outside_tx else None)
            error = result.error if isinstance(result, StepResult) else None
            if error is not None and error.code == "connection":
                lost = step.name  # killed, or closed after a lost acknowledgement
            elif error is not None and not outside_tx and dialect.ended_transaction(conn, error):
                outside_tx = True  # as the engine records it: later steps run outside the transaction
                if sched is not None:
                    sched.record("rollback", step=step.name, detail={"by_server": True, "code": error.code})
        if lost is None:
            for block in session.teardown:
                sql = block.for_backend(backend)
                if sql:
                    dialect.run_sql(conn, sql)

    return run


class _RaceFaults:
    """Fault steps in an explored scenario: the Race's faults, which its scheduler records, arms and
    fires at the victim's next SQL step (:meth:`Race.call`)."""

    def __init__(self, race: Race) -> None:
        self.race = race

    def kill_session(self, victim: str) -> None:
        self.race.kill_session(victim)()  # returns once the server ended the session

    def inject_error(self, victim: str, code: str, message: str) -> None:
        self.race.inject_error(victim, code, message)()

    def lose_commit_ack(self, victim: str) -> None:
        self.race.lose_commit_ack(victim)()


def _fault(race: Race, fault: FaultSpec) -> Callable[[], None]:
    """The race's fault function for a YAML ``faults:`` entry: ``race.<kind>(actor, code | ms)`` as
    :data:`~harness.scenario.model.FAULT_KINDS` says (the loader checked the arguments)."""
    kind = FAULT_KINDS[fault.kind]
    make: Callable[..., Callable[[], None]] = getattr(race, kind.name)
    args: list[Any] = [fault.actor] if kind.aimed else []
    if kind.code:
        args.append(fault.code or "")
    if kind.ms:
        args.append(float(fault.ms or 0))
    return make(*args)


class _NoWorker:
    """Actions report Redis waits through the engine's worker; under exploration the lock observer does."""

    self_wait: Any = None


def race_for_scenario(scenario: Scenario, backend: str, database: Database,
                      redis: Callable[[], ConnInfo] | None = None) -> Race:
    race = Race(database, name=scenario.name, redis=redis, hang_timeout=scenario.timeouts.step)
    for kind, blocks, add in (("setup", scenario.setup, race.setup), ("teardown", scenario.teardown, race.teardown)):
        for block in blocks:
            sql = block.for_backend(backend)
            if block.call is not None:
                add(_hook(scenario, block, kind, backend, database))
            elif sql:
                add(sql)
    for check in scenario.checks:
        sql = check.sql.for_backend(backend)
        if sql is not None and check.kind == "durable":
            race.check_durable(check.name, sql, rows_per_op=int(check.expected))
    # the other checks: the evaluator listed interleavings use, on the server's text
    plain = replace(scenario, checks=tuple(c for c in scenario.checks if c.kind != "durable"))
    race.trace_checker = lambda trace, conn: check_violations(plain, backend, trace, race.dialect,
                                                              race.text_session())
    race.allowed_errors.extend(scenario.allowed_for(backend))
    if scenario.sessions:
        race.step_checker = lambda trace: step_violations(scenario, backend, trace, scenario.allowed_for(backend))
    if scenario.actors:
        for spec in scenario.actors:
            fn = _resolve(scenario, spec)
            race.actor(spec.name, lambda ctx, fn=fn, args=dict(spec.args): fn(ctx, **args))
        for fault in scenario.faults:
            race.fault(fault.name, _fault(race, fault))
    else:
        from ..actions import build_actions

        actions = build_actions(backend, redis)
        faults = _RaceFaults(race)
        race.redis_namespace = redis is not None and any(
            step.action in ("lock", "expire_lease") for session in scenario.sessions for step in session.steps)
        for session in scenario.sessions:
            race.actor(session.name, _session_actor(race, scenario, session, backend, actions, faults))
    return race


def explore_scenario(scenario: Scenario, backend: str, server: Server, *,
                     redis: Callable[[], ConnInfo] | None = None, schedules: int | None = None,
                     strategy: str | None = None, seed: int | None = None, schedule: str | None = None,
                     database_dir: str | None = None, progress: Any = None,
                     private: Callable[[str], Server] | None = None, shard: Any = None) -> Outcome:
    """Explore (or, with ``schedule``, replay) a scenario on a fresh database; one Outcome.

    A scenario whose faults crash the server runs on a server of its own, from ``private(backend)``
    (stopped afterwards), never on ``server``, which others share.
    """
    if scenario.crashes_server:
        if private is None:
            raise ScenarioError("this scenario crashes the server (crash_server fault), which needs a private "
                                "local server; run it with `harness run` or the pytest plugin.", path=scenario.path)
        server = private(backend)
        try:
            return _explore(scenario, backend, server, redis, schedules, strategy, seed, schedule, database_dir,
                            progress, shard)
        finally:
            server.stop()
    return _explore(scenario, backend, server, redis, schedules, strategy, seed, schedule, database_dir, progress, shard)


def _explore(scenario: Scenario, backend: str, server: Server, redis: Callable[[], ConnInfo] | None,
             schedules: int | None, strategy: str | None, seed: int | None, schedule: str | None,
             database_dir: str | None, progress: Any, shard: Any = None) -> Outcome:
    database = server.create_database()
    start = time.perf_counter()
    try:
        with race_for_scenario(scenario, backend, database, redis) as race:
            expectation = scenario.exploration_expectation(backend)
            wanted = expectation.violates if expectation else None
            found_after, exhausted, stop, part, key = None, False, None, None, None
            if schedule is not None:
                replayed = replay_scenario(race, scenario, schedule)
                runs = 1
                found: ScheduleOutcome | None = None if replayed.passed else replayed
            else:
                spec = scenario.explore
                result = race.explore(strategy=strategy or (spec.strategy if spec else "auto"),
                                      max_schedules=schedules or (spec.schedules if spec else 100),
                                      seed=seed, database_dir=database_dir, progress=progress, shard=shard)
                found, runs, found_after = result.failure, result.schedules_run, result.first_failure_after
                part, key = result.shard, list(result.found_key) if result.found_key else None
                exhausted, stop = result.exhausted, result.stop_reason.value
            outcome = _outcome(scenario, backend, found, runs, wanted, time.perf_counter() - start, seed)
            outcome.found_after = found_after
            outcome.preemptions = found.preemptions if found else None
            outcome.exhausted, outcome.stop_reason, outcome.replayed = exhausted, stop, schedule is not None
            moves = found.schedule if found is not None else []
            if found is not None and all(m in race.actors or m in race.faults for m in moves):  # not a listed order
                near = nearest_passing(race, found)
                if near is not None:
                    outcome.nearest_passing, outcome.nearest_trace = list(near.schedule), near.trace
            outcome.shard, outcome.found_key = part, key
    finally:
        database.drop()
    return outcome


def replay_scenario(race: Race, scenario: Scenario, schedule: str) -> ScheduleOutcome:
    """Replay a schedule of actor moves (``a a b``) or, for scenario sessions, a listed order of
    steps (``a1 b1 a2``), which the session actors follow step by step."""
    moves = schedule.replace(",", " ").split()
    steps = {step.name: session.name for session in scenario.sessions for step in session.steps}
    if moves and all(m in steps for m in moves) and not any(m in race.actors for m in moves):
        # a listed order: each session runs the steps it lists (a file may define alternatives)
        race.step_plan = {s.name: [m for m in moves if steps[m] == s.name] for s in scenario.sessions}
        try:
            return race.run_schedule(StepChooser([(steps[m], m) for m in moves]))
        finally:
            race.step_plan = None
    return race.replay(moves)


def _outcome(scenario: Scenario, backend: str, found: ScheduleOutcome | None, runs: int, wanted: str | None,
             elapsed: float, seed: int | None) -> Outcome:
    violated = [] if found is None else found.violated
    problems: list[str] = []
    if wanted is None and found is not None:
        problems = list(found.violations)
    elif wanted is not None and found is None:
        problems = [f"expected check {wanted} to be violated, but {runs} schedules all held"]
    elif wanted is not None and found is not None and wanted not in violated:
        problems = [f"expected check {wanted} to be violated, but the failure found was: "
                    + "; ".join(found.violations)]
    return Outcome(scenario.name, scenario.path, backend, "exploration", found.schedule if found else [],
                   not problems, f"violates: {wanted}" if wanted else "holds", violated, problems, elapsed,
                   found.trace if found else None, kind="exploration", schedules_run=runs, seed=seed)
