"""Django ORM code driven unchanged by the race, through the Python API (no pytest-django).

The app (models.py, services.py) is plain Django.  The test points Django's ``DATABASES["default"]`` at
the race database (``harness.django.configure``), creates the tables, and registers the app's functions
as actors: get-or-create races found (a duplicate without a constraint, an IntegrityError with a
hand-written check-then-create) and passing with Django's own ``get_or_create`` on a unique column; a lost
update with ``obj.save()`` found, and passing with ``F("n") + 1`` and with ``select_for_update()``.  On
PostgreSQL (psycopg 3) and MariaDB (Django's MySQL backend).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from harness.dialect import execute
from harness.django import configure, setup
from harness.explore import Race

setup("examples.django_app.settings")  # what DJANGO_SETTINGS_MODULE would do, before importing models

from . import services  # noqa: E402
from .models import Counter, Label, Tag  # noqa: E402

#: Django's connect-time queries: bookkeeping, never a move of a schedule
BOOKKEEPING = ("TIME ZONE", "ISOLATION LEVEL", "VERSION()", "@@SQL_MODE", "SQL_AUTO_IS_NULL")


@pytest.fixture
def app(race: Race) -> Iterator[Race]:
    with configure(race) as db:
        db.create_tables(Tag, Label, Counter)
        yield race


def both(race: Race, fn: Callable[[], Any]) -> None:
    race.actor("A", fn)
    race.actor("B", fn)


def found(race: Race, max_schedules: int = 40) -> Any:
    failure = race.assert_finds_race(max_schedules=max_schedules).failure
    assert failure is not None
    labels = " ".join(failure.labels).upper()
    assert not [b for b in BOOKKEEPING if b in labels], labels
    # a replay in this now-warm process: the same moves offered at every decision, the same outcome
    replayed = race.replay(failure.schedule)
    assert replayed.options == failure.options and replayed.violations == failure.violations
    return failure


def test_get_or_create_without_constraint_duplicates(app: Race) -> None:
    both(app, lambda: services.label_for("red"))
    app.teardown(lambda conn: Label.objects.all().delete())  # the ORM outside actors: straight through
    app.check_sql("one_label", "SELECT count(*) FROM django_app_label", equals=1)
    failure = found(app)
    assert failure.violated == ["one_label"], failure.violations
    assert "INSERT INTO" in " ".join(failure.labels)


def test_check_then_create_raises_integrity_error(app: Race, backend: str) -> None:
    both(app, lambda: services.tag_checked("red"))
    app.teardown("DELETE FROM django_app_tag")
    failure = found(app)
    loser = next(r for r in failure.results.values() if r.error is not None)
    assert type(loser.error).__name__ == "IntegrityError" and type(loser.error).__module__ == "django.db.utils"
    assert loser.error_info is not None and loser.error_info.code == {"mysql": "1062", "postgres": "23505"}[backend]


def test_get_or_create_on_unique_column_passes(app: Race) -> None:
    both(app, lambda: services.tag_for("red"))
    app.teardown("DELETE FROM django_app_tag")

    @app.check
    def one_tag_both_answered(conn: Any, results: dict[str, Any]) -> None:
        assert len(execute(conn, "SELECT id FROM django_app_tag")) == 1
        assert len({r.value for r in results.values()}) == 1, "two different tags returned"

    result = app.assert_no_race(max_schedules=40)
    assert result.schedules_run >= 5, result
    # B's INSERT waits on A's uncommitted key until A commits, fails, rolls back to its savepoint and
    # reads A's row: the schedule the fix is for
    outcome = app.replay("A A A A A B B B B A B B B B B")
    assert outcome.passed, outcome.describe()
    assert outcome.trace.events and any(e.kind == "blocked" for e in outcome.trace.events), outcome.describe()
    assert any(label.startswith("ROLLBACK TO SAVEPOINT") for label in outcome.labels), outcome.labels


def counter_race(race: Race, bump: Callable[[str], None]) -> None:
    race.setup(lambda conn: Counter.objects.create(name="hits"))
    race.teardown(lambda conn: Counter.objects.all().delete())
    both(race, lambda: bump("hits"))
    race.check_sql("two_bumps", "SELECT n FROM django_app_counter", equals=2)


def test_save_loses_an_update(app: Race) -> None:
    counter_race(app, services.bump_save)
    failure = found(app)
    assert failure.violated == ["two_bumps"], failure.violations


@pytest.mark.parametrize("bump", ["bump_f", "bump_locked"])
def test_f_expression_and_select_for_update_pass(app: Race, bump: str) -> None:
    counter_race(app, getattr(services, bump))
    result = app.assert_no_race(max_schedules=40)
    assert result.schedules_run >= 2, result


def test_actor_connections_do_not_leak(app: Race, backend: str) -> None:
    """Each schedule's actor threads open fresh Django connections; they are closed after it."""
    counter_race(app, services.bump_f)
    app.assert_no_race(max_schedules=25)
    sql = {"postgres": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
           "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE()"}[backend]
    with app.database.connect() as conn:
        sessions = execute(conn, sql)[0][0]
    assert sessions <= 6, f"{sessions} sessions on the race database after 25 schedules"


def test_connect_time_queries_are_no_moves(app: Race, backend: str) -> None:
    """Django sets up each connection it opens (the session time zone when the server's differs, the
    isolation level on MariaDB, MariaDB's server facts): those queries run, and are no moves."""
    if backend == "postgres":  # new sessions start in another zone: Django must SET TIME ZONE 'UTC'
        with app.database.connect() as conn:
            execute(conn, f"ALTER DATABASE \"{app.database.name}\" SET timezone = 'America/New_York'")

    def bump_and_report() -> Any:
        from django.db import connection

        services.bump_f("hits")
        if backend == "postgres":
            return connection.connection.info.parameter_status("TimeZone")
        return connection.isolation_level, connection.mysql_is_mariadb

    app.setup(lambda conn: Counter.objects.create(name="hits"))
    app.teardown(lambda conn: Counter.objects.all().delete())
    both(app, bump_and_report)
    outcome = app.replay("A A B B")  # start, UPDATE for each: nothing else is a move
    assert outcome.passed, outcome.describe()
    assert [label.split()[0] for label in outcome.labels] == ["start", "UPDATE", "start", "UPDATE"], outcome.labels
    expected = "UTC" if backend == "postgres" else ("read committed", True)
    assert {r.value for r in outcome.results.values()} == {expected}
