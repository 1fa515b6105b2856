"""The one list of fault kinds (harness.scenario.model.FAULT_KINDS) is what the loader and the explorer use."""

from __future__ import annotations

import inspect
import textwrap

import pytest

from harness.errors import ScenarioError
from harness.explore import Race
from harness.scenario.model import FAULT_KINDS
from harness.scenario.yaml_loader import load_yaml


@pytest.mark.parametrize("name", sorted(FAULT_KINDS))
def test_every_fault_kind_is_a_race_method_taking_what_the_registry_says(name: str) -> None:
    kind = FAULT_KINDS[name]
    params = list(inspect.signature(getattr(Race, name)).parameters)[1:]  # after self
    expected = (["victim"] if kind.aimed else []) + (["code"] if kind.code else []) + (["ms"] if kind.ms else [])
    assert params[:len(expected)] == expected, (name, params)


def _scenario(fault: str) -> str:
    return textwrap.dedent(f"""
        actors:
          A: {{call: "m:f"}}
        faults:
          f1: {fault}
        explore: {{schedules: 5}}
        """)


@pytest.mark.parametrize("fault, words", [
    ("{kill_session: A, code: '40001'}", "`code:`"),
    ("{inject_error: A}", "`code:`"),
    ("{delay: A}", "`ms:`"),
    ("{crash_server: A}", "crash_server: true"),
    ("{partition: Z}", "names actor 'Z'"),
    ("{explode: A}", "unknown key 'explode' in fault 'f1'; expected one of: lose_commit_ack"),
])
def test_fault_entries_are_checked_against_the_registry(fault: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_yaml(_scenario(fault), "t.yaml")
    assert str(info.value).startswith("t.yaml:") and words in str(info.value), str(info.value)


@pytest.mark.parametrize("fault", ["{inject_error: A, code: '40001'}", "{delay: A, ms: 5}", "{redis_outage: true}",
                                   "{lose_commit_ack: A}"])
def test_well_formed_fault_entries_load(fault: str) -> None:
    scenario = load_yaml(_scenario(fault), "t.yaml")
    assert scenario.faults[0].kind in FAULT_KINDS
