"""One race through an app's own SQLAlchemy engine vs through a raw connection (issue 15: <= 1.5x).

The same check-then-insert race of two requests on PostgreSQL, written twice as an app would: with a
raw psycopg2 connection opened in the request (``psycopg2.connect``, captured by the race), and through
a SQLAlchemy engine over psycopg2 built once from a URL, pooled across schedules (``engine.begin()``).
Both are explored exhaustively over the same bounded space; we count the decision points per schedule
(the pool's bookkeeping must add none) and time the schedules.  The baseline is the raw path.

Run: python -m benchmarks app_paths [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, server  # noqa: E402
from benchmarks.races import race_rate  # noqa: E402
from harness.explore import Race  # noqa: E402

NAME = "app_paths"
RULES: dict = {"setup": ["CREATE TABLE rules (name varchar(20))"], "teardown": ["DROP TABLE rules"], "name": NAME}


def _raw(race: Race) -> Callable[[], None]:
    info = race.database.info

    def request() -> None:
        import psycopg2

        conn = psycopg2.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                                dbname=info.dbname)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM rules WHERE name = %s", ("r1",))
            if cur.fetchone()[0] == 0:
                cur.execute("INSERT INTO rules (name) VALUES (%s)", ("r1",))
            conn.commit()
        finally:
            conn.close()
    return request


def _engine(race: Race) -> Callable[[], None]:
    import sqlalchemy
    from sqlalchemy import text

    engine = sqlalchemy.create_engine(_url(race))

    def request() -> None:
        with engine.begin() as conn:
            if conn.execute(text("SELECT count(*) FROM rules WHERE name = :n"), {"n": "r1"}).scalar() == 0:
                conn.execute(text("INSERT INTO rules (name) VALUES (:n)"), {"n": "r1"})
    return request


def _url(race: Race) -> str:
    from harness.scenario.hooks import SetupContext

    return SetupContext("postgres", race.database.info, None).url()


def run(quick: bool) -> list[Figure]:
    rounds = 1 if quick else 5
    database = server("postgres").create_database()
    try:
        raw_s, raw_points, n = race_rate(database, _raw, rounds=rounds, budget=60, **RULES)
        eng_s, eng_points, _ = race_rate(database, _engine, rounds=rounds, budget=60, **RULES)
    finally:
        database.drop()
    note = (f"exhaustive, preemption bound 2, {n} schedules per exploration, median of {rounds}; target: the engine "
            "path no slower than 1/1.5 of the raw one (the raw request connects each time, as such code does)")
    return [
        Figure(NAME, "SQLAlchemy engine (psycopg2, pooled): schedules/s", "1/s", round(1 / eng_s, 1),
               round(1 / raw_s, 1), "raw psycopg2 connection", note=note),
        Figure(NAME, "SQLAlchemy engine: decision points per serial schedule", "points", eng_points, raw_points,
               "raw psycopg2 connection", note="the serial schedule's moves; the pool's queries are none"),
    ]


if __name__ == "__main__":
    for figure in run("--quick" in sys.argv):
        print(figure)
