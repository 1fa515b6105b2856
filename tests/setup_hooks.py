"""Python setup/teardown functions named by the scenario files of tests/test_setup_calls.py."""

from __future__ import annotations

from harness.dialect import execute
from harness.scenario.hooks import SetupContext


def create_counter(db: SetupContext, *, start: int = 0) -> None:
    """What an app's ``initialize_schema()`` does: its schema, from code."""
    execute(db.conn, "CREATE TABLE counter (id int PRIMARY KEY, n int)")
    execute(db.conn, f"INSERT INTO counter VALUES (1, {int(start)})")
    assert db.url().startswith(("postgresql+psycopg2://", "mysql+pymysql://")), db.url()


def drop_counter(db: SetupContext) -> None:
    execute(db.conn, "DROP TABLE counter")


def broken(db: SetupContext, **args: object) -> None:
    raise RuntimeError("the app's migration failed")
