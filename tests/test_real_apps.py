"""An app's own database access under a race: captured drivers, pooled engines, kept sessions.

The apps here are built as apps build themselves -- an engine from a URL, a pool kept across requests,
raw ``psycopg2.connect`` / ``psycopg.connect`` / ``pymysql.connect`` inside request code -- and the
tests hand the race nothing but that URL (or, for an engine made before the race existed, the engine).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import text

from harness.errors import ClockError, Divergence
from harness.explore import Race

DRIVERS = {"mysql": "mysql+pymysql", "postgres": "postgresql+psycopg2"}
RULES = "CREATE TABLE rules (name varchar(20))"


def app_url(race: Race, backend: str) -> str:
    info = race.database.info
    return sqlalchemy.engine.URL.create(DRIVERS[backend], username=info.user, password=info.password or None,
                                        host=info.host, port=info.port,
                                        database=info.dbname).render_as_string(hide_password=False)


def save_rule(engine: sqlalchemy.Engine, name: str) -> None:
    with engine.begin() as conn:
        if conn.execute(text("SELECT count(*) FROM rules WHERE name = :n"), {"n": name}).scalar() == 0:
            conn.execute(text("INSERT INTO rules (name) VALUES (:n)"), {"n": name})


def rules_race(race: Race, engine: sqlalchemy.Engine) -> None:
    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    for name in ("A", "B"):
        race.actor(name, lambda: save_rule(engine, "r1"))
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)


def test_a_pooled_engine_gives_the_same_decisions_cold_and_warm(race: Race, backend: str) -> None:
    """The pool's first connect runs the dialect's own queries (version, isolation, encoding...):
    bookkeeping, no decisions -- so a replay on a warm pool follows the schedule of a cold one."""
    engine = sqlalchemy.create_engine(app_url(race, backend), pool_size=2)  # built from a URL, as apps do
    rules_race(race, engine)
    schedule = "A A B B A A B B"
    cold = race.replay(schedule)
    warm = race.replay(schedule)
    assert cold.schedule_text == warm.schedule_text and cold.labels == warm.labels, (cold.labels, warm.labels)
    statements = [label for label in cold.labels if label not in ("start",) and not label.startswith("resume")]
    assert all(s.startswith(("SELECT count(*) FROM rules", "INSERT INTO rules", "COMMIT")) for s in statements), statements
    # no idle ROLLBACK from the pool's reset-on-return, no first-connect query
    assert not any("ROLLBACK" in s or "version" in s.lower() for s in cold.labels), cold.labels
    found = race.explore(max_schedules=40)
    assert found.failure is not None and "check one_rule violated: expected 1, got 2" in found.failure.violations
    engine.dispose()


def test_raw_connects_inside_actors_are_captured(race: Race, backend: str) -> None:
    """``psycopg.connect`` / ``pymysql.connect`` called by request code, no engine, no harness API."""
    info = race.database.info
    race.setup(RULES)
    race.teardown("DROP TABLE rules")

    def request() -> None:
        if backend == "postgres":
            import psycopg

            conn: Any = psycopg.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                                        dbname=info.dbname)
        else:
            import pymysql

            conn = pymysql.connect(host=info.host, port=info.port, user=info.user, password=info.password,
                                   database=info.dbname)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM rules")
            if cur.fetchone()[0] == 0:
                cur.execute("INSERT INTO rules VALUES ('r1')")
            conn.commit()
        finally:
            conn.close()

    race.actor("A", request)
    race.actor("B", request)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    found = race.assert_finds_race(max_schedules=40)
    assert found.failure is not None and any("INSERT INTO rules" in label for label in found.failure.labels)


def test_an_engine_made_before_the_race_is_put_under_it(database: Any, backend: str) -> None:
    """An engine whose pool already holds plain connections: ``instrument_engine`` empties the pool, so
    the race sees its statements; without it, the race warns that no actor reached a scheduling point."""
    with Race(database, name="before", capture=False) as blind:
        engine = sqlalchemy.create_engine(app_url(blind, backend))
        with engine.connect() as conn:  # the app warmed its pool at start-up
            conn.execute(text("SELECT 1"))
        rules_race(blind, engine)
        with pytest.warns(UserWarning, match="reached no scheduling point"):
            blind.replay("A B")
    with Race(database, name="after") as race:
        rules_race(race, race.instrument_engine(engine))
        assert race.explore(max_schedules=40).failure is not None
    engine.dispose()


def test_aborted_schedules_leave_the_pool_clean(race: Race, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """An abandoned schedule (here a replay that cannot be followed) unwinds the actors through
    SQLAlchemy's rollback and pool reset without errors, and the pooled connections stay usable."""
    engine = sqlalchemy.create_engine(app_url(race, backend), pool_size=2)
    rules_race(race, engine)
    caplog.set_level(logging.ERROR, logger="sqlalchemy.pool")
    with pytest.raises(Divergence):
        race.replay("A A A A A A A A A A A A A A")  # A has fewer moves than that
    assert not [r for r in caplog.records if "reset" in r.getMessage().lower()], caplog.text
    assert race.replay("A A A A B B B B").passed
    engine.dispose()


@pytest.mark.backends("postgres")
def test_injected_errors_speak_the_apps_driver(race: Race, backend: str) -> None:
    """An app on psycopg2 gets psycopg2's SerializationFailure, which SQLAlchemy wraps and the app's
    retry loop catches -- not psycopg 3's class, which neither would recognise."""
    engine = sqlalchemy.create_engine(app_url(race, backend))
    race.setup(RULES)
    race.teardown("DROP TABLE rules")
    seen: list[str] = []

    def retrying() -> None:
        for _ in range(3):
            try:
                save_rule(engine, "r1")
                return
            except sqlalchemy.exc.OperationalError as exc:
                seen.append(f"{type(exc.orig).__module__}.{type(exc.orig).__name__}")
    race.actor("A", retrying)
    race.fault("serialization", race.inject_error("A", "40001"))
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    outcome = race.replay("serialization A A A A A")
    assert outcome.passed, outcome.describe()
    assert seen == ["psycopg2.errors.SerializationFailure"], seen
    engine.dispose()


def test_the_database_clock_is_frozen_for_the_apps_sessions(race: Race, backend: str) -> None:
    """``freeze_clock`` reaches sessions the harness never opened (PostgreSQL); MariaDB has no global
    clock, which is said at once."""
    if backend == "mysql":
        with pytest.raises(ClockError, match="needs PostgreSQL"):
            race.freeze_clock("2024-01-01 00:00:00+00")
        return
    engine = sqlalchemy.create_engine(app_url(race, backend))
    with engine.connect() as conn:  # a session the app opened before the clock was frozen
        conn.execute(text("SELECT 1"))
    race.freeze_clock("2024-01-01 00:00:00+00")
    race.fault("tick", race.advance_clock(1500))
    stamps: dict[str, str] = {}

    def read(name: str) -> None:
        with engine.connect() as conn:
            stamps[name] = str(conn.execute(text("SELECT clock_timestamp()")).scalar())
    race.actor("A", lambda: read("A"))
    race.actor("B", lambda: read("B"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        race.replay("A A B B")
    assert stamps == {"A": "2024-01-01 00:00:00+00:00", "B": "2024-01-01 00:00:00+00:00"}, stamps
    race.replay("A A tick B B")
    assert stamps == {"A": "2024-01-01 00:00:00+00:00", "B": "2024-01-01 00:00:01.500000+00:00"}, stamps
    engine.dispose()
