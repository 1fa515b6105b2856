"""The terminal formatter (harness/report/text.py): one line per group, details only for failures."""

from __future__ import annotations

import io

from harness.report.text import print_outcomes, trace_lines
from harness.results import Outcome
from harness.trace import ErrorInfo, Event, ResultSet, StepResult, Trace, WaitEdge


def _trace() -> Trace:
    return Trace("counter", "postgres", ["a1", "b1"], events=[
        Event(0.0, "launch", "a", "a1", "BEGIN"),
        Event(0.001, "complete", "a", "a1", "BEGIN", StepResult([ResultSet(command="BEGIN")])),
        Event(0.002, "blocked", "b", "b2", "UPDATE counter   SET n = n + 1", waits=[WaitEdge("b", "a", "row lock")]),
        Event(0.003, "complete", "b", "b2", "UPDATE counter SET n = n + 1",
              StepResult(error=ErrorInfo("40001", "could not serialize access")), detail={"after_wait": True}),
        Event(0.004, "complete", "a", "a4", "SELECT n", StepResult([ResultSet(["n"], [["1"], [None]])])),
        Event(0.005, "check", step="two", detail={"ok": False, "expected": 2, "actual": 1}),
    ])


def test_trace_lines_tell_who_ran_what_and_who_waited() -> None:
    lines = trace_lines(_trace())
    assert len(lines) == 5  # launches are not shown
    assert "BLOCKED on a (row lock): UPDATE counter SET n = n + 1" in lines[1]
    assert "ERROR 40001: could not serialize access (after wait)" in lines[2]
    assert lines[3].endswith("-> 1; NULL")
    assert "check two: VIOLATED (expected 2, got 1)" in lines[4]


def _outcome(passed: bool, label: str, **kw: object) -> Outcome:
    return Outcome("counter", "s/c.yaml", "postgres", label, ["a1", "b1"], passed, "holds", **kw)  # type: ignore[arg-type]


def test_passing_outcomes_print_one_line_and_failures_their_trace_and_replay() -> None:
    out = io.StringIO()
    print_outcomes([_outcome(True, "in-order"), _outcome(False, "racy", violated=["two"], problems=["two: got 1"],
                                                       trace=_trace())], out)
    text = out.getvalue().splitlines()
    assert text[0] == "FAIL s/c.yaml [postgres] counter: 1/2 interleavings as expected"
    assert "in-order" not in "\n".join(text)  # passing details are not printed
    assert "     FAIL racy: expected holds, violated two" in text
    assert "          - two: got 1" in text
    assert any("BLOCKED on a" in line for line in text)
    assert "          replay: harness run s/c.yaml --backend postgres --interleaving 'a1 b1'" in text
    assert text[-1] == "2 outcomes: 1 as expected, 1 not"


def test_a_found_violation_prints_the_minimal_schedule_and_replay() -> None:
    found = Outcome("rules", "s/r.yaml", "mysql", "exploration", ["A", "B", "A"], True, "violates: one_rule",
                    violated=["one_rule"], kind="exploration", schedules_run=12, found_after=7, preemptions=1)
    out = io.StringIO()
    print_outcomes([found], out, summary=False)
    assert out.getvalue().splitlines() == [
        "ok   s/r.yaml [mysql] rules: violation of one_rule found after 7 schedule(s), as expected",
        "       minimal schedule (1 preemption(s)): A B A",
        "       replay: harness run s/r.yaml --backend mysql --schedule 'A B A'",
    ]
