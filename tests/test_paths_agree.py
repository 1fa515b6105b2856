"""Every listed interleaving of every scenario file, run by the engine and replayed as an explored
schedule of its sessions: the same step results, the same waits, the same check results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.explore.scenario import race_for_scenario, replay_scenario
from harness.pytest_plugin import POOL_KEY
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_file
from harness.trace import Trace

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for folder in ("scenarios", "tests") for p in (ROOT / folder).rglob("*.yaml")
               if load_file(p).sessions and load_file(p).interleavings)


def summary(trace: Trace, steps: set[str]) -> dict[str, Any]:
    """What both paths must agree on: each step's result, which steps waited, each check's result."""
    done = [(e.step, e.result.last_rows if e.result else None,
             e.result.error.code if e.result and e.result.error else None)
            for e in trace.completions() if e.step in steps]
    return {"completed": done,
            "waited": sorted({e.step for e in trace.events if e.kind == "blocked" and e.step in steps}),
            "rolled back by the server after": [e.step for e in trace.events if e.kind == "rollback"],
            "outside a transaction": [e.step for e in trace.completions() if e.detail.get("outside_transaction")],
            "session setup": sorted((e.session, e.sql) for e in trace.events if e.kind == "setup" and e.session),
            "checks": [(e.step, e.detail.get("ok"), e.detail.get("actual")) for e in trace.checks()]}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each file on each selected backend it is written for."""
    if metafunc.function.__name__ != "test_listed_and_explored_runs_agree":
        return
    selected = metafunc.config.stash[POOL_KEY].settings.backends
    pairs = [(p, b) for p in FILES for b in selected if b in load_file(p).backends]
    metafunc.parametrize(("path", "flavor"), pairs, ids=[f"{p.relative_to(ROOT)}-{b}" for p, b in pairs])


def test_listed_and_explored_runs_agree(path: Path, flavor: str, server_pool, redis_server) -> None:
    backend = flavor
    scenario = load_file(path)
    steps = set(scenario.step_names)
    server = server_pool.get(backend)
    listed = run_scenario(scenario, backend, server, redis=lambda: redis_server.info)
    database = server.create_database()
    try:
        with race_for_scenario(scenario, backend, database, lambda: redis_server.info) as race:
            for il, outcome in zip(scenario.interleavings, listed):
                assert outcome.trace is not None and not outcome.trace.hung, outcome.problems
                order = " ".join(ref.step for ref in il.steps)
                explored = replay_scenario(race, scenario, order)
                assert summary(explored.trace, steps) == summary(outcome.trace, steps), order
    finally:
        database.drop()
