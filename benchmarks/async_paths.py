"""The same two-actor race as sync psycopg 3, async psycopg 3 and asyncpg: schedules/s side by side.

The check-then-insert race of two requests on PostgreSQL, written three times as a request handler
would be: sync psycopg 3 (``psycopg.connect``), ``async def`` with psycopg 3's ``AsyncConnection``, and
``async def`` with asyncpg -- each connecting per request, each connection captured by the race.  All
three are explored exhaustively over the same bounded space (an async actor runs its own event loop on
its actor thread: the loop's start and the async connect are its extra cost).  The baseline is sync
psycopg 3, measured in the same run.

Run: python -m benchmarks async_paths [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, server  # noqa: E402
from benchmarks.races import race_rate  # noqa: E402
from harness.explore import Race  # noqa: E402

NAME = "async_paths"
RULES: dict = {"setup": ["CREATE TABLE rules (name varchar(20))"], "teardown": ["DROP TABLE rules"], "name": NAME}
COUNT = "SELECT count(*) FROM rules WHERE name = 'r1'"
INSERT = "INSERT INTO rules (name) VALUES ('r1')"


def _dsn(race: Race) -> str:
    from harness.scenario.hooks import SetupContext

    return SetupContext("postgres", race.database.info, None).url("postgresql")


def _sync_psycopg(race: Race) -> Callable[[], Any]:
    url = _dsn(race)

    def request() -> None:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(COUNT).fetchone()
            if row is not None and row[0] == 0:
                conn.execute(INSERT)
    return request


def _async_psycopg(race: Race) -> Callable[[], Any]:
    url = _dsn(race)

    async def request() -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url) as conn:
            row = await (await conn.execute(COUNT)).fetchone()
            if row is not None and row[0] == 0:
                await conn.execute(INSERT)
    return request


def _asyncpg(race: Race) -> Callable[[], Any]:
    url = _dsn(race)

    async def request() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                if await conn.fetchval(COUNT) == 0:
                    await conn.execute(INSERT)
        finally:
            await conn.close()
    return request


def run(quick: bool) -> list[Figure]:
    rounds, budget = (1, 10) if quick else (5, 60)
    database = server("postgres").create_database()
    try:
        sync_s, sync_points, n = race_rate(database, _sync_psycopg, rounds=rounds, budget=budget, **RULES)
        apg_s, apg_points, _ = race_rate(database, _async_psycopg, rounds=rounds, budget=budget, **RULES)
        asyncpg_s, asyncpg_points, _ = race_rate(database, _asyncpg, rounds=rounds, budget=budget, **RULES)
    finally:
        database.drop()
    note = (f"exhaustive, preemption bound 2, ~{n} schedules per exploration, median of {rounds}; each request "
            "connects, as such code does; decision points per serial schedule: sync psycopg 3 "
            f"{sync_points}, async psycopg 3 {apg_points}, asyncpg {asyncpg_points} (asyncpg's BEGIN is one)")
    base = round(1 / sync_s, 1)
    return [
        Figure(NAME, "async psycopg 3 (AsyncConnection): schedules/s", "1/s", round(1 / apg_s, 1), base,
               "sync psycopg 3", note=note),
        Figure(NAME, "asyncpg: schedules/s", "1/s", round(1 / asyncpg_s, 1), base, "sync psycopg 3", note=note),
    ]


if __name__ == "__main__":
    for figure in run("--quick" in sys.argv):
        print(figure)
