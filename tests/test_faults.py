"""Faults placed by the schedule (explorer), on real servers: lost commit acks, killed sessions,
injected statement errors; shrinking drops the faults a failure does not need."""

from __future__ import annotations

import psycopg
import pymysql

from harness.explore import Race

from .expect import assert_searched

LEDGER = "CREATE TABLE ledger (payment_id varchar(20), amount int)"
CONNECTION_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, pymysql.err.InterfaceError)


def pay(ctx, *, idempotent: bool) -> str:
    """Apply payment p1, retrying on a dropped connection (the classic double-apply after a lost ack)."""
    for _ in range(3):
        conn = ctx.connect()
        try:
            cur = conn.cursor()
            if idempotent:  # the fix: a retry first checks whether the payment already landed
                cur.execute("SELECT count(*) FROM ledger WHERE payment_id = 'p1'")
                if int(cur.fetchone()[0]):
                    conn.commit()
                    return "already applied"
            cur.execute("INSERT INTO ledger VALUES ('p1', 100)")
            conn.commit()
            return "applied"
        except CONNECTION_ERRORS:
            continue
    raise RuntimeError("gave up")


def ledger_race(race: Race, *, idempotent: bool) -> Race:
    race.setup(LEDGER)
    race.teardown("DROP TABLE ledger")
    race.actor("A", lambda ctx: pay(ctx, idempotent=idempotent))
    race.fault("ack", race.lose_commit_ack("A"))
    race.check_sql("applied_once", "SELECT count(*) FROM ledger", equals=1)
    return race


def test_retry_after_a_lost_commit_ack_double_applies(race: Race, tmp_path) -> None:
    found = ledger_race(race, idempotent=False).assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert "check applied_once violated: expected 1, got 2" in found.failure.violations
    assert "ack" in found.failure.schedule
    assert any(e.kind == "fault" and e.detail.get("fired") for e in found.failure.trace.events)
    replayed = race.replay(found.failure.schedule)
    assert replayed.violations == found.failure.violations


def test_the_idempotent_retry_survives_every_placement_of_the_fault(race: Race, tmp_path) -> None:
    result = ledger_race(race, idempotent=True).assert_no_race(max_schedules=200, database_dir=tmp_path)
    assert_searched(result, 200)


def test_shrinking_drops_a_fault_the_failure_does_not_need(race: Race, tmp_path) -> None:
    ledger_race(race, idempotent=False)
    race.actor("B", lambda ctx: _read_tolerating_errors(ctx))
    race.fault("noise", race.inject_error("B", {"postgres": "40001", "mysql": "1213"}[race.backend]))
    found = race.assert_finds_race(max_schedules=200, database_dir=tmp_path)
    assert "ack" in found.failure.schedule and "noise" not in found.failure.schedule


def _read_tolerating_errors(ctx) -> None:
    conn = ctx.connect()
    try:
        conn.cursor().execute("SELECT count(*) FROM ledger")
        conn.commit()
    except Exception:
        conn.rollback()


def test_a_killed_session_surfaces_as_a_connection_error(race: Race, tmp_path) -> None:
    race.setup(LEDGER)
    race.teardown("DROP TABLE ledger")

    def write(ctx) -> None:
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("INSERT INTO ledger VALUES ('p1', 1)")
        conn.commit()

    race.actor("A", write)
    race.fault("kill", race.kill_session("A"))
    found = race.assert_finds_race(max_schedules=50, database_dir=tmp_path)
    error = found.failure.results["A"].error
    assert isinstance(error, CONNECTION_ERRORS), repr(error)
    assert any(e.kind == "fault" and e.detail.get("fault") == "kill session" for e in found.failure.trace.events)


def test_an_injected_error_has_the_backends_own_code(race: Race, tmp_path) -> None:
    code = {"postgres": "40001", "mysql": "1213"}[race.backend]
    race.setup(LEDGER)
    race.teardown("DROP TABLE ledger")
    race.actor("A", lambda ctx: (ctx.connect().cursor().execute("INSERT INTO ledger VALUES ('p1', 1)")))
    race.fault("serialization", race.inject_error("A", code, "injected"))
    found = race.assert_finds_race(max_schedules=50, database_dir=tmp_path)
    info = found.failure.results["A"].error_info
    assert info is not None and info.code == code


REGISTER = {"postgres": "CREATE TABLE register (id int PRIMARY KEY, value varchar(10), stamp timestamptz, version int)",
            "mysql": "CREATE TABLE register (id int PRIMARY KEY, value varchar(10), stamp datetime(6), version int)"}


def register_race(race: Race, *, by_version: bool = False, skew: bool = True) -> Race:
    from scenarios.faults.register import last_write_wins, write

    race.setup(REGISTER[race.backend])
    race.setup({"postgres": "CREATE TABLE writes (seq serial PRIMARY KEY, value varchar(10))",
                "mysql": "CREATE TABLE writes (seq int AUTO_INCREMENT PRIMARY KEY, value varchar(10))"}[race.backend])
    race.setup("INSERT INTO register VALUES (1, 'init', '2000-01-01 00:00:00', 0)")
    race.teardown("DROP TABLE register, writes")
    race.actor("A", lambda ctx: write(ctx, value="A", by_version=by_version))
    race.actor("B", lambda ctx: write(ctx, value="B", by_version=by_version))
    if skew:
        race.fault("skew", race.skew_clock("A", 3_600_000))  # A's session clock runs an hour ahead
    race.check(last_write_wins)
    return race


def test_last_writer_wins_by_clock_holds_while_clocks_agree(race: Race, tmp_path) -> None:
    result = register_race(race, skew=False).assert_no_race(max_schedules=50, database_dir=tmp_path)
    assert_searched(result, 50)
    assert result.exhausted


def test_a_skewed_session_clock_drops_a_later_write(race: Race, tmp_path) -> None:
    found = register_race(race).assert_finds_race(max_schedules=100, database_dir=tmp_path)
    schedule = found.failure.schedule
    assert "skew" in schedule and schedule.index("skew") < schedule.index("A")
    assert "register holds 'A', but the last write was 'B'" in found.failure.violations[0]
    assert any(e.kind == "fault" and e.detail.get("fault") == "clock skew +3.6e+06 ms" and e.detail.get("fired")
               for e in found.failure.trace.events)
    assert race.replay(schedule).violations == found.failure.violations


def test_ordering_by_version_survives_the_skew(race: Race, tmp_path) -> None:
    result = register_race(race, by_version=True).assert_no_race(max_schedules=100, database_dir=tmp_path)
    assert_searched(result, 100)


def test_an_application_clock_skew_moves_only_the_victims_clock(race: Race) -> None:
    from harness.clock import FakeClock

    clock = FakeClock()
    clock.freeze(1_000_000.0)
    race.setup("SELECT 1")
    readings: dict[str, float] = {}
    race.actor("A", lambda ctx: (ctx.point("read"), readings.__setitem__("A", clock.time("A"))))
    race.actor("B", lambda ctx: (ctx.point("read"), readings.__setitem__("B", clock.time("B"))))
    race.fault("skew", race.skew_clock("A", -2500, clock=clock))
    outcome = race.replay("skew A A B B")
    assert outcome.passed and readings == {"A": 999_997.5, "B": 1_000_000.0}
    assert [e.detail["fault"] for e in outcome.trace.events if e.kind == "fault"] == ["clock skew"]
