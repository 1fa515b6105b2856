"""``async def`` actors on asyncio drivers: psycopg 3's AsyncConnection, asyncpg, SQLAlchemy's asyncio engine.

Each app here is async code as it is written for production -- it connects with the driver's own
``connect`` (or builds an engine from a URL) and awaits its calls; the race captures those drivers, so
every awaited statement is a scheduling point and waits in the server are seen as for sync actors.
The race is the classic check-then-insert: two requests both see no row and both insert.  The locked
version takes a transaction-scoped advisory lock first (a wait the scheduler must see in the server).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import asyncpg
import psycopg
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from harness.errors import AsyncActorError, ScheduleAborted
from harness.explore import Race
from harness.explore.scenario import explore_scenario
from harness.scenario.yaml_loader import load_file

pytestmark = pytest.mark.backends("postgres")
ROOT = Path(__file__).resolve().parent.parent

RULES = "CREATE TABLE rules (name varchar(20))"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('rules'))"
COUNT = "SELECT count(*) FROM rules WHERE name = 'r1'"
INSERT = "INSERT INTO rules (name) VALUES ('r1')"


def dsn(race: Race, driver: str | None = None) -> str:
    info = race.database.info
    url = sqlalchemy.engine.URL.create(driver or "postgresql", username=info.user, password=info.password or None,
                                       host=info.host, port=info.port, database=info.dbname)
    return url.render_as_string(hide_password=False)


async def save_psycopg(url: str, locked: bool) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.cursor() as cur:
            if locked:
                await cur.execute(LOCK)
            await cur.execute(COUNT)
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                await cur.execute(INSERT)
        # leaving `async with` commits


async def save_asyncpg(url: str, locked: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            if locked:
                await conn.execute(LOCK)
            if await conn.fetchval(COUNT) == 0:
                await conn.execute(INSERT)
    finally:
        await conn.close()


async def save_engine(engine: AsyncEngine, locked: bool) -> None:
    async with engine.begin() as conn:
        if locked:
            await conn.execute(text(LOCK))
        if (await conn.execute(text(COUNT))).scalar() == 0:
            await conn.execute(text(INSERT))


def rules_race(race: Race, save: Callable[..., Awaitable[None]]) -> None:
    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    race.actor("A", save)
    race.actor("B", save)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)


def apps(race: Race, locked: bool) -> dict[str, Callable[[], Awaitable[None]]]:
    def on(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
        return lambda: save_engine(engine, locked)

    # engines as an app makes them: from a URL, once, with their default pool (kept across schedules)
    engines = {name: create_async_engine(dsn(race, name)) for name in ("postgresql+asyncpg", "postgresql+psycopg")}
    return {"psycopg": lambda: save_psycopg(dsn(race), locked),
            "asyncpg": lambda: save_asyncpg(dsn(race), locked),
            **{f"sqlalchemy {name}": on(engine) for name, engine in engines.items()}}


APPS = ["psycopg", "asyncpg", "sqlalchemy postgresql+asyncpg", "sqlalchemy postgresql+psycopg"]


@pytest.mark.parametrize("app", APPS)
def test_check_then_insert_is_found_and_replays(race: Race, app: str) -> None:
    rules_race(race, apps(race, locked=False)[app])
    found = race.explore(max_schedules=60)
    assert found.failure is not None, "the check-then-insert race was not found"
    assert "check one_rule violated: expected 1, got 2" in found.failure.violations
    statements = [label for label in found.failure.labels if label != "start"]
    assert any(COUNT in s for s in statements) and any(INSERT in s for s in statements), statements
    assert found.failure.preemptions == 1  # shrunk to the minimal interleaving: one switch mid-request
    for _ in range(5):  # the same outcome, every time (the engines' pools warm, connections new)
        again = race.replay(found.failure.schedule)
        assert again.schedule == found.failure.schedule and again.labels == found.failure.labels
        assert again.violations == found.failure.violations


@pytest.mark.parametrize("app", APPS)
def test_the_locked_version_passes_and_its_wait_is_seen(race: Race, app: str) -> None:
    rules_race(race, apps(race, locked=True)[app])
    race.assert_no_race(max_schedules=40)
    # A takes the lock (its first k moves: start, [BEGIN,] the lock), then B runs as far: B's wait in the
    # server is a blocked event in the trace, and A alone can move
    for k in range(1, 5):
        outcome = race.replay(["A"] * k + ["B"] * k)
        assert outcome.passed, outcome.violations
        blocked = [e for e in outcome.trace.events if e.kind == "blocked"]
        if blocked:
            assert blocked[0].session == "B" and LOCK in (blocked[0].sql or ""), blocked[0]
            assert outcome.options[2 * k] == ["A"], outcome.options
            break
    else:
        raise AssertionError(f"B never waited for A's lock: {outcome.labels}")


def test_an_injected_error_speaks_asyncpg(race: Race) -> None:
    """A fault on an async actor: the injected error is asyncpg's own class for the SQLSTATE."""
    seen: list[Any] = []

    async def save() -> None:
        try:
            await save_asyncpg(dsn(race), False)
        except asyncpg.SerializationError as exc:
            seen.append(exc)
            raise

    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    race.actor("A", save)
    race.fault("boom", race.inject_error("A", "40001"))
    outcome = race.replay("boom A A")
    assert seen and outcome.results["A"].error is seen[0]


@pytest.mark.parametrize("app", ["asyncpg", "sqlalchemy postgresql+asyncpg"])
def test_a_killed_session_fails_the_async_actor_and_replays(race: Race, app: str) -> None:
    """kill_session between A's INSERT and its COMMIT: A sees its driver's connection error, nothing is
    stored; the same schedule replays the same, also on the engine's pool after the kill."""
    rules_race(race, apps(race, locked=False)[app])
    race.fault("kill", race.kill_session("A"))
    schedule = "A A A A kill A B B B B B"  # A: start, BEGIN, count, insert | kill | A's COMMIT fails; B runs
    first = race.replay(schedule)
    error = first.results["A"].error
    driver_error = error
    while driver_error is not None and not type(driver_error).__module__.startswith("asyncpg"):
        driver_error = driver_error.__cause__  # SQLAlchemy's wrappers keep asyncpg's error as their cause
    assert driver_error is not None and race.dialect.is_connection_error(driver_error), repr(error)
    # A's error is the only finding: B stored the one rule (the check holds)
    assert len(first.violations) == 1 and first.violations[0].startswith("actor A raised"), first.violations
    again = race.replay(schedule)
    assert (again.schedule, again.labels, again.violations) == (first.schedule, first.labels, first.violations)
    assert type(again.results["A"].error) is type(error)


def test_an_async_actor_is_known_by_its_context_in_worker_threads(race: Race) -> None:
    """Identity is a ContextVar: sync driver calls an async actor hands to a thread (asyncio.to_thread
    copies the context) are that actor's scheduling points too."""
    info = race.database.info

    def count_sync() -> int:
        with psycopg.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                             dbname=info.dbname) as conn:
            row = conn.execute(COUNT).fetchone()
            return int(row[0]) if row else 0

    async def save() -> None:
        if await asyncio.to_thread(count_sync) == 0:
            await save_asyncpg(dsn(race), False)

    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    race.actor("A", save)
    outcome = race.replay("A")
    assert outcome.labels[:2] == ["start", COUNT], outcome.labels


def test_yaml_async_actors(server_pool: Any, tmp_path: Any) -> None:
    """``actors: {A: {call: "module:async_function"}}`` in a scenario file: found, and the locked version holds."""
    for name, violated in (("async_rules.yaml", ["one_rule"]), ("async_rules_fixed.yaml", [])):
        scenario = load_file(ROOT / "scenarios" / "apps" / name)
        outcome = explore_scenario(scenario, "postgres", server_pool.get("postgres"), database_dir=str(tmp_path))
        assert outcome.passed and outcome.violated == violated, (name, outcome.problems)


def test_an_unsupported_async_driver_is_a_clear_error(race: Race) -> None:
    """aiomysql (directly, or under SQLAlchemy's mysql+aiomysql) would run unseen: refused, naming what works."""
    import aiomysql

    engine = create_async_engine("mysql+aiomysql://u:p@127.0.0.1/db")

    async def direct() -> None:
        await aiomysql.connect(host="127.0.0.1")

    async def through_engine() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    for actor in (direct, through_engine):
        race.actors.clear()
        race.actor("A", actor)
        with pytest.raises(AsyncActorError, match="aiomysql.connect .*Supported async drivers: psycopg 3"):
            race.replay("A")


def test_a_hung_async_actor_is_reported_and_stopped(race: Race) -> None:
    """An await that never reaches the database: a hang after hang_timeout, and the actor's loop is
    woken so the abort stops it at once (not when its sleep ends)."""
    race.options.hang_timeout = 1.0

    async def sleeper() -> None:
        await asyncio.sleep(120)

    race.actor("A", sleeper)
    started = time.monotonic()
    outcome = race.replay("A")
    assert outcome.violations and outcome.violations[0].startswith("hang:"), outcome.violations
    # the actor ended with the abort (without the wake its thread would still sleep when the conductor
    # gives up joining it, after 5 s, and it would have no result)
    assert isinstance(outcome.results["A"].error, ScheduleAborted), outcome.results
    assert time.monotonic() - started < 5.5, "the aborted async actor slept on"


def test_the_docs_example_runs(database: Any) -> None:
    """docs/asyncio.md's complete example, run as written (each test on a race of its own)."""
    text_ = (ROOT / "docs" / "asyncio.md").read_text()
    code = text_.split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict[str, Any] = {}
    exec(compile(code, "docs/asyncio.md", "exec"), ns)
    for test, args in ((ns["test_save_rule"], (False,)), (ns["test_save_rule"], (True,)),
                       (ns["test_save_rule_through_an_async_engine"], ())):
        with Race(database, name=f"docs-{test.__name__}-{args}") as race:
            test(race, *args)


def test_a_lost_commit_ack_on_an_async_actor_is_an_unknown_outcome(race: Race) -> None:
    """lose_commit_ack: A's COMMIT is durable, its connection is closed before the answer; asyncpg's
    connection error reaches A, and the op A marked has an unknown outcome, which check_durable accepts."""
    url = dsn(race)

    async def pay(ctx: Any) -> None:
        with ctx.op("insert", "r1"):
            await save_asyncpg(url, False)

    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    race.actor("A", pay)
    race.fault("ack", race.lose_commit_ack("A"))
    race.check_durable("durable", "SELECT name FROM rules")
    outcome = race.replay("A A A A ack A")  # A: start, BEGIN, count, insert | ack | COMMIT
    error = outcome.results["A"].error
    assert isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError), repr(error)
    assert [op.status for op in outcome.results["A"].ops] == ["unknown"]
    # A's error is the only finding: the row is there and the unknown op may have it (check_durable holds)
    assert len(outcome.violations) == 1 and outcome.violations[0].startswith(
        "actor A raised ConnectionDoesNotExistError"), outcome.violations


def test_a_deadlock_between_async_actors_names_a_victim_with_asyncpg_s_error(race: Race) -> None:
    """Two asyncpg actors update two rows in opposite orders: the harness sees the cycle in the server and
    breaks it; the victim gets asyncpg's DeadlockDetectedError, the same one on every replay."""
    url = dsn(race)

    def transfer(first: int, second: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    await conn.execute("UPDATE acct SET n = n + 1 WHERE id = $1", first)
                    await conn.execute("UPDATE acct SET n = n + 1 WHERE id = $1", second)
            finally:
                await conn.close()
        return run

    race.setup("CREATE TABLE acct (id int PRIMARY KEY, n int); INSERT INTO acct VALUES (1, 0), (2, 0)")
    race.teardown("DROP TABLE acct")
    race.actor("A", transfer(1, 2))
    race.actor("B", transfer(2, 1))
    schedule = "A A A B B B A"  # each takes its first row, then asks for the other's
    outcomes = [race.replay(schedule) for _ in range(2)]
    victims = [{n: type(r.error).__name__ for n, r in o.results.items() if r.error is not None} for o in outcomes]
    assert victims[0] == victims[1] and list(victims[0].values()) == ["DeadlockDetectedError"], victims
    assert outcomes[0].labels == outcomes[1].labels


def test_race_instrument_takes_a_connection_from_an_asyncpg_pool(race: Race) -> None:
    """asyncpg's own pool opens connections without asyncpg.connect: ``ctx.instrument(conn)`` puts one
    under the scheduler."""
    url = dsn(race)

    async def save(ctx: Any) -> None:
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
            async with pool.acquire() as raw:
                conn = ctx.instrument(raw)
                async with conn.transaction():
                    if await conn.fetchval(COUNT) == 0:
                        await conn.execute(INSERT)

    rules_race(race, save)
    found = race.explore(max_schedules=60)
    assert found.failure is not None and "check one_rule violated: expected 1, got 2" in found.failure.violations
