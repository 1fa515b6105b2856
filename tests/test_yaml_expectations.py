"""YAML expectations shared by listed and explored runs: allowed errors, per-interleaving step
expectations, rows and completes-after, and letting the server's lock-wait timeout end a wait."""

from __future__ import annotations

import textwrap

import pytest

from harness.errors import ScenarioError
from harness.explore.scenario import explore_scenario
from harness.runner import parse_interleaving, run_scenario
from harness.scenario.yaml_loader import load_yaml
from tests.shapes import ACCOUNTS_AND_SESSION_A


def scenario(text: str):  # type: ignore[no-untyped-def]
    return load_yaml(textwrap.dedent(text), "t.yaml")


def listed(server_pool, backend: str, text: str, order: str):  # type: ignore[no-untyped-def]
    sc = scenario(text)
    (outcome,) = run_scenario(sc, backend, server_pool.get(backend), interleavings=[parse_interleaving(sc, order)])
    return outcome


DUPLICATE = """
setup: CREATE TABLE u (id int PRIMARY KEY)
teardown: DROP TABLE u
sessions:
  a: {steps: {a1: INSERT INTO u VALUES (1)}}
  b: {steps: {b1: INSERT INTO u VALUES (1)}}
checks:
  one: {sql: SELECT count(*) FROM u, expect: {equals: 1}}
explore: {schedules: 10}
"""


def test_allowed_errors_admit_an_explored_steps_error_by_number_or_sqlstate(server_pool, backend, tmp_path) -> None:
    failing = explore_scenario(scenario(DUPLICATE), backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert not failing.passed and "failed with" in failing.problems[0]
    for codes in ('{postgres: ["23505"], mysql: ["1062"]}', '["23505", "23000"]'):
        allowed = scenario(DUPLICATE + f"allowed_errors: {codes}\n")
        outcome = explore_scenario(allowed, backend, server_pool.get(backend), database_dir=str(tmp_path))
        assert outcome.passed, (codes, outcome.problems)


ACCOUNTS = ACCOUNTS_AND_SESSION_A + """  b:
    steps:
      b1: BEGIN
      b2: UPDATE acct SET n = n + 1 WHERE id = 2
      b3: UPDATE acct SET n = n + 1 WHERE id = 1
      b4: COMMIT
      b_read: {sql: SELECT n FROM acct ORDER BY id, expect: {rows: [[2], [2]]}}
interleavings:
  - a1 a2 a3 a4 b1 b2 b3 b4 b_read
  - steps: a1 a2 b1 b2 a3 b3 a4 b4
    step_expect: {b3: {postgres: {error: 40P01}, mysql: {error: "1213"}}, a3: {completes_after: b3}}
"""


def test_per_interleaving_step_expectations_rows_and_completion_order(server_pool, backend) -> None:
    serial = listed(server_pool, backend, ACCOUNTS, "a1 a2 a3 a4 b1 b2 b3 b4 b_read")
    assert serial.passed, serial.problems  # both rows counted twice: (2, 2)
    other = ACCOUNTS.replace("expect: {rows: [[2], [2]]}", "expect: {rows: [[1], [2]]}")
    wrong_rows = listed(server_pool, backend, other, "a1 a2 a3 a4 b1 b2 b3 b4 b_read")
    assert any("should return [[1], [2]] but returned [['2'], ['2']]" in p for p in wrong_rows.problems), \
        wrong_rows.problems
    deadlock = listed(server_pool, backend, ACCOUNTS, "a1 a2 b1 b2 a3 b3 a4 b4")
    assert deadlock.passed, deadlock.problems  # b3 is the victim here, and a3 completes after it
    wrong = ACCOUNTS.replace("a3: {completes_after: b3}", "a3: {completes_after: b4}")
    late = listed(server_pool, backend, wrong, "a1 a2 b1 b2 a3 b3 a4 b4")
    assert any("should complete after step b4" in p for p in late.problems), late.problems


LOCK_WAIT = """
setup: |
  CREATE TABLE t (id int PRIMARY KEY, v int);
  INSERT INTO t VALUES (1, 0);
teardown: DROP TABLE t
timeouts: {step: 5, lock_wait: %s}
sessions:
  a:
    steps: {a1: BEGIN, a2: UPDATE t SET v = 1 WHERE id = 1, a3: ROLLBACK}
  b:
    setup: {postgres: "SET lock_timeout = '300ms'", mysql: SET SESSION innodb_lock_wait_timeout = 1}
    steps:
      b1: BEGIN
      b2: {sql: UPDATE t SET v = 2 WHERE id = 1, expect: {postgres: {error: 55P03}, mysql: {error: "1205"}}}
      b3: ROLLBACK
interleavings:
  - a1 a2 b1 b2 b3 a3
"""


def test_the_servers_lock_wait_timeout_may_end_a_wait(server_pool, backend) -> None:
    reported = listed(server_pool, backend, LOCK_WAIT % "report", "a1 a2 b1 b2 b3 a3")
    assert not reported.passed and any("hang" in p for p in reported.problems), reported.problems
    waited = listed(server_pool, backend, LOCK_WAIT % "server", "a1 a2 b1 b2 b3 a3")
    assert waited.passed, waited.problems


@pytest.mark.parametrize("text, line, words", [
    (ACCOUNTS.replace("a3: {completes_after: b3}", "a3: {completes_after: b9}"), 20,
     ["completes_after names step 'b9'", "Did you mean"]),
    (ACCOUNTS.replace("step_expect: {b3:", "step_expect: {b_read:"), 20,
     ["step_expect names step 'b_read', which this interleaving does not run"]),
    (ACCOUNTS.replace("expect: {rows: [[2], [2]]}", "expect: {rows: 1}"), 16, ["rows must be a list"]),
    (ACCOUNTS.replace("expect: {rows: [[2], [2]]}", "expect: {rows: [[1]], error: any}"), 16,
     ["cannot expect both rows and an error"]),
    (LOCK_WAIT % "sever", 6, ["timeouts lock_wait must be report", "Did you mean 'server'"]),
    (DUPLICATE + "allowed_errors: {postgre: ['23505']}\n", 10, ["unknown key 'postgre'", "'postgres'"]),
])
def test_misused_expectations_are_file_line_errors(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario(text)
    message = str(info.value)
    assert message.startswith(f"t.yaml:{line}: "), message
    for word in words:
        assert word in message, message
