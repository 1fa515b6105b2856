"""Determinism on real servers: a decision depends on the schedule prefix and the server, never on timing.

Each test here failed on the scheduler before the settle rewrite:
- a slow COMMIT (a deferred trigger / a procedure that sleeps before committing) let the conductor's
  lock-wait poll run while the COMMIT was still in flight; that poll cleared the "check the blocked"
  flag and the released waiter stayed blocked at the next decision ("move 6 ... only A can move");
- the deadlock victim was whichever session's deadlock_timeout fired first (PostgreSQL: 1 s after
  its wait began), not a function of the schedule, and each PostgreSQL deadlock cost a full second.
"""

from __future__ import annotations

import time

import pytest

from harness.errors import HarnessError
from harness.explore import Divergence, Race
from harness.explore.race import StopReason

SLOW_COMMIT = {
    # the deferred constraint trigger runs inside COMMIT, before the row lock is released
    "postgres": [
        "CREATE TABLE counter (id int PRIMARY KEY, n int)",
        "INSERT INTO counter VALUES (1, 0)",
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.06); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow AFTER UPDATE ON counter DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION slow_commit()",
    ],
    # a procedure that sleeps, then commits: the same window on MariaDB (no deferred triggers there)
    "mysql": [
        "CREATE TABLE counter (id int PRIMARY KEY, n int)",
        "INSERT INTO counter VALUES (1, 0)",
        "CREATE PROCEDURE slow_commit() BEGIN DO SLEEP(0.06); COMMIT; END",
    ],
}
TEARDOWN = {"postgres": ["DROP TABLE counter", "DROP FUNCTION slow_commit"],
            "mysql": ["DROP TABLE counter", "DROP PROCEDURE slow_commit"]}


def slow_commit_race(race: Race, backend: str) -> Race:
    for sql in SLOW_COMMIT[backend]:
        race.setup(sql)
    for sql in TEARDOWN[backend]:
        race.teardown(sql)
    commit_sql = "COMMIT" if backend == "postgres" else "CALL slow_commit()"

    def writer(ctx) -> None:  # type: ignore[no-untyped-def]
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        cur.execute(commit_sql)  # slow: the waiter is released only at its end
        cur.execute("SELECT n FROM counter WHERE id = 1")
        conn.commit()

    race.actor("A", writer)
    race.actor("B", writer)
    race.check_sql("both_counted", "SELECT n FROM counter", equals=2)
    return race


def test_a_waiter_released_by_a_slow_commit_is_runnable_at_the_next_decision(race: Race, backend: str) -> None:
    slow_commit_race(race, backend)
    # A starts, updates; B starts, updates (blocks on A's row); A commits slowly (B is released at its
    # end); move 6 is B's: it must be runnable there, every time
    schedule = "A A B B A B B B A A"
    outcomes = set()
    for _ in range(8):
        outcome = race.replay(schedule)
        blocked = [(e.session, e.kind) for e in outcome.trace.events if e.kind in ("blocked", "complete")]
        outcomes.add((outcome.schedule_text, outcome.passed, tuple(blocked)))
    assert len(outcomes) == 1, outcomes
    text, passed, events = outcomes.pop()
    assert passed and text.startswith(schedule)
    assert ("B", "blocked") in events


def test_slow_commits_explore_without_divergence(race: Race, tmp_path) -> None:
    slow_commit_race(race, race.backend)
    result = race.explore(max_schedules=30, database_dir=tmp_path, strategy="exhaustive", preemption_bound=2)
    assert result.failure is None
    assert result.stop_reason in (StopReason.BUDGET, StopReason.EXHAUSTED)
    assert 0 < result.schedules_run <= 30


DEADLOCK_CODES = {"postgres": "40P01", "mysql": "1213"}


def opposite_order_race(race: Race, backend: str) -> Race:
    race.setup("CREATE TABLE acct (id int PRIMARY KEY, n int)")
    race.setup("INSERT INTO acct VALUES (1, 0), (2, 0)")
    race.teardown("DROP TABLE acct")
    race.allowed_errors.append(DEADLOCK_CODES[backend])

    def transfer(first: int, second: int):  # type: ignore[no-untyped-def]
        def body(ctx) -> None:  # type: ignore[no-untyped-def]
            conn = ctx.connect()
            cur = conn.cursor()
            cur.execute(f"UPDATE acct SET n = n + 1 WHERE id = {first}")
            cur.execute(f"UPDATE acct SET n = n + 1 WHERE id = {second}")
            conn.commit()
        return body

    race.actor("A", transfer(1, 2))
    race.actor("B", transfer(2, 1))
    return race


def _victims(outcome) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    return tuple(sorted(n for n, r in outcome.results.items()
                        if r.error_info is not None and r.error_info.code in DEADLOCK_CODES.values()))


def test_deadlock_victim_is_a_function_of_the_schedule(race: Race, backend: str) -> None:
    opposite_order_race(race, backend)
    # A updates row 1, B updates row 2, A waits for row 2, B's wait for row 1 closes the cycle
    schedule = "A A B B A B"
    victims, texts = set(), set()
    started = time.perf_counter()
    for _ in range(6):
        outcome = race.replay(schedule)
        victims.add(_victims(outcome))
        texts.add(outcome.schedule_text)
    per_replay = (time.perf_counter() - started) / 6
    assert len(victims) == 1 and len(texts) == 1, (victims, texts)
    victim = victims.pop()
    assert len(victim) == 1
    if backend == "postgres":
        # the harness resolves the cycle as soon as the schedule settles: the session whose wait closed
        # it is the victim, and it sees PostgreSQL's own deadlock error; no deadlock_timeout is waited
        assert victim == ("B",)
        assert per_replay < 0.5, f"{per_replay:.2f} s per replay: the deadlock waited for the server's timer"
        deadlock = [e for e in outcome.trace.events if e.kind == "deadlock"]
        assert deadlock and deadlock[0].detail["victim"] == "B"
        # and the server's own timer is pushed past the harness's hang bound for the race's sessions
        conn = race.dialect.connect(race.database.info)
        try:
            assert conn.execute("SHOW deadlock_timeout").fetchone()[0] == "5s"
        finally:
            conn.close()


def test_every_deadlock_schedule_gives_one_victim(race: Race, backend: str) -> None:
    opposite_order_race(race, backend)
    schedules = []
    from harness.explore.strategies import bounded_exhaustive

    for outcome in bounded_exhaustive(race.run_schedule, 2, 40):
        schedules.append((outcome.schedule_text, _victims(outcome)))
    assert any(v for _, v in schedules), "no schedule deadlocked"
    for text, victims in schedules:
        for _ in range(2):
            again = race.replay(text)
            assert (again.schedule_text, _victims(again)) == (text, victims)


def test_a_schedule_that_cannot_be_followed_is_a_clear_error(race: Race, backend: str) -> None:
    opposite_order_race(race, backend)
    with pytest.raises(Divergence) as info:
        race.replay("A A A A A A A B")  # A finishes after 4 moves here... then only B is left
    assert isinstance(info.value, HarnessError)
    message = str(info.value)
    assert "move" in message and "can move" in message and "Traceback" not in message


def test_a_stuck_python_actor_is_reported_by_name_and_place_within_the_bound(race: Race) -> None:
    race.options.hang_timeout = 1.0
    race.setup("CREATE TABLE t (n int)")
    race.teardown("DROP TABLE t")

    def spins(ctx) -> None:  # type: ignore[no-untyped-def]
        conn = ctx.connect()
        conn.cursor().execute("INSERT INTO t VALUES (1)")
        while True:  # no database call, no lock: the scheduler cannot take this actor back
            time.sleep(0.01)

    def writes(ctx) -> None:  # type: ignore[no-untyped-def]
        conn = ctx.connect()
        conn.cursor().execute("INSERT INTO t VALUES (2)")
        conn.commit()

    race.actor("A", spins)
    race.actor("B", writes)
    started = time.perf_counter()
    outcome = race.replay("A A")
    elapsed = time.perf_counter() - started
    assert elapsed < 4, f"reported after {elapsed:.1f} s with a 1 s bound"
    hang = next(e for e in outcome.trace.events if e.kind == "hang")
    reason = hang.detail["reason"]
    assert "actor A is in Python with no database call or lock" in reason
    assert "test_determinism.py" in reason and "in spins" in reason
    assert any("hang" in v and "actor A" in v for v in outcome.violations)
