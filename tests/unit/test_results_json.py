"""The JSON results file: traces and outcomes round-trip exactly (reports are re-rendered from it)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from harness.results import Outcome, RunResults
from harness.trace import ErrorInfo, Event, ResultSet, StepResult, Trace, WaitEdge

text = st.text(max_size=12)
maybe_text = st.none() | text
times = st.floats(0, 1e4, allow_nan=False).map(lambda t: round(t, 6))
json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | text
errors = st.builds(ErrorInfo, code=maybe_text, message=text, severity=st.sampled_from(["ERROR", "FATAL"]),
                   detail=maybe_text)
result_sets = st.builds(ResultSet, columns=st.none() | st.lists(text, max_size=3),
                        rows=st.none() | st.lists(st.lists(maybe_text, max_size=3), max_size=3),
                        command=maybe_text, rowcount=st.none() | st.integers(0, 10**6))
step_results = st.builds(StepResult, results=st.lists(result_sets, max_size=2), error=st.none() | errors)
events = st.builds(Event, t=times, kind=st.sampled_from(["launch", "blocked", "complete", "fault", "check", "op"]),
                   session=maybe_text, step=maybe_text, sql=maybe_text, result=st.none() | step_results,
                   waits=st.lists(st.builds(WaitEdge, waiter=text, holder=maybe_text, lock=text, detail=text),
                                  max_size=2),
                   detail=st.dictionaries(text, json_scalars, max_size=3))
traces = st.builds(Trace, scenario=text, backend=st.sampled_from(["postgres", "mysql"]),
                   interleaving=st.lists(text, max_size=4), events=st.lists(events, max_size=5), server=text,
                   sessions=st.lists(text, max_size=3), hung=st.booleans())
outcomes = st.builds(Outcome, scenario=text, path=text, backend=st.sampled_from(["postgres", "mysql"]), label=text,
                     schedule=st.lists(text, max_size=4), passed=st.booleans(), expected=text,
                     violated=st.lists(text, max_size=2), problems=st.lists(text, max_size=2), duration=times,
                     trace=st.none() | traces, error=maybe_text, kind=st.sampled_from(["interleaving", "exploration"]),
                     schedules_run=st.integers(0, 10**6), seed=st.none() | st.integers(0, 2**32),
                     found_after=st.none() | st.integers(0, 10**6), preemptions=st.none() | st.integers(0, 50),
                     exhausted=st.booleans())


@given(traces)
def test_trace_round_trip(trace: Trace) -> None:
    assert Trace.from_json(json.loads(json.dumps(trace.to_json()))) == trace


@given(st.builds(RunResults, outcomes=st.lists(outcomes, max_size=3), started=text, duration=times,
                 harness_version=text, servers=st.dictionaries(text, text, max_size=2), command=text))
def test_results_round_trip(results: RunResults) -> None:
    data = json.loads(json.dumps(results.to_json()))
    again = RunResults.from_json(data)
    assert again == results
    assert data["passed"] == all(o.passed for o in results.outcomes)
    assert [o["replay"] for o in data["outcomes"]] == [o.replay for o in results.outcomes]
