"""Listed and explored runs of one scenario agree: the same step results, waits, checks and errors.

Each test here failed before: an explored Redis lock step's wait was invisible (a hang per schedule on
correct code), a failing explored step was ignored ("100 schedules passed"), ``{equals: true}`` held
listed but not explored on MariaDB, a check named with a space was misreported, and error codes
differed by path (``allowed_errors: ["1062"]`` matched nothing for a Python actor).
"""

from __future__ import annotations

import textwrap
import time

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy
import sqlalchemy.exc

from harness.dialect.base import error_info
from harness.explore import Race
from harness.explore.scenario import explore_scenario
from harness.runner import parse_interleaving, run_scenario
from harness.scenario.yaml_loader import load_yaml
from tests.shapes import ACCOUNTS_AND_SESSION_A


def scenario(text: str, name: str = "t.yaml"):  # type: ignore[no-untyped-def]
    return load_yaml(textwrap.dedent(text), name)


REDIS_LOCKED = """
setup: |
  CREATE TABLE rules (name varchar(20));
teardown: DROP TABLE rules
sessions:
  a:
    steps:
      a_lock: {action: lock, args: {kind: redis, key: r1}}
      a_count: SELECT count(*) FROM rules
      a_insert: INSERT INTO rules VALUES ('r1')
      a_unlock: {action: unlock, args: {kind: redis, key: r1}}
  b:
    steps:
      b_lock: {action: lock, args: {kind: redis, key: r1}}
      b_count: SELECT count(*) FROM rules
      b_unlock: {action: unlock, args: {kind: redis, key: r1}}
checks:
  one rule: {sql: SELECT count(*) FROM rules, expect: {equals: 1}}
interleavings:
  - a_lock b_lock a_count a_insert a_unlock b_count b_unlock
explore: {schedules: 40}
"""


def test_an_explored_redis_lock_step_waits_visibly(server_pool, backend, redis_server, tmp_path) -> None:
    sc = scenario(REDIS_LOCKED)
    started = time.perf_counter()
    outcome = explore_scenario(sc, backend, server_pool.get(backend), redis=lambda: redis_server.info,
                               database_dir=str(tmp_path))
    elapsed = time.perf_counter() - started
    assert outcome.passed, outcome.problems
    assert outcome.stop_reason in ("budget spent", "space exhausted")
    assert elapsed < 30, f"{elapsed:.1f} s: lock waits were not seen by the scheduler"
    # the wait itself is in the trace of a schedule where b asks while a holds the lock
    replay = explore_scenario(sc, backend, server_pool.get(backend), redis=lambda: redis_server.info,
                              schedule="a a b b a a a b b b")
    assert replay.passed, replay.problems


DEADLOCK = ACCOUNTS_AND_SESSION_A + """  b:
    steps: {b1: BEGIN, b2: UPDATE acct SET n = n + 1 WHERE id = 2, b3: UPDATE acct SET n = n + 1 WHERE id = 1,
            b4: COMMIT}
explore: {schedules: 100}
"""


def test_a_failing_explored_step_is_a_finding(server_pool, backend, tmp_path) -> None:
    outcome = explore_scenario(scenario(DEADLOCK), backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert not outcome.passed
    code = {"postgres": "40P01", "mysql": "1213"}[backend]
    assert any(f"failed with {code}" in p for p in outcome.problems), outcome.problems


def test_a_step_expectation_applies_when_explored(server_pool, backend, tmp_path) -> None:
    code = {"postgres": "40P01", "mysql": "1213"}[backend]
    allowed = DEADLOCK.replace("b3: UPDATE acct SET n = n + 1 WHERE id = 1",
                               "b3: {sql: UPDATE acct SET n = n + 1 WHERE id = 1, expect: {error: any}}")
    allowed = allowed.replace("a3: UPDATE acct SET n = n + 1 WHERE id = 2",
                              "a3: {sql: UPDATE acct SET n = n + 1 WHERE id = 2, expect: {error: any}}")
    outcome = explore_scenario(scenario(allowed), backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert outcome.passed, outcome.problems
    assert code  # both backends deadlock in some schedule; the expectation admits it


BOOLEAN = """
setup: |
  CREATE TABLE flags (id int PRIMARY KEY, on_ boolean);
  INSERT INTO flags VALUES (1, false);
teardown: DROP TABLE flags
sessions:
  a:
    steps: {a1: "UPDATE flags SET on_ = true WHERE id = 1"}
  b:
    steps: {b1: SELECT 1}
checks:
  flag set: {sql: SELECT on_ FROM flags WHERE id = 1, expect: {equals: true}}
  nothing else: {sql: SELECT id FROM flags WHERE id <> 1, expect: empty}
interleavings:
  - a1 b1
explore: {schedules: 10}
"""


def test_equals_true_holds_listed_and_explored(server_pool, backend, tmp_path) -> None:
    sc = scenario(BOOLEAN)
    (listed,) = run_scenario(sc, backend, server_pool.get(backend), interleavings=[parse_interleaving(sc, "a1 b1")])
    explored = explore_scenario(sc, backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert listed.passed, listed.problems
    assert explored.passed, explored.problems


def test_a_check_named_with_spaces_is_reported_by_its_name(server_pool, backend, tmp_path) -> None:
    broken = BOOLEAN.replace("expect: {equals: true}", "expect: {equals: false}")
    outcome = explore_scenario(scenario(broken), backend, server_pool.get(backend), database_dir=str(tmp_path))
    assert not outcome.passed and outcome.violated == ["flag set"]


def test_allowed_errors_name_either_the_error_number_or_the_sqlstate(race: Race, backend: str) -> None:
    race.setup("CREATE TABLE u (id int PRIMARY KEY)")
    race.teardown("DROP TABLE u")

    def insert(ctx) -> None:  # type: ignore[no-untyped-def]
        conn = ctx.connect()
        conn.cursor().execute("INSERT INTO u VALUES (1)")
        conn.commit()

    race.actor("A", insert)
    race.actor("B", insert)
    native = {"postgres": "23505", "mysql": "1062"}[backend]
    race.allowed_errors.append(native)
    result = race.explore(max_schedules=20, strategy="exhaustive")
    assert result.failure is None
    # the other actor's duplicate is reported with both identities
    outcome = race.replay("A A A B B B")
    info = next(r.error_info for r in outcome.results.values() if r.error is not None)
    assert info is not None and info.code == native
    assert info.sqlstate == {"postgres": "23505", "mysql": "23000"}[backend]


def test_psycopg2_and_sqlalchemy_errors_keep_their_sqlstate(pg_database) -> None:
    info = pg_database.info
    conn = psycopg2.connect(host=info.host, port=info.port, user=info.user, password=info.password or None,
                            dbname=info.dbname)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1)")
        with pytest.raises(psycopg2.errors.UniqueViolation) as raw:
            cur.execute("INSERT INTO u VALUES (1)")
        conn.rollback()
    finally:
        conn.close()
    wrapped = sqlalchemy.exc.IntegrityError("INSERT INTO u VALUES (1)", {}, raw.value)
    for exc in (raw.value, wrapped):
        got = error_info(exc)
        assert (got.code, got.sqlstate, got.driver) == ("23505", "23505", "psycopg2.errors.UniqueViolation")


def test_the_text_trace_shows_lock_spans_and_bound_parameters(race: Race, backend: str) -> None:
    from harness.report.text import trace_lines

    race.setup("CREATE TABLE rules (name varchar(20))")
    race.teardown("DROP TABLE rules")

    def save(ctx) -> None:  # type: ignore[no-untyped-def]
        lock = ctx.lock("redis", "rule-r1")
        conn = ctx.connect()
        with lock:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM rules WHERE name = %s", ("r1",))
            if int(cur.fetchone()[0]) == 0:
                cur.execute("INSERT INTO rules VALUES (%s)", ("r1",))
        conn.commit()  # after the unlock: bk-ci's bug

    race.actor("A", save)
    race.actor("B", save)
    outcome = race.replay("A A A A A B B B B B A")
    text = "\n".join(trace_lines(outcome.trace))
    assert "LOCK redis lock harness:" in text and "UNLOCK redis lock harness:" in text, text
    assert "INSERT INTO rules VALUES (%s) [('r1',)]" in text, text
    assert "SELECT count(*) FROM rules WHERE name = %s [('r1',)]  -> 0" in text, text  # the rows it returned
    locks = [(e.session, e.detail["op"]) for e in outcome.trace.events if e.kind == "lock"]
    assert locks[:2] == [("A", "acquire"), ("A", "release")], locks


LEAVES_STATE = """
setup:
  - CREATE TABLE t (id int PRIMARY KEY, n int)
  - INSERT INTO t VALUES (1, 0)
teardown: DROP TABLE t
sessions:
  a:
    setup: SET lock_timeout = '5s'
    steps:
      a_prep: PREPARE bump AS UPDATE t SET n = n + 1 WHERE id = 1
      a_temp: CREATE TEMP TABLE scratch (x int)
      a_lock: SELECT pg_advisory_lock(7)
      a_run: EXECUTE bump
  b:
    steps:
      b_prep: PREPARE bump AS UPDATE t SET n = n + 1 WHERE id = 1
      b_temp: CREATE TEMP TABLE scratch (x int)
      b_listen: LISTEN chan
      b_run: EXECUTE bump
checks:
  both:
    sql: SELECT n FROM t
    expect: {equals: 2}
explore:
  strategy: exhaustive
  schedules: 100
  expect: holds
"""


def test_each_schedule_starts_with_sessions_like_new_ones(server_pool, tmp_path) -> None:
    """PostgreSQL scenario sessions keep their connection between schedules (a backend fork per session
    per schedule cost more than the schedule); what their steps leave -- prepared statements, temp
    tables, LISTEN, advisory locks -- must not reach the next schedule, or its PREPARE fails (42P05)."""
    outcome = explore_scenario(scenario(LEAVES_STATE), "postgres", server_pool.get("postgres"),
                               database_dir=str(tmp_path))
    assert outcome.passed, outcome.problems
    assert outcome.schedules_run > 10
    # listed interleavings reuse their sessions too: the same reset between them
    sc = scenario(LEAVES_STATE)
    orders = ["a_prep a_temp a_lock a_run b_prep b_temp b_listen b_run",
              "b_prep a_prep b_temp a_temp b_listen a_lock b_run a_run"]
    listed = run_scenario(sc, "postgres", server_pool.get("postgres"),
                          interleavings=[parse_interleaving(sc, o) for o in orders * 2])
    assert [o.passed for o in listed] == [True] * 4, [o.problems for o in listed]
