"""Scenario files: every validation error names file:line and teaches; nothing else escapes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.scenario.yaml_loader import load_file, load_yaml

from .conftest import ROOT, run_harness

VALID = textwrap.dedent("""\
    name: demo
    setup: CREATE TABLE t (id int)
    sessions:
      a:
        isolation: read committed
        steps:
          a1: BEGIN
          a2:
            sql: {postgres: SELECT 1, mysql: SELECT 2}
            expect: ok
      b:
        steps:
          b1: SELECT 3
    checks:
      empty_t:
        sql: SELECT * FROM t
        expect: empty
    interleavings:
      - a1 b1 a2
      - steps: [b1, a1, a2]
        expect: {postgres: holds, mysql: "violates: empty_t"}
    """)


def test_the_valid_example_loads() -> None:
    sc = load_yaml(VALID, "demo.yaml")
    assert [s.name for s in sc.sessions] == ["a", "b"]
    assert sc.step("a2").sql.for_backend("mysql") == "SELECT 2"
    assert sc.interleavings[1].expect["mysql"].violates == "empty_t"


CASES = [
    # (replace this, with this, expected line, message fragment)
    ("name: demo", "name: demo\nsesions: {}", 2, "unknown key 'sesions' in the scenario; expected one of: name,"),
    ("name: demo", "name: demo\nsesions: {}", 2, "Did you mean 'sessions'?"),
    ("    isolation: read committed", "    isolation: read comitted", 5, "Did you mean 'read committed'?"),
    ("  b1: SELECT 3", "  a1: SELECT 3", 13, "step name 'a1' is already used at line 7"),
    ("  - a1 b1 a2", "  - a1 b2 a2", 19, "names step 'b2', which no session defines. Did you mean 'b1'?"),
    ('mysql: "violates: empty_t"', 'mysql: "violates: empty"', 21, "names no check; checks are: empty_t"),
    ('mysql: "violates: empty_t"', 'mysql: "broken"', 21, "must be 'holds' or 'violates: <check name>'"),
    ("    expect: ok", "    expect: okay", 10, "must be 'ok', 'blocks', or a mapping"),
    ("sql: {postgres: SELECT 1, mysql: SELECT 2}", "sql: {postgres: SELECT 1, oracle: x}", 9,
     "unknown key 'oracle' in step 'a2' sql; expected one of: postgres, mysql."),
    ("expect: empty", "expect: emptyish", 17, "Did you mean 'empty'?"),
    ("  a:\n", "  a:\n    stepz: {}\n", 5, "Did you mean 'steps'?"),
    ("a1: BEGIN", "a1: {sql: BEGIN, action: lock}", 7, "needs exactly one of `sql:` or `action:`"),
    ("a1: BEGIN", "a1: {action: lok}", 7, "unknown action 'lok'; known actions: lock,"),
    ("name: demo", "name: demo\nbackends: [postgres, oracle]", 2, "unknown backend 'oracle'"),
    ("name: demo", "name: demo\ntimeouts: {step: -1}", 2, "timeouts step must be at least 0.1"),
    ("name: demo", "name: demo\nname: again", 2, "key 'name' appears twice in the scenario"),
    ("checks:\n", "checks:\n  bad: SELECT 1\n", 15, "check 'bad' must be a mapping"),
]


@pytest.mark.parametrize("old, new, line, fragment", CASES, ids=[c[3][:40] for c in CASES])
def test_every_validation_error_names_file_line_and_what_is_expected(old, new, line, fragment) -> None:
    text = VALID.replace(old, new, 1)
    assert text != VALID
    with pytest.raises(ScenarioError) as err:
        load_yaml(text, "demo.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"demo.yaml:{line}: "), str(err.value)
    assert err.value.line == line


@pytest.mark.parametrize("text, line, fragment", [
    ("", 1, "the file is empty"),
    ("- just\n- a list\n", 1, "the scenario must be a mapping"),
    ("sessions: [\n", 2, "not valid YAML"),
    ("name: x\n", 1, "has no `sessions:`"),
    ("sessions:\n  a: {}\n", 2, "session 'a' has no `steps:`"),
    ("sessions:\n  a:\n    steps: {}\n", 3, "session 'a' has no steps"),
    ("sessions:\n  a:\n    steps:\n      a1: ''\n", 4, "step 'a1' sql is empty"),
    ("key: [unclosed\nsessions: {}\n", 2, "not valid YAML"),
])
def test_structural_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_yaml(text, "x.yaml")
    assert fragment in str(err.value) and err.value.line == line, str(err.value)


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_file(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_file(bad)
    other = tmp_path / "x.txt"
    other.write_text("hi")
    with pytest.raises(ScenarioError, match="unknown file type"):
        load_file(other)


def _mutations() -> st.SearchStrategy[str]:
    lines = VALID.splitlines(keepends=True)
    return st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(lines), max_size=30).map("".join),
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 40), st.text(max_size=20)).map(
            lambda t: VALID[: t[0]] + t[2] + VALID[t[0] + t[1]:]),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                         st.sampled_from(["sessions", "steps", "a", "b", "a1", "sql", "expect", "checks",
                                          "interleavings", "setup", "postgres", "mysql", "action", "args"]),
                         kids, max_size=4), max_leaves=20).map(lambda v: yaml.safe_dump(v)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_malformed_yaml_only_ever_raises_scenario_error(text: str) -> None:
    try:
        load_yaml(text, "fuzz.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.yaml")


def test_cli_exit_codes(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(VALID.replace("a1 b1 a2", "a1 b9 a2"))
    done = run_harness("run", str(broken))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{broken}:19: interleaving #1 names step 'b9'" in done.stderr

    good = ROOT / "scenarios" / "basics" / "lost_update.yaml"
    done = run_harness("run", str(good), "--backend", "postgres", "--interleaving", "a_begin a_read zz")
    assert done.returncode == 2 and "names step 'zz'" in done.stderr

    done = run_harness("run", str(good), "--backend", "postgres")
    assert done.returncode == 0, done.stdout + done.stderr
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(good.read_text().replace('expect: "violates: both_increments_counted"   #', "expect: holds  #"))
    done = run_harness("run", str(wrong), "--backend", "postgres")
    assert done.returncode == 1, done.stdout
    assert "FAIL" in done.stdout and "replay: harness run" in done.stdout


FAULTS = """\
actors:
  A: {call: "scenarios.faults.payments:pay_actor", args: {idempotent: false}}
faults:
  ack: {lose_commit_ack: A}
explore: {schedules: 10}
"""


@pytest.mark.parametrize("old, new, line, fragment", [
    ("lose_commit_ack: A", "lose_comit_ack: A", 4, "Did you mean 'lose_commit_ack'?"),
    ("lose_commit_ack: A", "lose_commit_ack: Z", 4, "fault 'ack' names actor 'Z', which is not one of A"),
    ("{lose_commit_ack: A}", "{inject_error: A}", 4,
     "`code:` (SQLSTATE or MySQL error number) goes with inject_error only, and they need it"),
])
def test_fault_declarations_are_validated(old: str, new: str, line: int, fragment: str) -> None:
    assert load_yaml(FAULTS, "f.yaml").faults[0].kind == "lose_commit_ack"
    with pytest.raises(ScenarioError) as err:
        load_yaml(FAULTS.replace(old, new), "f.yaml")
    assert fragment in str(err.value) and err.value.line == line, str(err.value)
