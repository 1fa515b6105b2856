"""Fault steps in replayed interleavings (kill_session, inject_error, lose_commit_ack), on real servers:
the trace records them, step results are the driver's / server's own errors, data shows what the server
really did; the loader checks their args; explored scenarios fire them through the Race."""

from __future__ import annotations

import textwrap
import time

import pytest

from harness.errors import ScenarioError
from harness.explore.scenario import explore_scenario
from harness.runner import parse_interleaving, run_scenario
from harness.scenario.yaml_loader import load_yaml
from harness.trace import ErrorInfo, Event, Trace

CODES = {"postgres": "40001", "mysql": "1213"}
MESSAGES = {"postgres": "could not serialize access due to concurrent update",
            "mysql": "Deadlock found when trying to get lock; try restarting transaction"}

ACCOUNTS = """
setup: |
  CREATE TABLE t (id int PRIMARY KEY, v int);
  INSERT INTO t VALUES (1, 0);
teardown: DROP TABLE t
sessions:
  a:
    steps:
      a_begin: BEGIN
      a_update: UPDATE t SET v = v + 1 WHERE id = 1
      a_commit: COMMIT
      a_read: SELECT v FROM t WHERE id = 1
  b:
    steps:
      b_begin: BEGIN
      b_update: UPDATE t SET v = v + 10 WHERE id = 1
      b_commit: COMMIT
  f:
    steps:
      f_kill_a: {action: kill_session, args: {session: a}}
      f_kill_b: {action: kill_session, args: {session: b}}
      f_ack_a: {action: lose_commit_ack, args: {session: a}}
      f_fail_a:
        action: inject_error
        args:
          session: a
          code: {postgres: "40001", mysql: 1213}
          message:
            postgres: could not serialize access due to concurrent update
            mysql: Deadlock found when trying to get lock; try restarting transaction
checks:
  v:
    sql: SELECT v FROM t WHERE id = 1
    expect: nonempty  # each test reads the value it expects from the check's rows
"""


def scenario(text: str = ACCOUNTS, name: str = "t.yaml"):
    return load_yaml(textwrap.dedent(text), name)


def run(server_pool, backend, *orders: str):
    """Run the interleavings in order on one engine (so the next one sees what the last one left)."""
    sc = scenario()
    outcomes = run_scenario(sc, backend, server_pool.get(backend),
                            interleavings=[parse_interleaving(sc, o) for o in orders])
    for o in outcomes:
        assert o.error is None, o.error
    return [o.trace for o in outcomes]


def value(trace: Trace) -> str | None:
    """What the check query (on the control connection, after the steps) read."""
    (check,) = trace.checks()
    return check.result.last_rows[0][0]


def faults(trace: Trace) -> list[Event]:
    return [e for e in trace.events if e.kind == "fault"]


def completion(trace: Trace, step: str) -> Event:
    return next(e for e in trace.events if e.kind == "complete" and e.step == step)


def test_a_killed_session_is_rolled_back_and_its_later_steps_fail(server_pool, backend) -> None:
    killed, after = run(server_pool, backend, "a_begin a_update f_kill_a b_begin b_update b_commit a_commit a_read",
                        "a_begin a_update a_commit")
    (fault,) = faults(killed)
    assert (fault.session, fault.step, fault.detail["fault"], fault.detail["victim"]) == ("a", "f_kill_a",
                                                                                            "kill_session", "a")
    assert killed.result_of("f_kill_a").last_rows == [["kill_session", "a"]]
    # a's open UPDATE is gone with its session: b neither waits nor loses its write
    assert not killed.was_blocked("b_update") and value(killed) == "10"
    commit = completion(killed, "a_commit")  # the first step after the kill meets the driver's error
    assert commit.result.error.code == "connection" and commit.detail["connection_lost"]
    assert "connection lost: " in commit.result.error.message
    read = completion(killed, "a_read")  # later steps fail at once, saying where the connection went
    assert read.result.error == ErrorInfo("connection", "session a's connection was killed at step f_kill_a; its "
                                          "later steps fail until the next interleaving, which starts on a new "
                                          "connection")
    assert read.detail["not_sent"]
    # the next interleaving (setup runs again) starts a on a new connection
    assert all(e.result.ok for e in after.completions()) and value(after) == "1"


def test_killing_a_blocked_session_completes_its_waiting_step_with_the_error(server_pool, backend) -> None:
    start = time.monotonic()
    (trace,) = run(server_pool, backend, "a_begin a_update b_begin b_update f_kill_b a_commit")
    assert time.monotonic() - start < 5, "the kill waited for a timeout"
    kinds = [(e.kind, e.step) for e in trace.events if e.kind in ("blocked", "fault", "complete")]
    assert kinds.index(("blocked", "b_update")) < kinds.index(("fault", "f_kill_b")) \
        < kinds.index(("complete", "b_update")) < kinds.index(("complete", "a_commit"))
    assert faults(trace)[0].detail["in_flight"] == "b_update"
    blocked = completion(trace, "b_update")
    assert blocked.result.error.code == "connection" and blocked.detail["after_wait"]
    assert trace.result_of("a_commit").ok and value(trace) == "1"


def test_killing_the_lock_holder_lets_the_waiter_go_on(server_pool, backend) -> None:
    (trace,) = run(server_pool, backend, "a_begin a_update b_begin b_update f_kill_a b_commit")
    assert trace.was_blocked("b_update") and trace.result_of("b_update").ok
    assert trace.result_of("b_commit").ok and value(trace) == "10"


def test_an_injected_error_is_the_steps_result_and_never_reaches_the_server(server_pool, backend) -> None:
    (trace,) = run(server_pool, backend, "a_begin f_fail_a a_update a_read a_commit")
    assert trace.result_of("a_update").error == ErrorInfo(CODES[backend], MESSAGES[backend], "ERROR")
    assert completion(trace, "a_update").detail["injected"]
    armed, fired = faults(trace)
    assert (armed.step, armed.detail["fault"], armed.detail["armed"], armed.detail["code"]) == (
        "f_fail_a", "inject_error", True, CODES[backend])
    assert (fired.session, fired.step, fired.detail["fired"], fired.detail["by_step"]) == ("a", "a_update", True,
                                                                                          "f_fail_a")
    # the UPDATE was not run, and the transaction goes on (the server never saw an error)
    assert trace.result_of("a_read").last_rows == [["0"]]
    assert trace.result_of("a_commit").ok and value(trace) == "0"


def test_a_lost_commit_ack_is_durable_but_the_client_sees_a_lost_connection(server_pool, backend) -> None:
    trace, after = run(server_pool, backend, "a_begin a_update f_ack_a a_commit a_read", "a_read")
    armed, fired = faults(trace)
    assert (armed.step, armed.detail["fault"], armed.detail["armed"]) == ("f_ack_a", "lose_commit_ack", True)
    assert (fired.step, fired.detail["fired"], fired.detail["server_result"]) == ("a_commit", True, "ok")
    commit = completion(trace, "a_commit")
    assert commit.result.error.code == "connection" and commit.detail["connection_lost"]
    assert "(injected: lost ack)" in commit.result.error.message
    assert trace.result_of("a_read").error.message.startswith(
        "session a's connection was closed at step a_commit (lose_commit_ack of step f_ack_a)")
    assert value(trace) == "1"  # committed all the same
    assert after.result_of("a_read").last_rows == [["0"]]  # a new connection, after setup ran again


def test_a_lost_ack_inside_a_transaction_rolls_it_back_before_anyone_goes_on(server_pool, backend) -> None:
    (trace,) = run(server_pool, backend, "a_begin f_ack_a a_update b_begin b_update b_commit")
    assert trace.result_of("a_update").error.code == "connection"
    assert not trace.was_blocked("b_update") and value(trace) == "10"


@pytest.mark.parametrize("step, line, fragment", [
    ("{action: kill_session, args: {session: c}}", 8,
     "step 'f1': kill_session names session 'c', which is not one of the sessions: a, b."),
    ("{action: kill_session, args: {session: bb}}", 8, "Did you mean 'b'?"),
    ("{action: lose_commit_ack}", 8, "step 'f1': lose_commit_ack needs args: {session: <name>}, naming one of "
                                     "the sessions: a, b."),
    ("{action: kill_session, args: {sesion: b}}", 8, "unknown key 'sesion' in step 'f1' args; expected one of: "
                                                     "session. Did you mean 'session'?"),
    ("{action: inject_error, args: {session: b}}", 8, "step 'f1': inject_error needs `code:`, the error its victim "
                                                      "sees: a SQLSTATE on PostgreSQL, an error number on the MySQL "
                                                      "family"),
    ("{action: inject_error, args: {session: b, code: 1213}}", 8,
     "step 'f1' code '1213' is not a SQLSTATE (five characters, e.g. \"40001\"), as postgres needs"),
    ("{action: inject_error, args: {session: b, code: \"40P01\"}}", 8,
     "step 'f1' code '40P01' is not an error number (e.g. 1213), as mysql needs"),
    ("{action: inject_error, args: {session: b, code: {postgres: \"40001\"}}}", 8,
     "step 'f1' code has no value for mysql; add `mysql: <code>`"),
])
def test_fault_step_args_are_checked_when_the_file_is_loaded(step: str, line: int, fragment: str) -> None:
    text = f"""\
sessions:
  a:
    steps:
      a1: BEGIN
  b:
    steps:
      b1: SELECT 1
      f1: {step}
"""
    with pytest.raises(ScenarioError) as err:
        load_yaml(text, "faults.yaml")
    assert str(err.value).startswith(f"faults.yaml:{line}: ") and fragment in str(err.value), str(err.value)


def test_fault_args_keep_codes_as_written_and_per_backend() -> None:
    sc = scenario("""
        backends: [postgres]
        sessions:
          a:
            steps:
              a1: {action: inject_error, args: {session: a, code: 01000, message: hello}}
              a2: {action: inject_error, args: {session: a, code: {postgres: "40001", mysql: 1213}}}
        """)
    assert dict(sc.step("a1").args) == {"session": "a", "code": "01000", "message": "hello"}
    assert dict(sc.step("a2").args) == {"session": "a", "code": {"postgres": "40001", "mysql": "1213"}}


EXPLORED = """
setup: |
  CREATE TABLE t (id int PRIMARY KEY, v int);
  INSERT INTO t VALUES (1, 0);
teardown: DROP TABLE t
sessions:
  a:
    steps:
      a_fault: {fault}
  b:
    steps:
      b_begin: BEGIN
      b_update: UPDATE t SET v = v + 1 WHERE id = 1
      b_commit: COMMIT
checks:
  updated: {{sql: SELECT v FROM t, expect: {{equals: 1}}}}
explore: {{schedules: 30, expect: "violates: updated"}}
"""


@pytest.mark.parametrize("fault, fired", [
    ('{action: inject_error, args: {session: b, code: {postgres: "40001", mysql: 1213}}}', "error"),
    ("{action: kill_session, args: {session: b}}", "kill session"),
])
def test_an_explored_session_step_fault_fires_through_the_race(server_pool, backend, tmp_path, fault, fired) -> None:
    sc = scenario(EXPLORED.format(fault=fault))
    outcome = explore_scenario(sc, backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert outcome.passed, outcome.problems  # the violation is found, and no session actor raised
    assert outcome.violated == ["updated"]
    events = [e.detail for e in outcome.trace.events if e.kind == "fault"]
    assert {"fault": fired, "fired": True} in events if fired == "error" else {"fault": fired, "victim": "b"} in events
    failed = [e for e in outcome.trace.events if e.kind == "complete" and e.result and e.result.error]
    assert failed and failed[0].session == "b"
    if fired == "error":
        assert failed[0].result.error.code == CODES[backend]
