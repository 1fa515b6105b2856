"""Checks: invariants evaluated after each interleaving, step expectations, and the verdict.

Reads traces (and runs the checks' SQL on the control connection before teardown); writes ``check``
events into the trace so reports show expected vs actual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .dialect import Dialect
from .scenario.model import Check, Interleaving, Scenario
from .trace import Event, Trace


@dataclass(frozen=True)
class Violation:
    """One way a schedule or interleaving went wrong, as a record: reports and verdicts read its
    fields, never the sentence (``message``) back."""

    kind: str  # "check" | "step" | "actor" | "hang" | "serializability"
    subject: str | None  # the check, step or actor it is about
    message: str  # one sentence for people
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        return self.message


def show(value: Any) -> str:
    """A value as reports print it: numbers and booleans plain, text quoted, whatever the driver."""
    if value is None or isinstance(value, (bool, int, float, Decimal)):
        return repr(value) if not isinstance(value, Decimal) else str(value)
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    try:
        Decimal(text)
        return text
    except InvalidOperation:
        return repr(text)


def value_matches(expected: Any, actual: Any) -> bool:
    """Whether a query's value is the expected one, the same way for the server's text (listed
    interleavings) and a driver's Python values (explored runs): ``true`` is t, 1 or True on either
    backend; numbers compare as numbers (2 == '2' == Decimal('2.0'))."""
    if expected is None or actual is None:
        return expected is None and actual is None
    got = actual.decode("utf-8", "replace") if isinstance(actual, (bytes, bytearray)) else actual
    if isinstance(expected, bool):
        return str(got).lower() in (("t", "1", "true") if expected else ("f", "0", "false"))
    if isinstance(expected, (int, float, Decimal)) and not isinstance(got, bool):
        try:
            return Decimal(str(expected)) == Decimal(str(got))
        except InvalidOperation:
            return False
    return str(got) == str(expected)


def rows_match(kind: str, expected: Any, rows: list[Any]) -> tuple[bool, str]:
    """The one check evaluator: (holds, what was found) for ``empty`` / ``nonempty`` / ``equals``."""
    if kind == "empty":
        return (not rows, "no rows" if not rows else f"{len(rows)} row(s), first {tuple(rows[0])}")
    if kind == "nonempty":
        return (bool(rows), f"{len(rows)} row(s)")
    actual = rows[0][0] if rows and len(rows[0]) else None
    if len(rows) > 1:
        return False, f"{len(rows)} rows"
    return value_matches(expected, actual), show(actual)


def expected_text(kind: str, expected: Any) -> str:
    return {"empty": "no rows", "nonempty": "some rows"}.get(kind, show(expected))


def _matches(check: Check, rows: list[list[str | None]]) -> tuple[bool, str]:
    return rows_match(check.kind, check.expected, rows)


def evaluate_checks(scenario: Scenario, backend: str, trace: Trace, dialect: Dialect, conn: Any,
                    clock: float | None = None) -> None:
    """Run every check's SQL and append one ``check`` event per check (ok, expected, actual)."""
    for check in scenario.checks:
        sql = check.sql.for_backend(backend)
        if sql is None:
            continue
        result = dialect.run_sql(conn, sql)
        expected = expected_text(check.kind, check.expected)
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


def step_problems(scenario: Scenario, backend: str, trace: Trace,
                  interleaving: Interleaving | None = None) -> list[str]:
    """Per-step expectations (ok / error code / blocks / rows / completes_after; the interleaving's
    ``step_expect`` replaces a step's own) that the trace does not meet."""
    problems = []
    order = trace.completion_order()
    for name in trace.interleaving:
        step = scenario.step(name)
        exp = interleaving.expect_of(step, backend) if interleaving is not None else step.expect_for(backend)
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
        if exp.rows is not None and not result.error:
            returned = result.last_rows
            same = len(returned) == len(exp.rows) and all(len(g) == len(w) and all(
                value_matches(x, y) for x, y in zip(w, g)) for g, w in zip(returned, exp.rows))
            if not same:
                problems.append(f"step {name} should return {[list(r) for r in exp.rows]} but returned {returned}")
        after = exp.completes_after
        if after is not None and (after not in order or order.index(after) > order.index(name)):
            problems.append(f"step {name} should complete after step {after}, but "
                            + ("that step never completed" if after not in order else "it completed before"))
    return problems


def verdict(scenario: Scenario, interleaving: Interleaving, backend: str, trace: Trace) -> Verdict:
    """Did this interleaving do what the scenario says it should on this backend?"""
    expectation = scenario.expectation(interleaving, backend)
    violated = trace.violated()
    problems = step_problems(scenario, backend, trace, interleaving)
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


def check_violations(scenario: Scenario, backend: str, trace: Trace, dialect: Dialect, conn: Any) -> list[Violation]:
    """Evaluate the scenario's SQL checks into the trace (``check`` events) and return the failed ones
    as records: the evaluator listed interleavings use, for explored runs (``conn`` returns text)."""
    before = len(trace.events)
    evaluate_checks(scenario, backend, trace, dialect, conn)
    return [Violation("check", e.step, f"check {e.step} violated: expected {e.detail['expected']}, got "
                      f"{e.detail['actual']}", str(e.detail["expected"]), str(e.detail["actual"]))
            for e in trace.events[before:] if e.kind == "check" and not e.detail.get("ok")]


def step_violations(scenario: Scenario, backend: str, trace: Trace, allowed: tuple[str, ...] = ()) -> list[Violation]:
    """Explored scenario sessions: a step that fails is a violation, as an actor's exception is, unless
    its ``expect: {error: …}`` (or an allowed error) names the code.  Whether a step fails or blocks
    depends on the schedule, so when explored an error expectation admits the error without
    demanding it, and ``blocks`` is judged in listed interleavings only."""
    out: list[Violation] = []
    names = set(scenario.step_names)
    # a fault's own effect is not a finding: an injected error, a killed or cut victim's lost connection
    victims = {e.detail.get("victim") or e.session for e in trace.events if e.kind == "fault"}
    for e in trace.completions():
        if e.step not in names or e.result is None or e.detail.get("fault"):
            continue
        if e.session in victims and e.result.error is not None and e.result.error.code in (None, "connection"):
            continue
        exp = scenario.step(e.step).expect_for(backend)
        err = e.result.error
        got = f"{err.code}: {err.message}" if err else "success"
        if err is not None and exp is not None and exp.error and (exp.error == "any" or err.matches(exp.error)):
            continue
        if err is not None and (exp is None or not exp.error) and any(err.matches(c) for c in allowed):
            continue
        if err is not None:
            wanted = f"error {exp.error}" if exp is not None and exp.error else "success"
            out.append(Violation("step", e.step, f"step {e.step} failed with {got}", wanted, got))
    return out
