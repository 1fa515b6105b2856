"""An app's own SQLAlchemy engine over psycopg2, built from a URL, under the scheduler.

psycopg2's C code rejects proxy connections (SQLAlchemy's psycopg2 dialect calls
``extras.register_uuid(None, dbapi_conn)`` on connect), so the race hands psycopg2 a connection_factory
subclass instead (harness/explore/pg2.py); the app only passes it in its engine's connect_args.
"""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import text

from harness.explore import Race

pytestmark = pytest.mark.backends("postgres")


def rules_app(url: str, factory: type, *, locked: bool) -> "sqlalchemy.Engine":
    """What an app does: its own engine from its settings' URL (here with the harness's factory)."""
    return sqlalchemy.create_engine(url, connect_args={"connection_factory": factory},
                                    poolclass=sqlalchemy.pool.NullPool)


def save_rule(engine: "sqlalchemy.Engine", name: str, *, locked: bool) -> None:
    with engine.begin() as conn:
        if locked:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
        if conn.execute(text("SELECT count(*) FROM rules WHERE name = :n"), {"n": name}).scalar() == 0:
            conn.execute(text("INSERT INTO rules (name) VALUES (:n)"), {"n": name})


def psycopg2_url(race: Race) -> str:
    info = race.database.info
    return str(sqlalchemy.engine.URL.create("postgresql+psycopg2", username=info.user, password=info.password or None,
                                            host=info.host, port=info.port, database=info.dbname)
               .render_as_string(hide_password=False))


@pytest.mark.parametrize("locked", [False, True])
def test_an_apps_sqlalchemy_psycopg2_engine_is_explored(race: Race, backend: str, locked: bool) -> None:
    race.setup("CREATE TABLE rules (name varchar(20))")
    race.teardown("DROP TABLE rules")
    engine = rules_app(psycopg2_url(race), race.psycopg2_connection_factory(), locked=locked)
    for name in ("A", "B"):
        race.actor(name, lambda: save_rule(engine, "r1", locked=locked))
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    result = race.explore(max_schedules=60, strategy="exhaustive", preemption_bound=1)
    if locked:
        assert result.failure is None and result.schedules_run > 1, result
    else:
        assert result.failure is not None and "check one_rule violated: expected 1, got 2" in result.failure.violations
        # the psycopg2 statements are the schedule's moves, with their bound values
        sqls = [e.sql for e in result.failure.trace.events if e.kind == "complete"]
        assert any(s and s.startswith("INSERT INTO rules") for s in sqls), sqls
        again = race.replay(result.failure.schedule)
        assert again.violations == result.failure.violations
    engine.dispose()
