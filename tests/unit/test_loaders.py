"""The YAML and isolation-spec loaders on in-memory text: what they build, and file:line on bad input."""

from __future__ import annotations

import textwrap

import pytest

from harness.errors import ScenarioError
from harness.scenario.model import Scenario
from harness.scenario.spec_loader import load_spec
from harness.scenario.yaml_loader import load_yaml

SPEC = textwrap.dedent("""\
    setup { CREATE TABLE t (id int PRIMARY KEY); }
    teardown { DROP TABLE t; }
    session s1
    step s1u { UPDATE t SET id = 2; }
    step s1c { COMMIT; }
    session s2
    step s2u { UPDATE t SET id = 3; }
    permutation s1u s2u s1c
    """)


def test_yaml_scenario_model(sessions_scenario: Scenario) -> None:
    s = sessions_scenario
    assert [x.name for x in s.sessions] == ["a", "b"]
    assert s.step_names == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert [[r.step for r in il.steps] for il in s.interleavings] == [
        ["a1", "a2", "a3", "b1", "b2", "b3"], ["a1", "b1", "a2", "b2", "a3", "b3"]]
    assert [(c.name, c.kind, c.expected) for c in s.checks] == [("two", "equals", 2)]
    assert s.source == "yaml" and s.path == "mem/sessions.yaml"


def test_actor_scenario_model(actors_scenario: Scenario) -> None:
    call = "scenarios.bkci.actors:save_rule_actor"
    assert [(a.name, a.call) for a in actors_scenario.actors] == [("A", call), ("B", call)]
    assert [(f.name, f.kind, f.actor) for f in actors_scenario.faults] == [("ack", "lose_commit_ack", "A")]
    assert actors_scenario.explore is not None and actors_scenario.explore.schedules == 10


@pytest.mark.parametrize("text, where, message", [
    ("sessions:\n  a:\n    steps: {a1: BEGIN}\ninterleavings:\n  - a1 a9\n", ":5:", "a9"),
    ("sessions:\n  a:\n    stepz: {a1: BEGIN}\n", ":3:", "stepz"),
    ("sessions: [\n", ":", "not valid YAML"),
    ("", ":1:", "empty"),
    ("backends: [oracle]\nsessions:\n  a: {steps: {a1: BEGIN}}\n", ":1:", "unknown backend 'oracle'"),
])
def test_yaml_errors_name_file_and_line(text: str, where: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as err:
        load_yaml(text, "mem/bad.yaml")
    assert str(err.value).startswith("mem/bad.yaml" + where)


def test_spec_model() -> None:
    s = load_spec(SPEC, "mem/x.spec")
    assert s.source == "spec" and s.backends == ("postgres",) and s.name == "x"
    assert [x.name for x in s.sessions] == ["s1", "s2"]
    assert [[r.step for r in il.steps] for il in s.interleavings] == [["s1u", "s2u", "s1c"]]


@pytest.mark.parametrize("text, message", [
    (SPEC.replace("permutation s1u s2u s1c", "permutation s1u s9"), "s9"),
    (SPEC.replace("step s2u {", "step s2u "), "expected"),
    ("session s1\nstep a { SELECT 1; }\nstep a { SELECT 2; }\n", "a"),
])
def test_spec_errors_are_scenario_errors(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as err:
        load_spec(text, "mem/bad.spec")
    assert str(err.value).startswith("mem/bad.spec:")


def test_a_value_emptied_by_an_edit_is_a_scenario_error_not_a_parser_error() -> None:
    """Found by test_bad_input's mutation test: a check value left empty used to be re-parsed from
    its serialized form ("..."), and PyYAML's ParserError escaped the loader."""
    text = "sessions: {a: {steps: {a1: SELECT 1}}}\nchecks:\n  durable: {sql: SELECT 1, expect: {durable: }}\n"
    with pytest.raises(ScenarioError, match=r"t\.yaml:3: .*durable"):
        load_yaml(text, "t.yaml")
