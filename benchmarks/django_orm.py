"""One race through the Django ORM vs through sync psycopg 3 (issue 16): schedules/s, side by side.

The same two-actor lost-update race on PostgreSQL, written twice as an app would: a Django view
(``transaction.atomic()``, ``Counter.objects.get``, ``counter.save()``: Django's psycopg 3 backend, a
fresh connection in each actor's thread, as every request thread has) and the same transaction with a
psycopg 3 connection opened in the request (``psycopg.connect``, captured by the race).  Both are
explored exhaustively over the same bounded space; we count the decision points of the serial schedule
(Django's connect-time queries must add none) and time the schedules.  The baseline is psycopg 3.

Run: python -m benchmarks django_orm [--quick]
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

NAME = "django_orm"
TABLE = "django_app_counter"  # examples/django_app's Counter


def _psycopg(race: Race) -> Callable[[], None]:
    info = race.database.info

    def request() -> None:
        import psycopg

        with psycopg.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                             dbname=info.dbname) as conn, conn.transaction():
            row = conn.execute(f"SELECT id, name, n FROM {TABLE} WHERE name = %s", ("hits",)).fetchone()
            assert row is not None
            conn.execute(f"UPDATE {TABLE} SET name = %s, n = %s WHERE id = %s", (row[1], row[2] + 1, row[0]))
    return request


def _django(race: Race) -> Callable[[], None]:
    from django.db import transaction

    from examples.django_app.models import Counter

    def request() -> None:
        with transaction.atomic():
            counter = Counter.objects.get(name="hits")
            counter.n += 1
            counter.save()
    return request


def measure(database: Any, make: Callable[[Race], Callable[[], Any]], rounds: int,
            budget: int) -> tuple[float, int, int]:
    """The lost-update race of ``make``'s handler, inside Django's settings for the race database."""
    from harness.django import configure

    return race_rate(database, make, setup=[f"INSERT INTO {TABLE} (name, n) VALUES ('hits', 0)"],
                     teardown=[f"DELETE FROM {TABLE}"], rounds=rounds, budget=budget, name=NAME,
                     context=configure)


def run(quick: bool) -> list[Figure]:
    from harness.django import configure, setup

    setup("examples.django_app.settings")
    from examples.django_app.models import Counter

    rounds, budget = (1, 12) if quick else (5, 60)
    database = server("postgres").create_database()
    try:
        with Race(database, name="django-orm-schema") as race, configure(race) as db:
            db.create_tables(Counter)
        pg_s, pg_points, n = measure(database, _psycopg, rounds, budget)
        dj_s, dj_points, _ = measure(database, _django, rounds, budget)
    finally:
        database.drop()
    note = (f"lost-update race, exhaustive, preemption bound 2, {n} schedules per exploration, median of {rounds}; "
            "both connect in each request (Django: a connection per actor thread, closed after the schedule)")
    return [
        Figure(NAME, "Django ORM (psycopg 3 backend): schedules/s", "1/s", round(1 / dj_s, 1), round(1 / pg_s, 1),
               "sync psycopg 3", note=note),
        Figure(NAME, "Django ORM: decision points of the serial schedule", "points", dj_points, pg_points,
               "sync psycopg 3", note="Django's connect-time queries (time zone, ...) are none of them"),
    ]


if __name__ == "__main__":
    for figure in run("--quick" in sys.argv):
        print(figure)
