"""One two-actor race through four stacks, side by side in one run (issue 16): sync psycopg 3, async
psycopg 3 (``AsyncConnection``), asyncpg and the Django ORM.

The race is django_orm's lost update on PostgreSQL (read the counter, write it back + 1, in one
transaction), written for each stack as its request handler would be, each connecting per request (Django:
a connection per actor thread), every connection captured by the race.  Each is explored exhaustively over
the same bounded space (measurement: :func:`benchmarks.django_orm.measure`); the baseline is sync psycopg 3.

Run: python -m benchmarks stacks [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, server  # noqa: E402
from benchmarks.django_orm import TABLE, _django, _psycopg, measure  # noqa: E402
from harness.explore import Race  # noqa: E402

NAME = "stacks"
READ = f"SELECT id, n FROM {TABLE} WHERE name = 'hits'"


def _url(race: Race) -> str:
    from harness.scenario.hooks import SetupContext

    return SetupContext("postgres", race.database.info, None).url("postgresql")


def _async_psycopg(race: Race) -> Callable[[], Any]:
    url = _url(race)

    async def request() -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            row = await (await conn.execute(READ)).fetchone()
            assert row is not None
            await conn.execute(f"UPDATE {TABLE} SET n = %s WHERE id = %s", (row[1] + 1, row[0]))
    return request


def _asyncpg(race: Race) -> Callable[[], Any]:
    url = _url(race)

    async def request() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                row = await conn.fetchrow(READ)
                await conn.execute(f"UPDATE {TABLE} SET n = $1 WHERE id = $2", row["n"] + 1, row["id"])
        finally:
            await conn.close()
    return request


def run(quick: bool) -> list[Figure]:
    from harness.django import configure, setup

    setup("examples.django_app.settings")
    from examples.django_app.models import Counter

    rounds, budget = (1, 10) if quick else (5, 60)
    database = server("postgres").create_database()
    measured: dict[str, tuple[float, int, int]] = {}
    try:
        with Race(database, name="stacks-schema") as race, configure(race) as db:
            db.create_tables(Counter)
        for label, make in (("sync psycopg 3", _psycopg), ("async psycopg 3 (AsyncConnection)", _async_psycopg),
                            ("asyncpg", _asyncpg), ("Django ORM (psycopg 3 backend)", _django)):
            measured[label] = measure(database, make, rounds, budget)
    finally:
        database.drop()
    base_s, _, n = measured["sync psycopg 3"]
    points = ", ".join(f"{label.split(' (')[0]} {p}" for label, (_, p, _) in measured.items())
    note = (f"lost update, exhaustive, preemption bound 2, {n} schedules per exploration, median of {rounds}; "
            f"decision points of the serial schedule: {points}")
    return [Figure(NAME, f"{label}: schedules/s", "1/s", round(1 / s, 1), round(1 / base_s, 1), "sync psycopg 3",
                   note=note) for label, (s, _, _) in measured.items() if label != "sync psycopg 3"]


if __name__ == "__main__":
    for figure in run("--quick" in sys.argv):
        print(figure)
