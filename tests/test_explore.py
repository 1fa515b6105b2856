"""Exploration on real servers: races found and minimal, correct code survives, replay is exact."""

from __future__ import annotations

import pytest

from harness.explore import Divergence, Race
from harness.explore.strategies import IndexChooser

from . import apps
from .expect import assert_searched

RULES = "CREATE TABLE rules (name varchar(50))"
COUNTER = ("CREATE TABLE counter (id int PRIMARY KEY, n int)", "INSERT INTO counter VALUES (1, 0)")
LOCK_KIND = {"postgres": "advisory", "mysql": "get_lock"}


def rules_race(race: Race, app, *, lock_kind: str | None = None) -> Race:
    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    for name in ("A", "B"):
        if lock_kind is None:
            race.actor(name, lambda ctx: app(ctx.connect()))
        else:
            race.actor(name, lambda ctx: app(ctx.connect(), ctx.lock(lock_kind, "rule-r1")))
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    return race


def counter_race(race: Race, app) -> Race:
    for sql in COUNTER:
        race.setup(sql)
    race.teardown("DROP TABLE counter")
    race.actor("A", lambda ctx: app(ctx.connect()))
    race.actor("B", lambda ctx: app(ctx.connect()))
    race.check_sql("both_counted", "SELECT n FROM counter", equals=2)
    return race


def assert_minimal(race: Race, failure) -> None:
    """No single preemption of the reported schedule can be removed with the failure still there."""
    recorder = IndexChooser([])
    replayed = race.run_schedule(_Recorder(failure.schedule, recorder))
    assert not replayed.passed
    for pos, index in enumerate(recorder.taken):
        if index:
            candidate = recorder.taken[:pos] + [0] + recorder.taken[pos + 1:]
            assert race.run_schedule(IndexChooser(candidate)).passed, f"preemption {pos} is removable"


class _Recorder:
    def __init__(self, schedule, recorder) -> None:
        self.schedule, self.recorder = schedule, recorder

    def choose(self, runnable, current, index):
        choice = self.schedule[index] if index < len(self.schedule) else runnable[0]
        if len(runnable) > 1:
            self.recorder.taken.append(list(runnable).index(choice))
        return choice


def test_check_then_insert_race_is_found_minimal_and_replays_exactly(race: Race, tmp_path) -> None:
    rules_race(race, apps.check_then_insert)
    result = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    failure = result.failure
    assert result.first_failure_after <= 100 and result.minimal_verified
    assert failure.preemptions == 1
    assert "check one_rule violated: expected 1, got 2" in failure.violations
    assert_minimal(race, failure)
    outcomes = {(race.replay(failure.schedule).schedule_text, tuple(race.replay(failure.schedule).violations))
                for _ in range(25)}
    assert outcomes == {(failure.schedule_text, tuple(failure.violations))}  # 50 replays, one outcome


def test_lock_then_insert_survives_500_schedules(race: Race, backend: str, tmp_path) -> None:
    rules_race(race, apps.lock_then_insert, lock_kind=LOCK_KIND[backend])
    result = race.assert_no_race(max_schedules=500, database_dir=tmp_path)
    assert_searched(result, 500)


def test_unlock_before_commit_is_found_with_a_database_lock(race: Race, backend: str, tmp_path) -> None:
    rules_race(race, apps.lock_then_insert_unlock_first, lock_kind=LOCK_KIND[backend])
    result = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert result.minimal_verified
    # in the minimal schedule B's lock attempt blocks on A, as the server reports
    blocked = [e for e in result.failure.trace.events if e.kind == "blocked"]
    assert all(w.holder in ("A", "B") for e in blocked for w in e.waits)


def test_lost_update_is_found_and_select_for_update_fixes_it(race: Race, tmp_path) -> None:
    counter_race(race, apps.increment_racy)
    found = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert "check both_counted violated: expected 2, got 1" in found.failure.violations


def test_select_for_update_counter_survives_500_schedules(race: Race, tmp_path) -> None:
    counter_race(race, apps.increment_for_update)
    result = race.assert_no_race(max_schedules=500, database_dir=tmp_path)
    assert_searched(result, 500)


def test_serializability_oracle_flags_the_lost_update_without_an_invariant(race: Race, tmp_path) -> None:
    for sql in COUNTER:
        race.setup(sql)
    race.teardown("DROP TABLE counter")
    race.actor("A", lambda ctx: apps.increment_racy(ctx.connect()))
    race.actor("B", lambda ctx: apps.increment_racy(ctx.connect()))
    race.serializable("SELECT n FROM counter")
    found = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert any(v.startswith("not serializable: final state ((1,),)") for v in found.failure.violations)


@pytest.mark.parametrize("strategy", ["exhaustive", "pct", "random"])
def test_other_strategies_find_the_race_too(race: Race, strategy: str) -> None:
    rules_race(race, apps.check_then_insert)
    result = race.explore(strategy=strategy, max_schedules=200, seed=7, minimize=False)
    assert result.failure is not None, f"{strategy} ran {result.schedules_run} schedules"


def test_exhaustive_with_a_bound_enumerates_every_schedule_of_a_correct_program(race: Race, backend) -> None:
    rules_race(race, apps.lock_then_insert, lock_kind=LOCK_KIND[backend])
    result = race.explore(strategy="exhaustive", preemption_bound=2, max_schedules=10_000)
    assert result.passed and 1 < result.schedules_run < 10_000


def test_database_lock_waits_are_visible_to_the_scheduler(race: Race, backend: str) -> None:
    from harness.explore.strategies import bounded_exhaustive

    rules_race(race, apps.lock_then_insert, lock_kind=LOCK_KIND[backend])
    for outcome in bounded_exhaustive(race.run_schedule, 1, 50):
        blocked = [e for e in outcome.trace.events if e.kind == "blocked"]
        if blocked:
            break
    else:
        raise AssertionError("no schedule had one actor wait for the other's lock")
    assert outcome.passed
    waiter = blocked[0].session
    assert blocked[0].waits[0].holder == ({"A", "B"} - {waiter}).pop()
    assert blocked[0].waits[0].lock == {"postgres": "advisory lock", "mysql": "user lock"}[backend]


@pytest.mark.backends("postgres")
def test_redis_lock_waits_are_visible_and_a_lease_expiry_lets_a_second_holder_in(race: Race, tmp_path) -> None:
    race.setup("CREATE TABLE inside (who varchar(10))")
    race.setup("CREATE TABLE collisions (who varchar(10))")
    race.teardown("DROP TABLE inside")
    race.teardown("DROP TABLE collisions")
    key = f"lease-{race.database.name}"

    def holder(ctx):
        lock = ctx.lock("redis", key, ttl_ms=60_000)
        lock.acquire()
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute(f"INSERT INTO inside VALUES ('{ctx.name}')")
        cur.execute(f"INSERT INTO collisions SELECT who FROM inside WHERE who <> '{ctx.name}'")
        conn.commit()
        cur.execute(f"DELETE FROM inside WHERE who = '{ctx.name}'")
        conn.commit()
        lock.release()

    race.actor("A", holder)
    race.actor("B", holder)
    race.actor("F", lambda ctx: race.expire_lease(key))
    race.check_sql("one_holder_at_a_time", "SELECT who FROM collisions", empty=True)

    # the Redis lock makes one holder wait for the other: seen by the scheduler, not the database
    from harness.explore.strategies import bounded_exhaustive

    for outcome in bounded_exhaustive(race.run_schedule, 1, 100):
        redis_waits = [w for e in outcome.trace.events if e.kind == "blocked" for w in e.waits]
        if redis_waits:
            break
    assert redis_waits[0].lock == "redis lock" and {redis_waits[0].waiter, redis_waits[0].holder} == {"A", "B"}
    # with the fault placed by the explorer, two holders meet
    found = race.assert_finds_race(max_schedules=200, database_dir=tmp_path)
    assert any(e.kind == "fault" and e.detail["fault"] == "lease expiry" for e in found.failure.trace.events)


def test_a_replay_that_cannot_be_followed_says_where(race: Race) -> None:
    rules_race(race, apps.check_then_insert)
    with pytest.raises(Divergence, match="move 1 is 'C', but only A, B can move there"):
        race.run_schedule(IndexChooser([]) if False else _Fixed(["C"]))


class _Fixed:
    def __init__(self, moves) -> None:
        self.moves = moves

    def choose(self, runnable, current, index):
        return self.moves[index] if index < len(self.moves) else runnable[0]


def test_sqlalchemy_code_is_scheduled_unchanged(race: Race, backend: str, tmp_path) -> None:
    import sqlalchemy

    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    engine_holder = {}

    def via_sqlalchemy(ctx):
        engine = engine_holder.setdefault(ctx.name, ctx.engine())
        with engine.begin() as conn:
            n = conn.execute(sqlalchemy.text("SELECT count(*) FROM rules")).scalar()
            if n == 0:
                conn.execute(sqlalchemy.text("INSERT INTO rules (name) VALUES ('r1')"))

    race.actor("A", via_sqlalchemy)
    race.actor("B", via_sqlalchemy)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    found = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert found.minimal_verified and not any(r.error for r in found.failure.results.values())
    labels = " ".join(found.failure.labels)
    assert "SELECT count(*) FROM rules" in labels and "COMMIT" in labels


@pytest.mark.backends("postgres")
def test_psycopg2_connections_are_instrumented_too(race: Race, tmp_path) -> None:
    import psycopg2

    from harness.explore.instrument import instrument

    info = race.database.info
    race.setup(RULES)
    race.teardown("DROP TABLE rules")

    def via_psycopg2(ctx):
        raw = race.track(psycopg2.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                                          dbname=info.dbname))
        apps.check_then_insert(instrument(raw, race._sched))

    race.actor("A", via_psycopg2)
    race.actor("B", via_psycopg2)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    found = race.assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert found.failure.preemptions == 1 and found.minimal_verified
