"""An ORM app's own engine (built from the URL in its settings) and sessions, driven unchanged.

The app (app.py) is a module-level object holding its engine and pool across requests, as in
production; the race captures the connections its pool opens, on PyMySQL against MariaDB and on
psycopg2 against PostgreSQL.  The test knows the app's settings and its public function, nothing more.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from harness.dialect import execute
from harness.explore import Race

from .app import App

DRIVERS = {"mysql": "mysql+pymysql", "postgres": "postgresql+psycopg2"}


def app_for(race: Race, backend: str, *, fixed: bool) -> App:
    info = race.database.info
    url = URL.create(DRIVERS[backend], username=info.user, password=info.password or None, host=info.host,
                     port=info.port, database=info.dbname).render_as_string(hide_password=False)
    app = App.from_settings({"database_url": url, "signup": "fixed" if fixed else "naive"})
    app.create_schema()  # the app's metadata.create_all, outside any actor
    return app


def signup_race(race: Race, backend: str, *, fixed: bool) -> App:
    app = app_for(race, backend, fixed=fixed)
    race.teardown("DELETE FROM accounts")
    for name in ("A", "B"):
        race.actor(name, lambda: app.signup("ada@example.com"))

    @race.check
    def one_account_both_answered(conn, results):  # type: ignore[no-untyped-def]
        ids = {r.value for r in results.values()}
        errors = [f"{n}: {r.error_info.message if r.error_info else r.error}" for n, r in results.items() if r.error]
        assert not errors, "; ".join(errors)
        rows = execute(conn, "SELECT id FROM accounts")
        assert len(rows) == 1, f"{len(rows)} accounts for one address"
        assert len(ids) == 1, f"two different accounts returned: {ids}"
    return app


def test_naive_signup_fails_under_a_race(race: Race, backend: str) -> None:
    signup_race(race, backend, fixed=False)
    race.allowed_errors.append(Exception)  # the check above reports the error in the app's terms
    result = race.assert_finds_race(max_schedules=40)
    failure = result.failure
    assert failure is not None
    loser = next(r for r in failure.results.values() if r.error is not None)
    assert loser.error_info is not None and loser.error_info.code == {"mysql": "1062", "postgres": "23505"}[backend]
    # the ORM's statements are the schedule's moves, its pool's own queries are not
    labels = " ".join(failure.labels)
    assert "INSERT INTO accounts" in labels and "SELECT accounts.id" in labels, labels
    assert "version()" not in labels and "@@" not in labels, labels
    assert race.replay(failure.schedule).violations == failure.violations


def test_fixed_signup_passes(race: Race, backend: str) -> None:
    signup_race(race, backend, fixed=True)
    result = race.assert_no_race(max_schedules=80)
    assert result.schedules_run >= 6, result
