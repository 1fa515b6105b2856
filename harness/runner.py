"""Run YAML scenarios: scenario x backend x interleavings on a fresh database -> outcomes.

This is the library API the CLI and the pytest plugin call; it glues engine and checks together.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from .check import evaluate_checks, verdict
from .dialect import ConnInfo
from .engine import Engine, EngineOptions, ScenarioRunError
from .errors import ScenarioError
from .orders import all_interleavings
from .provision import Database, Server
from .results import Outcome
from .scenario.model import Interleaving, Scenario, StepRef
from .steps import Action


def parse_interleaving(scenario: Scenario, text: str) -> Interleaving:
    """``"a1 b1 a2"`` -> an Interleaving, with the expectation of a matching one in the file."""
    names = text.replace(",", " ").split()
    known = scenario.step_names
    if not names:
        raise ScenarioError("--interleaving is empty; give step names in order, e.g. "
                            f"{' '.join(known[:4]) or 'a1 b1 a2 b2'!r}.", path=scenario.path)
    if not known:
        raise ScenarioError("--interleaving needs session steps, and this scenario has none (its actors are "
                            "explored: replay one of their schedules with --schedule).", path=scenario.path)
    for name in names:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            raise ScenarioError(f"--interleaving names step {name!r}, which no session defines"
                                + (f"; did you mean {close[0]!r}?" if close else f"; steps are: {' '.join(known)}."),
                                path=scenario.path)
    for il in scenario.interleavings:
        if [s.step for s in il.steps] == names:
            return il
    return Interleaving(tuple(StepRef(n) for n in names))


def schedule_movers(scenario: Scenario) -> list[str]:
    """Who a schedule may name: the actors and faults, or (without actors) the sessions run as actors."""
    if scenario.actors:
        return [a.name for a in scenario.actors] + [f.name for f in scenario.faults]
    return [s.name for s in scenario.sessions]


def parse_schedule_arg(scenario: Scenario, text: str) -> list[str]:
    """``--schedule "A A B"`` -> its moves, checked against the scenario before any server starts."""
    from .explore.strategies import parse_schedule

    moves = parse_schedule(text)
    movers = schedule_movers(scenario)
    if not moves:
        raise ScenarioError(f"--schedule is empty; give the moves in order, e.g. {' '.join(movers[:2] * 2)!r} "
                            "(found schedules are printed with their replay command).", path=scenario.path)
    unknown = sorted(set(moves) - set(movers))
    if unknown:
        raise ScenarioError(f"--schedule names {', '.join(map(repr, unknown))}, which this scenario does not have; "
                            f"a schedule names its actors or faults: {', '.join(movers) or 'none'}.",
                            path=scenario.path)
    return moves


def interleavings_of(scenario: Scenario) -> list[Interleaving]:
    return list(scenario.interleavings) or all_interleavings(scenario, scenario.max_interleavings)


def run_scenario(scenario: Scenario, backend: str, server: Server, *,
                 interleavings: list[Interleaving] | None = None, database: Database | None = None,
                 options: EngineOptions | None = None, actions: Mapping[str, Action] | None = None,
                 redis: Callable[[], ConnInfo] | None = None) -> list[Outcome]:
    """Run interleavings (default: the scenario's, or all) on a fresh database; one outcome each.

    ``actions`` default to the harness's own (clock, lock, unlock, expire_lease, point); ``redis``
    gives a Redis server on first use of a redis lock step.
    """
    if actions is None:
        from .actions import build_actions

        actions = build_actions(backend, redis)
    chosen = interleavings if interleavings is not None else interleavings_of(scenario)
    db = database or server.create_database()
    if options is None and scenario.source == "yaml":  # cycles broken as when explored: one victim on both
        options = EngineOptions(step_timeout=scenario.timeouts.step, break_deadlocks=True)
        admin = db.connect(autocommit=True)
        try:
            server.dialect.prepare_race_database(admin, db.name, options.step_timeout)
        finally:
            admin.close()
    # (isolation specs keep PostgreSQL's own detection: they choose victims by deadlock_timeout)
    outcomes: list[Outcome] = []
    server_name = f"{server.flavor} {server.version}"
    try:
        with Engine(scenario, backend, server.dialect, db.info, options, actions=actions, server=server_name) as eng:
            for il in chosen:
                start = time.perf_counter()
                steps = [s.step for s in il.steps]

                def checks(trace: Any, conn: Any) -> None:
                    evaluate_checks(scenario, backend, trace, server.dialect, conn, eng.clock())

                try:
                    trace = eng.run(il, after_steps=checks)
                except ScenarioRunError as exc:
                    outcomes.append(Outcome(scenario.name, scenario.path, backend, il.label, steps, False,
                                            "-", error=str(exc), problems=[str(exc)],
                                            duration=time.perf_counter() - start))
                    break  # setup is the same for every interleaving: the rest would fail alike
                v = verdict(scenario, il, backend, trace)
                outcomes.append(Outcome(scenario.name, scenario.path, backend, il.label, steps, v.passed,
                                        v.expected, v.violated, v.problems, time.perf_counter() - start, trace))
    except ScenarioRunError as exc:
        outcomes.append(Outcome(scenario.name, scenario.path, backend, "-", [], False, "-", error=str(exc),
                                problems=[str(exc)]))
    finally:
        if database is None:
            db.drop()
    return outcomes
