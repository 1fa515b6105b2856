"""The engine on real servers: blocked detection per lock kind, deadlocks, hangs, expectations."""

from __future__ import annotations

import textwrap
import time

import pytest

from harness.engine import ScenarioRunError, all_interleavings
from harness.runner import parse_interleaving, run_scenario
from harness.scenario.yaml_loader import load_yaml


def scenario(text: str, name: str = "t.yaml"):
    return load_yaml(textwrap.dedent(text), name)


def run_one(server_pool, backend, sc, steps: str):
    server = server_pool.get(backend)
    (outcome,) = run_scenario(sc, backend, server, interleavings=[parse_interleaving(sc, steps)])
    assert outcome.error is None, outcome.error
    return outcome


ROW_LOCK = """
setup: |
  CREATE TABLE t (id int PRIMARY KEY, v int);
  INSERT INTO t VALUES (1, 0), (2, 0);
teardown: DROP TABLE t
sessions:
  a:
    steps:
      a1: BEGIN
      a2: UPDATE t SET v = 1 WHERE id = 1
      a3: COMMIT
  b:
    steps:
      b1: BEGIN
      b2: UPDATE t SET v = 2 WHERE id = 1
      b3: COMMIT
checks:
  b_wrote_last:
    sql: SELECT v FROM t WHERE id = 1
    expect: {equals: 2}
"""


def test_row_lock_wait_is_detected_and_completes_after_the_holder_commits(server_pool, backend) -> None:
    o = run_one(server_pool, backend, scenario(ROW_LOCK), "a1 b1 a2 b2 a3 b3")
    assert o.passed, o.problems
    events = [(e.kind, e.step) for e in o.trace.events if e.kind in ("blocked", "complete")]
    assert events.index(("blocked", "b2")) < events.index(("complete", "a3")) < events.index(("complete", "b2"))
    blocked = next(e for e in o.trace.events if e.kind == "blocked")
    assert [(w.waiter, w.holder) for w in blocked.waits] == [("b", "a")]
    assert "row lock" in blocked.waits[0].lock
    assert next(e for e in o.trace.events if e.kind == "complete" and e.step == "b2").detail["after_wait"]


def test_a_step_that_does_not_block_is_never_reported_blocked(server_pool, backend) -> None:
    o = run_one(server_pool, backend, scenario(ROW_LOCK), "a1 a2 a3 b1 b2 b3")
    assert not any(e.kind == "blocked" for e in o.trace.events)
    assert o.trace.completion_order() == ["a1", "a2", "a3", "b1", "b2", "b3"]


USER_LOCKS = {
    "postgres": ("SELECT pg_advisory_lock(42)", "SELECT pg_advisory_unlock(42)", "advisory lock"),
    "mysql": ("SELECT GET_LOCK('k42', 30)", "SELECT RELEASE_LOCK('k42')", "user lock"),
}


def test_user_level_lock_wait_is_detected(server_pool, backend) -> None:
    lock_sql, unlock_sql, kind = USER_LOCKS[backend]
    sc = scenario(f"""
        sessions:
          a:
            steps:
              a_lock: {lock_sql}
              a_unlock: {unlock_sql}
          b:
            steps:
              b_lock: {lock_sql}
              b_unlock: {unlock_sql}
        """)
    o = run_one(server_pool, backend, sc, "a_lock b_lock a_unlock b_unlock")
    blocked = [e for e in o.trace.events if e.kind == "blocked"]
    assert [e.step for e in blocked] == ["b_lock"]
    assert blocked[0].waits[0].lock == kind and blocked[0].waits[0].holder == "a"
    assert o.trace.result_of("b_lock").last_rows == [["" if backend == "postgres" else "1"]]


def test_metadata_lock_wait_is_detected(server_pool, backend) -> None:
    reader, ddl = "SELECT count(*) FROM t", "ALTER TABLE t ADD COLUMN x int"
    kind = {"postgres": "relation lock", "mysql": "metadata lock"}[backend]
    sc = scenario(f"""
        setup: CREATE TABLE t (id int PRIMARY KEY)
        teardown: DROP TABLE t
        sessions:
          a:
            steps:
              a_begin: BEGIN
              a_read: {reader}
              a_commit: COMMIT
          b:
            steps:
              b_ddl: {ddl}
        """)
    o = run_one(server_pool, backend, sc, "a_begin a_read b_ddl a_commit")
    blocked = next(e for e in o.trace.events if e.kind == "blocked")
    assert blocked.step == "b_ddl" and blocked.waits[0].lock == kind and blocked.waits[0].holder == "a"
    assert o.trace.result_of("b_ddl").ok


DEADLOCK = """
setup: |
  CREATE TABLE t (id int PRIMARY KEY, v int);
  INSERT INTO t VALUES (1, 0), (2, 0);
teardown: DROP TABLE t
sessions:
  a:
    setup: {postgres: "SET deadlock_timeout = '50ms'"}
    steps:
      a1: BEGIN
      a2: UPDATE t SET v = 1 WHERE id = 1
      a3: UPDATE t SET v = 1 WHERE id = 2
      a4: COMMIT
  b:
    setup: {postgres: "SET deadlock_timeout = '10s'"}
    steps:
      b1: BEGIN
      b2: UPDATE t SET v = 2 WHERE id = 2
      b3: UPDATE t SET v = 2 WHERE id = 1
      b4: COMMIT
"""


def test_deadlock_is_a_result_not_a_crash(server_pool, backend) -> None:
    o = run_one(server_pool, backend, scenario(DEADLOCK), "a1 b1 a2 b2 a3 b3 a4 b4")
    errors = o.trace.errors()
    codes = {step: e.code for step, e in errors.items()}
    assert list(codes.values()) == [{"postgres": "40P01", "mysql": "1213"}[backend]], codes
    assert not o.trace.hung
    # exactly one victim; every step still completed
    assert set(o.trace.completion_order()) == {"a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"}


def test_a_hang_is_reported_with_the_wait_for_graph_within_the_bound(server_pool, backend) -> None:
    sc = scenario(ROW_LOCK.replace("checks:", "timeouts: {step: 0.5}\nchecks:"))
    start = time.monotonic()
    # b3 is asked of session b while b2 waits for a, and a's commit comes after: nothing can progress
    o = run_one(server_pool, backend, sc, "a1 b1 a2 b2 b3 a3")
    elapsed = time.monotonic() - start
    assert o.trace.hung and not o.passed
    hang = next(e for e in o.trace.events if e.kind == "hang")
    assert [(w.waiter, w.holder) for w in hang.waits] == [("b", "a")]
    assert any("hang" in p and "b waits for a" in p for p in o.problems)
    assert elapsed < 5, f"hang took {elapsed:.1f}s to report"
    # the stuck session was cleaned up: the same engine-level scenario runs fine afterwards
    assert run_one(server_pool, backend, scenario(ROW_LOCK), "a1 a2 a3 b1 b2 b3").passed


PER_BACKEND = """
setup: |
  CREATE TABLE counter (id int PRIMARY KEY, n int);
  INSERT INTO counter VALUES (1, 0);
teardown: DROP TABLE counter
sessions:
  a:
    isolation: repeatable read
    steps:
      a_begin: BEGIN
      a_read: SELECT n FROM counter
      a_inc: UPDATE counter SET n = n + 1
      a_commit: COMMIT
  b:
    isolation: repeatable read
    steps:
      b_begin: BEGIN
      b_read: SELECT n FROM counter
      b_inc:
        sql: UPDATE counter SET n = n + 1
        expect: {postgres: {error: "40001"}, mysql: ok}
      b_end: {sql: {postgres: ROLLBACK, mysql: COMMIT}}
checks:
  two_increments:
    sql: SELECT n FROM counter
    expect: {equals: 2}
interleavings:
  - steps: a_begin b_begin a_read b_read a_inc a_commit b_inc b_end
    expect: {postgres: "violates: two_increments", mysql: holds}
"""


def test_per_backend_expectations(server_pool, backend) -> None:
    sc = scenario(PER_BACKEND)
    (o,) = run_scenario(sc, backend, server_pool.get(backend))
    assert o.passed, o.problems
    assert o.violated == (["two_increments"] if backend == "postgres" else [])


def test_a_wrong_expectation_fails_with_a_reason_and_a_replay_command(server_pool, backend) -> None:
    sc = scenario(PER_BACKEND.replace('mysql: holds}', 'mysql: "violates: two_increments"}'))
    (o,) = run_scenario(sc, backend, server_pool.get(backend))
    assert o.passed == (backend == "postgres")
    if backend == "mysql":
        assert o.problems == ["expected check two_increments to be violated, but it holds"]
        assert o.replay == ("harness run t.yaml --backend mysql --interleaving "
                            "'a_begin b_begin a_read b_read a_inc a_commit b_inc b_end'")


def test_setup_failure_is_a_scenario_error_naming_the_line(server_pool, backend) -> None:
    sc = scenario("""
        setup: CREATE TABLE broken (
        sessions:
          a:
            steps:
              a1: SELECT 1
        """)
    (o,) = run_scenario(sc, backend, server_pool.get(backend))
    assert not o.passed and o.error and o.error.startswith("t.yaml:2: setup failed:")


def test_all_interleavings_keep_session_order_and_refuse_above_the_limit() -> None:
    sc = scenario(ROW_LOCK)
    everything = all_interleavings(sc, 100)
    assert len(everything) == 20  # C(6, 3)
    assert len({tuple(s.step for s in il.steps) for il in everything}) == 20
    for il in everything:
        names = [s.step for s in il.steps]
        assert names.index("a1") < names.index("a2") < names.index("a3")
    with pytest.raises(ScenarioRunError, match="20 interleavings, more than the limit of 10"):
        all_interleavings(sc, 10)


def test_generated_orders_that_cannot_proceed_are_reported_at_once(server_pool, backend) -> None:
    sc = scenario(ROW_LOCK.split("checks:")[0])  # no interleavings listed: all 20 are generated
    start = time.monotonic()
    outcomes = run_scenario(sc, backend, server_pool.get(backend))
    stuck = [o for o in outcomes if o.trace and o.trace.hung]
    assert len(outcomes) == 20 and stuck
    assert all("with no step in flight: this interleaving cannot proceed" in o.problems[0] for o in stuck)
    assert time.monotonic() - start < 10, "each stuck order waited for the step timeout"
