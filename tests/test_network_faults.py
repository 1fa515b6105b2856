"""Network faults placed by the explorer, on real servers: a partitioned actor (seen as blocked, healed
when nobody else can move), a cut link, a delayed link that outlives a Redis lease, a Redis outage."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
import redis

from harness.explore import Race

from .expect import assert_searched

CONNECTION_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, pymysql.err.InterfaceError)


def increment(ctx) -> None:
    conn = ctx.connect()
    cur = conn.cursor()
    cur.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
    n = cur.fetchone()[0]
    cur.execute(f"UPDATE counter SET n = {n + 1} WHERE id = 1")
    conn.commit()


def counter_race(race: Race, *, check: str = "both", expected: int = 2) -> Race:
    race.setup("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    race.setup("INSERT INTO counter VALUES (1, 0)")
    race.teardown("DROP TABLE counter")
    race.actor("A", increment)
    race.actor("B", increment)
    race.check_sql(check, "SELECT n FROM counter", equals=expected)
    return race


def waits(outcome) -> list[tuple[str, str]]:
    return [(e.session, w.lock) for e in outcome.trace.events if e.kind == "blocked" for w in e.waits]


def faults(outcome) -> list[str]:
    return [e.detail["fault"] for e in outcome.trace.events if e.kind == "fault"]


def test_a_partitioned_lock_holder_blocks_others_until_it_heals(race: Race) -> None:
    counter_race(race).fault("partition", race.partition("A"))
    # A locks the row; its link is cut off; B waits for the row, A for the network: nobody can move,
    # so the partition heals and both finish
    outcome = race.replay("A A partition B")
    assert outcome.passed, outcome.describe()
    assert ("A", "network partition") in waits(outcome)
    assert any(session == "B" and "row lock" in lock for session, lock in waits(outcome))
    assert faults(outcome) == ["partition", "heal"]
    assert race.replay("A A partition B").schedule == outcome.schedule  # the same, every time


def test_a_connect_during_a_partition_waits_for_the_heal(race: Race) -> None:
    counter_race(race).fault("partition", race.partition("A"))
    outcome = race.replay("partition A B")
    assert outcome.passed, outcome.describe()
    assert outcome.schedule[:3] == ["partition", "A", "B"] and outcome.schedule[-1] == "A"
    assert ("A", "network partition") in waits(outcome)


def test_every_placement_of_a_partition_ends_without_a_hang(race: Race, tmp_path) -> None:
    counter_race(race).fault("partition", race.partition("A"))
    result = race.assert_no_race(max_schedules=60, database_dir=tmp_path)
    assert_searched(result, 60)


def test_a_cut_link_fails_the_next_call_and_the_server_rolls_back(race: Race) -> None:
    counter_race(race, check="only_b", expected=1).fault("cut", race.cut("A"))
    outcome = race.replay("A A A cut A B")  # A read and updated; its COMMIT meets a reset link
    assert isinstance(outcome.results["A"].error, CONNECTION_ERRORS), outcome.results["A"]
    assert [v for v in outcome.violations if "only_b" in v] == []  # A's update was rolled back
    assert faults(outcome) == ["cut link"]


def test_a_delayed_holder_outlives_its_redis_lease(race: Race) -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    def critical(ctx, name: str) -> None:
        lock = ctx.lock("redis", "job", ttl_ms=300)
        lock.acquire(timeout=10)
        conn = ctx.connect(autocommit=True)
        conn.cursor().execute("SELECT 1")  # a delayed link makes this take >= 600 ms: the lease lapses
        inside.append(name)
        ctx.point("work")
        if len(inside) > 1:
            overlaps.append(tuple(inside))
        inside.remove(name)
        lock.release()

    race.actor("A", lambda ctx: critical(ctx, "A"))
    race.actor("B", lambda ctx: critical(ctx, "B"))
    race.fault("slow", race.delay("A", 600))
    # A: to its acquire, acquire+connect, [delay], SELECT (>= 600 ms) and in; B: to its acquire, finds
    # the lease gone and takes the lock, SELECT and in, sees A inside
    outcome = race.replay("A A slow A B B B B")
    assert overlaps == [("A", "B")], outcome.describe()
    assert faults(outcome) == ["delay 600 ms"]
    overlaps.clear()
    race.replay("A A A B")  # the same moves without the delay: B waits for the lock, no overlap
    assert overlaps == []


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_redis_outage_surfaces_as_the_clients_connection_error(race: Race, fail_open: bool) -> None:
    from scenarios.bkci.outage import DegradingLock

    seen: dict[str, object] = {}

    def take(ctx) -> None:
        lock = DegradingLock(ctx.lock("redis", "rule"), fail_open=fail_open)
        try:
            seen["acquired"] = lock.acquire(timeout=5)
            seen["degraded"] = lock.degraded
        except Exception as exc:
            seen["error"] = type(exc).__name__

    race.actor("A", take)
    race.fault("outage", race.redis_outage())
    outcome = race.replay("outage A A")
    assert faults(outcome) == ["redis outage"]
    assert seen == ({"acquired": True, "degraded": True} if fail_open else {"error": "RuleLockTimeout"})
    seen.clear()
    race.replay("A A")  # the next schedule starts with the lock service up again
    assert seen == {"acquired": True, "degraded": False}


def test_redis_outage_without_redis_is_a_clear_error(database) -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="needs a Redis server"):
        Race(database).redis_outage()


def test_redis_errors_are_not_retried_for_seconds(race: Race) -> None:
    """redis-py 6+ retries a refused connection with back-off by default; race locks do not."""
    lock_client = []
    race.actor("A", lambda ctx: lock_client.append(ctx.lock("redis", "k")))
    race.replay("A")
    retry = lock_client[0].client.get_connection_kwargs().get("retry")
    assert retry is not None and retry.get_retries() == 0
    assert redis.__version__


def test_killing_a_session_while_its_statement_waits_in_the_server(race: Race) -> None:
    """A fault lands *during* a statement: B waits for A's row lock when the server ends its session."""
    counter_race(race, check="only_a", expected=1).fault("kill", race.kill_session("B"))
    outcome = race.replay("A A B B kill")  # A locked the row; B's SELECT ... FOR UPDATE waits; kill B
    assert any(session == "B" and "row lock" in lock for session, lock in waits(outcome))
    assert isinstance(outcome.results["B"].error, CONNECTION_ERRORS), outcome.results["B"]
    assert outcome.results["A"].error is None and outcome.violations == [
        f"actor B raised {outcome.results['B'].error_info.message}"]


def test_a_partition_outlasting_the_lease_lets_a_second_holder_in(race: Race, tmp_path) -> None:
    """Kleppmann's fencing case: A holds a Redis lease and has checked; its link is cut off long
    enough for the lease to lapse; B takes the lock, checks, inserts; A's held insert lands after."""
    def run_job(ctx) -> None:
        lock = ctx.lock("redis", "job", ttl_ms=200)
        lock.acquire(timeout=10)
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM jobs")
        if int(cur.fetchone()[0]) == 0:
            cur.execute("INSERT INTO jobs VALUES (1)")
        conn.commit()
        lock.release()

    race.setup("CREATE TABLE jobs (id int)")
    race.teardown("DROP TABLE jobs")
    race.actor("A", run_job)
    race.actor("B", run_job)
    race.check_sql("one_job", "SELECT count(*) FROM jobs", equals=1)
    race.fault("partition", race.partition("A", outlast_leases=True))
    found = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert "partition" in found.failure.schedule
    assert "check one_job violated: expected 1, got 2" in found.failure.violations
    assert ("A", "network partition") in waits(found.failure)
    assert race.replay(found.failure.schedule).violations == found.failure.violations


def test_a_short_partition_heals_before_the_lease_lapses(race: Race) -> None:
    """Without outlast_leases the same placement heals first: B waits for A's lock, one job."""
    def run_job(ctx) -> None:
        lock = ctx.lock("redis", "job", ttl_ms=5000)
        lock.acquire(timeout=10)
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM jobs")
        if int(cur.fetchone()[0]) == 0:
            cur.execute("INSERT INTO jobs VALUES (1)")
        conn.commit()
        lock.release()

    race.setup("CREATE TABLE jobs (id int)")
    race.teardown("DROP TABLE jobs")
    race.actor("A", run_job)
    race.actor("B", run_job)
    race.check_sql("one_job", "SELECT count(*) FROM jobs", equals=1)
    race.fault("partition", race.partition("A"))
    outcome = race.replay("A A A partition B B")
    assert outcome.passed, outcome.describe()
    assert faults(outcome) == ["partition", "heal"]
