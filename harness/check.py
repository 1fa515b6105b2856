"""Checks: invariants evaluated after each interleaving, step expectations, and the verdict.

Reads traces (and runs the checks' SQL on the control connection before teardown); writes ``check``
events into the trace so reports show expected vs actual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dialect import Dialect
from .scenario.model import Check, Interleaving, Scenario
from .trace import Event, Trace


def _matches(check: Check, rows: list[list[str | None]]) -> tuple[bool, str]:
    if check.kind == "empty":
        return (not rows, "no rows" if not rows else f"{len(rows)} row(s), first {rows[0]}")
    if check.kind == "nonempty":
        return (bool(rows), f"{len(rows)} row(s)")
    actual = rows[0][0] if rows and rows[0] else None
    expected = None if check.expected is None else str(check.expected)
    if isinstance(check.expected, bool):
        expected = "t" if check.expected else "f"
        ok = actual in (expected, "1" if check.expected else "0", str(check.expected).lower())
        return ok, f"{actual!r}"
    return (actual == expected and len(rows) == 1, f"{actual!r}" if len(rows) <= 1 else f"{len(rows)} rows")


def evaluate_checks(scenario: Scenario, backend: str, trace: Trace, dialect: Dialect, conn: Any,
                    clock: float | None = None) -> None:
    """Run every check's SQL and append one ``check`` event per check (ok, expected, actual)."""
    for check in scenario.checks:
        sql = check.sql.for_backend(backend)
        if sql is None:
            continue
        result = dialect.run_sql(conn, sql)
        expected = {"empty": "no rows", "nonempty": "some rows"}.get(check.kind, f"{check.expected!r}")
        if result.error is not None:
            ok, actual = False, f"error {result.error.code}: {result.error.message}"
        else:
            ok, actual = _matches(check, result.last_rows)
        t = clock if clock is not None else (trace.events[-1].t if trace.events else 0.0)
        trace.events.append(Event(t, "check", None, check.name, sql, result=result,
                                  detail={"ok": ok, "expected": expected, "actual": actual}))


@dataclass
class Verdict:
    passed: bool
    expected: str  # "holds" / "violates: x"
    violated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # human sentences, empty when passed


def step_problems(scenario: Scenario, backend: str, trace: Trace) -> list[str]:
    """Per-step expectations (ok / error code / blocks) that the trace does not meet."""
    problems = []
    for name in trace.interleaving:
        exp = scenario.step(name).expect_for(backend)
        if exp is None:
            continue
        result = trace.result_of(name)
        if result is None:
            problems.append(f"step {name} never completed")
            continue
        code = result.error.code if result.error else None
        if exp.ok and result.error:
            problems.append(f"step {name} should succeed but failed with {code}: {result.error.message}")
        if exp.error and (result.error is None or (exp.error != "any" and not result.error.matches(exp.error))):
            got = f"{code}: {result.error.message}" if result.error else "success"
            problems.append(f"step {name} should fail with {exp.error} but got {got}")
        if exp.blocks is not None and trace.was_blocked(name) != exp.blocks:
            problems.append(f"step {name} should {'' if exp.blocks else 'not '}block but "
                            f"{'did' if trace.was_blocked(name) else 'did not'}")
    return problems


def verdict(scenario: Scenario, interleaving: Interleaving, backend: str, trace: Trace) -> Verdict:
    """Did this interleaving do what the scenario says it should on this backend?"""
    expectation = scenario.expectation(interleaving, backend)
    violated = trace.violated()
    problems = step_problems(scenario, backend, trace)
    if trace.hung:
        hang = next(e for e in trace.events if e.kind == "hang")
        graph = ", ".join(f"{w.waiter} waits for {w.holder or '?'} ({w.lock})" for w in hang.waits) or "no lock waits seen"
        problems.append(f"hang: {hang.detail.get('reason')}; wait-for graph: {graph}")
    if expectation is None or expectation.violates is None:
        expected = "holds"
        for name in violated:
            check_event = next(e for e in trace.checks() if e.step == name)
            problems.append(f"check {name} violated: expected {check_event.detail['expected']}, "
                            f"got {check_event.detail['actual']}")
    else:
        expected = f"violates: {expectation.violates}"
        if expectation.violates not in violated:
            problems.append(f"expected check {expectation.violates} to be violated, but it holds")
    return Verdict(not problems, expected, violated, problems)
