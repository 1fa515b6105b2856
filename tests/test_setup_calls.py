"""YAML setup/teardown may call Python (``{call: "module:function", args: {...}}``): an app whose
schema comes from code is set up by that code, for listed interleavings and explorations alike."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.explore.scenario import explore_scenario
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_yaml
from tests.conftest import run_harness

ROOT = Path(__file__).resolve().parents[1]

COUNTER = """
setup:
  - {call: "tests.setup_hooks:create_counter", args: {start: 5}}
teardown:
  - {call: "tests.setup_hooks:drop_counter"}
sessions:
  a: {steps: {a1: BEGIN, a2: UPDATE counter SET n = n + 1, a3: COMMIT}}
  b: {steps: {b1: BEGIN, b2: UPDATE counter SET n = n + 1, b3: COMMIT}}
checks:
  seven: {sql: SELECT n FROM counter, expect: {equals: 7}}
interleavings:
  - a1 b1 a2 b2 a3 b3
"""


def load(text: str, tmp_path: Path) -> object:
    path = ROOT / "tests" / "t_setup_call.yaml"  # resolved from the project root, like a real scenario
    return load_yaml(textwrap.dedent(text), str(path))


def test_a_setup_call_prepares_listed_interleavings(server_pool, backend: str, tmp_path: Path) -> None:
    sc = load(COUNTER, tmp_path)
    (outcome,) = run_scenario(sc, backend, server_pool.get(backend))  # type: ignore[arg-type]
    assert outcome.passed, outcome.problems
    setups = [e.sql for e in outcome.trace.events if e.kind in ("setup", "teardown") and e.session is None]
    assert setups == ["call tests.setup_hooks:create_counter", "call tests.setup_hooks:drop_counter"], setups


def test_a_setup_call_prepares_explorations(server_pool, backend: str, tmp_path: Path) -> None:
    sc = load(COUNTER.replace("interleavings:\n  - a1 b1 a2 b2 a3 b3\n", "explore: {schedules: 20}\n"), tmp_path)
    outcome = explore_scenario(sc, backend, server_pool.get(backend))  # type: ignore[arg-type]
    assert outcome.passed and outcome.schedules_run > 1, (outcome.problems, outcome.schedules_run)


@pytest.mark.parametrize("text, message", [
    ('setup: [{call: "no_colon"}]', "must name module:function"),
    ('setup: [{call: "m:f", argz: {}}]', "unknown key 'argz'"),
    ('setup: [{call: "m:f", args: [1]}]', "args must be a mapping"),
])
def test_malformed_setup_calls_name_their_line(text: str, message: str, tmp_path: Path) -> None:
    body = text + "\nsessions: {a: {steps: {a1: SELECT 1}}}\n"
    with pytest.raises(ScenarioError, match=message) as info:
        load(body, tmp_path)
    assert ":1:" in str(info.value) or "line 1" in str(info.value), str(info.value)


def test_a_session_setup_call_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="put Python"):
        load('sessions: {a: {setup: [{call: "m:f"}], steps: {a1: SELECT 1}}}\n', tmp_path)


@pytest.mark.backends("postgres")
def test_a_failing_or_missing_setup_call_is_a_usage_error(tmp_path: Path) -> None:
    for call, said in (("tests.setup_hooks:broken", "the app's migration failed"),
                       ("tests.no_such_module:f", "cannot import 'tests.no_such_module'")):
        path = tmp_path / "s.yaml"
        path.write_text(COUNTER.replace("tests.setup_hooks:create_counter", call))
        done = run_harness("run", str(path), "--backend", "postgres")
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{path}:3" in done.stderr and said in done.stderr and "Traceback" not in done.stderr, done.stderr
