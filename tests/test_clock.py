"""Clock faults on real servers: frozen database clocks seen inside triggers, advance, unfreeze,
per-session vs all sessions; the FakeClock; the YAML clock action."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from harness.actions import build_actions
from harness.clock import ClockError, DbClock, FakeClock, install_pg_clock, query, to_datetime
from harness.provision import Database
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_yaml

T0 = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)

PG_TRIGGER = """
CREATE TABLE stamped (id int PRIMARY KEY, clock_ts timestamptz, now_ts timestamptz);
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.clock_ts := clock_timestamp();
    NEW.now_ts := now();
    RETURN NEW;
END $$;
CREATE TRIGGER stamped_bi BEFORE INSERT ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
"""
MYSQL_TRIGGER = """
CREATE TABLE stamped (id int PRIMARY KEY, clock_ts datetime(6), now_ts datetime(6));
CREATE TRIGGER stamped_bi BEFORE INSERT ON stamped FOR EACH ROW
    SET NEW.clock_ts = NOW(6), NEW.now_ts = CURRENT_TIMESTAMP(6);
"""


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _stamp(conn: Any, row_id: int) -> tuple[datetime, datetime]:
    query(conn, "INSERT INTO stamped (id) VALUES (%s)", (row_id,))
    clock_ts, now_ts = query(conn, "SELECT clock_ts, now_ts FROM stamped WHERE id = %s", (row_id,))[0]
    return _utc(clock_ts), _utc(now_ts)


@pytest.fixture
def stamped(database: Database, backend: str) -> Database:
    with database.connect() as conn:
        query(conn, PG_TRIGGER if backend == "postgres" else MYSQL_TRIGGER)
    return database


def test_frozen_clock_is_what_a_trigger_reads_then_advance_and_unfreeze(stamped: Database, backend: str) -> None:
    clock = DbClock(backend)
    with stamped.connect() as conn:
        assert clock.freeze(conn, "2024-01-01 00:00:00.123456+00") == T0
        assert _stamp(conn, 1) == (T0, T0)
        assert _stamp(conn, 2) == (T0, T0)  # frozen: no time passes between statements
        clock.advance(conn, 5)
        assert _stamp(conn, 3) == (T0 + timedelta(milliseconds=5),) * 2
        clock.unfreeze(conn)
        before = datetime.now(timezone.utc)
        real, _ = _stamp(conn, 4)
        assert abs(real - before) < timedelta(seconds=30)


def test_per_session_freeze_leaves_other_sessions_alone(stamped: Database, backend: str) -> None:
    clock = DbClock(backend)
    with stamped.connect() as a, stamped.connect() as b:
        clock.freeze(a, T0)
        clock.shadow(b)
        assert _stamp(a, 1)[0] == T0
        assert abs(_stamp(b, 2)[0] - datetime.now(timezone.utc)) < timedelta(seconds=30)


@pytest.mark.backends("postgres")
def test_pg_all_sessions_freeze_reaches_other_sessions_at_once(stamped: Database) -> None:
    clock = DbClock("postgres")
    with stamped.connect() as a, stamped.connect() as b, stamped.connect() as c:
        clock.install(a)
        clock.shadow(b)
        clock.shadow(c)
        query(b, "BEGIN ISOLATION LEVEL REPEATABLE READ")
        query(b, "SELECT count(*) FROM stamped")  # b's snapshot predates the freeze
        clock.freeze(a, T0, all_sessions=True)
        assert _stamp(b, 1)[0] == T0  # a sequence is read outside MVCC: even RR sees the freeze
        query(b, "ROLLBACK")
        assert clock.now(b) == T0  # and ROLLBACK does not undo a global freeze
        clock.freeze(c, "2030-01-01 00:00:00+00")  # a session's own setting wins over the global one
        assert clock.now(c) == to_datetime("2030-01-01 00:00:00+00")
        clock.advance(a, 1000, all_sessions=True)
        assert clock.now(b) == T0 + timedelta(seconds=1)
        clock.unfreeze(c)  # c stops overriding: back to the global clock
        assert clock.now(c) == T0 + timedelta(seconds=1)
        clock.unfreeze(a, all_sessions=True)
        assert abs(clock.now(b) - datetime.now(timezone.utc)) < timedelta(seconds=30)
        clock.advance(b, 3_600_000)  # a running clock can be skewed on PostgreSQL
        assert timedelta(minutes=59) < clock.now(b) - datetime.now(timezone.utc) < timedelta(minutes=61)


@pytest.mark.backends("postgres")
def test_pg_what_can_and_cannot_be_shadowed(pg_database: Database) -> None:
    clock = DbClock("postgres")
    with pg_database.connect() as conn:
        clock.freeze(conn, T0)
        row = query(conn, "SELECT now(), clock_timestamp(), statement_timestamp(), transaction_timestamp(), "
                          "harness_clock.localtimestamp(), harness_clock.current_date(), "
                          "CURRENT_TIMESTAMP, LOCALTIMESTAMP, pg_catalog.now(), 'now'::timestamptz")[0]
        assert [_utc(v) for v in row[:4]] == [T0] * 4
        assert row[4] == T0.replace(tzinfo=None) and row[5] == T0.date()
        # SQL keywords and qualified or literal forms keep the real clock
        for real in row[6:]:
            assert abs(_utc(real) - datetime.now(timezone.utc)) < timedelta(seconds=30)
        # a column DEFAULT binds its function when the table is created: created while shadowed it
        # follows the harness clock, created before (search_path without harness_clock) it does not
        query(conn, "CREATE TABLE d_shadowed (id int, ts timestamptz DEFAULT now())")
        query(conn, "SET search_path = public")
        query(conn, "CREATE TABLE d_real (id int, ts timestamptz DEFAULT now())")
        clock.shadow(conn)
        query(conn, "INSERT INTO d_shadowed (id) VALUES (1); INSERT INTO d_real (id) VALUES (1)")
        assert _utc(query(conn, "SELECT ts FROM d_shadowed")[0][0]) == T0
        assert _utc(query(conn, "SELECT ts FROM d_real")[0][0]) != T0
        # views and BEGIN ATOMIC bodies bind like defaults; plpgsql and string-bodied SQL functions
        # resolve when run, unless the function pins its own search_path
        query(conn, "CREATE VIEW v_shadowed AS SELECT now() AS t")
        query(conn, "CREATE FUNCTION f_plpgsql() RETURNS timestamptz LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN clock_timestamp(); END $$")
        query(conn, "CREATE FUNCTION f_sql() RETURNS timestamptz LANGUAGE sql AS $$ SELECT clock_timestamp() $$")
        query(conn, "SET search_path = public")
        query(conn, "CREATE VIEW v_real AS SELECT now() AS t")
        query(conn, "CREATE FUNCTION f_atomic() RETURNS timestamptz LANGUAGE sql "
                    "BEGIN ATOMIC SELECT clock_timestamp(); END")
        query(conn, "CREATE FUNCTION f_pinned() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog "
                    "AS $$ BEGIN RETURN clock_timestamp(); END $$")
        clock.shadow(conn)
        row = query(conn, "SELECT (SELECT t FROM v_shadowed), f_plpgsql(), f_sql(), "
                          "(SELECT t FROM v_real), f_atomic(), f_pinned(), timeofday()::timestamptz")[0]
        assert [_utc(v) for v in row[:3]] == [T0] * 3
        assert all(_utc(v) != T0 for v in row[3:])


@pytest.mark.backends("postgres")
def test_pg_session_freeze_inside_a_rolled_back_transaction_is_undone(pg_database: Database) -> None:
    clock = DbClock("postgres")
    with pg_database.connect() as conn:
        install_pg_clock(conn)
        clock.shadow(conn)
        query(conn, "BEGIN")
        clock.freeze(conn, T0)
        assert clock.now(conn) == T0
        query(conn, "ROLLBACK")  # harness.clock is a GUC: transactional
        assert clock.now(conn) != T0


@pytest.mark.backends("postgres")
def test_pg_install_is_idempotent_and_refused_inside_a_transaction(pg_database: Database) -> None:
    with pg_database.connect() as conn:
        query(conn, "BEGIN")
        with pytest.raises(ClockError, match="inside an open transaction"):
            install_pg_clock(conn)
        query(conn, "ROLLBACK")
        assert install_pg_clock(conn) is True
        assert install_pg_clock(conn) is False
    # a non-autocommit connection: freeze commits the transaction it opened, so it survives rollback
    with pg_database.connect(autocommit=False) as conn:
        DbClock("postgres").freeze(conn, T0)
        conn.rollback()
        assert DbClock("postgres").now(conn) == T0


@pytest.mark.backends("mysql")
def test_mysql_limits(mysql_database: Database) -> None:
    clock = DbClock("mysql")
    with mysql_database.connect() as conn:
        with pytest.raises(ClockError, match="freeze the session's clock first|Freeze"):
            clock.advance(conn, 5)
        with pytest.raises(ClockError, match="all sessions"):
            clock.freeze(conn, T0, all_sessions=True)
        with pytest.raises(Exception, match="1228"):
            query(conn, "SET GLOBAL timestamp = 1704067200")
        with pytest.raises(Exception, match="1193"):  # --sysdate-is-now is a start option, not a variable
            query(conn, "SELECT @@global.sysdate_is_now")
        clock.freeze(conn, T0)
        row = query(conn, "SELECT NOW(6), UTC_TIMESTAMP(6), CURRENT_TIMESTAMP(6), SYSDATE(6)")[0]
        assert [_utc(v) for v in row[:3]] == [T0] * 3
        assert abs(_utc(row[3]) - datetime.now(timezone.utc)) < timedelta(seconds=30)  # SYSDATE is not frozen
        query(conn, "BEGIN")
        clock.advance(conn, 1)
        query(conn, "ROLLBACK")  # SET TIMESTAMP is not transactional
        assert clock.now(conn) == T0 + timedelta(milliseconds=1)


def test_fake_clock_freeze_advance_skew_and_threads() -> None:
    ticks = iter(range(1_000_000, 2_000_000))
    clock = FakeClock(source=lambda: float(next(ticks)))
    assert clock.time() < clock.time()  # running: follows its source
    clock.freeze("2024-01-01 00:00:00+00")
    assert clock.now() == datetime(2024, 1, 1, tzinfo=timezone.utc)
    clock.skew("b", 250)
    assert clock.for_actor("b").time() - clock.time() == pytest.approx(0.25)
    assert clock.time("a") == clock.time()
    clock.sleep(2)  # frozen: sleeping just advances
    assert clock.now() == datetime(2024, 1, 1, 0, 0, 2, tzinfo=timezone.utc)

    def advance_many() -> None:
        for _ in range(1000):
            clock.advance(1)

    threads = [threading.Thread(target=advance_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now() == datetime(2024, 1, 1, 0, 0, 6, tzinfo=timezone.utc)
    clock.unfreeze()
    assert not clock.frozen
    real = FakeClock()
    assert abs(real.time() - time.time()) < 1


CLOCK_SCENARIO = """
name: clock-action
setup:
  postgres: |
    CREATE TABLE stamped (id int PRIMARY KEY, clock_ts timestamptz, now_ts timestamptz);
    CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.clock_ts := clock_timestamp(); NEW.now_ts := now(); RETURN NEW; END $$;
    CREATE TRIGGER stamped_bi BEFORE INSERT ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
  mysql: |
    CREATE TABLE stamped (id int PRIMARY KEY, clock_ts datetime(6), now_ts datetime(6));
    CREATE TRIGGER stamped_bi BEFORE INSERT ON stamped FOR EACH ROW SET NEW.clock_ts = NOW(6), NEW.now_ts = NOW(6);
teardown:
  postgres: DROP TABLE stamped; DROP FUNCTION stamp()
  mysql: DROP TABLE stamped
sessions:
  a:
    steps:
      a_freeze: {action: clock, args: {freeze: "2024-01-01 00:00:00+00"}}
      a_one: INSERT INTO stamped (id) VALUES (1)
      a_advance: {action: clock, args: {advance_ms: 5}}
      a_two: INSERT INTO stamped (id) VALUES (2)
      a_unfreeze: {action: clock, args: {unfreeze: true}}
      a_three: INSERT INTO stamped (id) VALUES (3)
      a_bad: {action: clock, args: {freeze: "yesterday-ish"}, expect: {error: harness}}
checks:
  frozen_then_advanced:
    sql:
      postgres: >
        SELECT count(*) FROM stamped WHERE (id = 1 AND clock_ts = '2024-01-01 00:00:00+00')
          OR (id = 2 AND clock_ts = '2024-01-01 00:00:00.005+00') OR (id = 3 AND clock_ts > '2025-01-01+00')
      mysql: >
        SELECT count(*) FROM stamped WHERE (id = 1 AND clock_ts = '2024-01-01 00:00:00')
          OR (id = 2 AND clock_ts = '2024-01-01 00:00:00.005') OR (id = 3 AND clock_ts > '2025-01-01')
    expect: {equals: 3}
interleavings:
  - steps: a_freeze a_one a_advance a_two a_unfreeze a_three a_bad
    expect: holds
"""


def test_clock_action_in_a_scenario(database: Database, backend: str) -> None:
    scenario = load_yaml(CLOCK_SCENARIO, "clock-action.yaml")
    (outcome,) = run_scenario(scenario, backend, database.server, database=database,
                              actions=build_actions(backend))
    assert outcome.passed, outcome.problems
    step = outcome.trace.result_of("a_freeze")
    assert step is not None and step.last_rows == [["2024-01-01 00:00:00+00:00"]]
