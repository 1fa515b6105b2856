"""The real Kinto (PyPI ``kinto``), unchanged, finding its issue #3393 through its own storage API.

Kinto's PostgreSQL storage is built exactly as Kinto builds it (``load_from_config`` with its settings:
``storage_url``, its default psycopg2 driver, its pool, ``transaction_per_request`` with zope's
transaction manager), its schema by its own ``initialize_schema()``.  Two requests each create a record
in a different collection and its history entry under the bucket, in one transaction each, as Kinto's
history plugin does.  The database clock is frozen for every session, Kinto's pooled ones included
(``race.freeze_clock``), so the two history entries are stamped in the same millisecond, as happens in
production under load.  Nothing here touches Kinto's internals: the test knows only its storage URL.

* upstream schema: the explorer finds the schedule where B's history insert waits on A's uncommitted
  entry with the same stamp and fails with 23505 when A commits -- B's record is lost (Kinto answers
  409/503);
* with the fix proposed upstream (Kinto PR #3790: the trigger first takes a transaction-scoped advisory
  lock on (parent_id, resource_name)), installed by the example's setup, every schedule passes.
"""

from __future__ import annotations

from typing import Any

import pytest
import transaction
from kinto.core.storage.postgresql import Storage, load_from_config
from pyramid.config import Configurator
from sqlalchemy.engine import URL

from harness.explore import Race

pytestmark = pytest.mark.backends("postgres")

#: Kinto PR #3790's change to bump_timestamp(): serialize writers of one (parent_id, resource_name)
#: until commit, so a waiter sees the committed stamp and takes the next millisecond
ADVISORY_LOCK = ("PERFORM pg_advisory_xact_lock(hashtext(NEW.parent_id), hashtext(NEW.resource_name));")


def kinto_url(race: Race) -> str:
    """What a Kinto deployment has in its settings: a plain ``postgresql://`` URL (psycopg2 by default)."""
    info = race.database.info
    return URL.create("postgresql", username=info.user, password=info.password or None, host=info.host,
                      port=info.port, database=info.dbname).render_as_string(hide_password=False)


def kinto_storage(url: str) -> Storage:
    """Kinto's storage as kinto.core.initialization builds it from the settings."""
    config = Configurator(settings={"storage_url": url, "storage_max_fetch_size": 10000,
                                    "storage_pool_size": 4, "transaction_per_request": True})
    return load_from_config(config)


def install_upstream_fix(storage: Storage) -> None:
    """Apply PR #3790's advisory lock to the bump_timestamp() trigger function Kinto installed."""
    with transaction.manager, storage.client.connect() as session:
        definition = session.execute(_text("SELECT pg_get_functiondef('bump_timestamp'::regproc)")).scalar()
        assert "\nBEGIN\n" in definition, definition
        session.execute(_text(definition.replace("\nBEGIN\n", f"\nBEGIN\n    {ADVISORY_LOCK}\n", 1)))


def _text(sql: str) -> Any:
    from sqlalchemy import text

    return text(sql.replace(":", r"\:"))


def create_with_history(storage: Storage, collection: str, record_id: str) -> None:
    """One Kinto request: a record in ``collection`` and its history entry under the bucket, in the
    request's transaction (what pyramid_tm and Kinto's history plugin do)."""
    with transaction.manager:
        uri = f"/buckets/b/collections/{collection}/records/{record_id}"
        storage.create("record", f"/buckets/b/collections/{collection}", {"id": record_id, "title": record_id})
        storage.create("history", "/buckets/b", {"uri": uri, "action": "create", "resource_name": "record"})


def kinto_race(race: Race, *, fixed: bool) -> Storage:
    storage = kinto_storage(kinto_url(race))
    with transaction.manager:  # Kinto's own schema, through its own pool (outside any actor), committed
        storage.initialize_schema()
    if fixed:
        install_upstream_fix(storage)
    race.freeze_clock("2024-01-01 00:00:00+00")  # every session's clock_timestamp(), Kinto's included
    race.teardown("DELETE FROM objects; DELETE FROM timestamps")
    race.actor("A", lambda: create_with_history(storage, "c1", "r1"))
    race.actor("B", lambda: create_with_history(storage, "c2", "r2"))
    race.check_sql("both_records_stored", "SELECT count(*) FROM objects WHERE resource_name = 'record'", equals=2)
    return storage


def test_kinto_history_stamps_collide(race: Race) -> None:
    kinto_race(race, fixed=False)
    result = race.assert_finds_race(max_schedules=60)
    failure = result.failure
    assert failure is not None
    assert "check both_records_stored violated: expected 2, got 1" in failure.violations, failure.describe()
    loser = next(r for r in failure.results.values() if r.error is not None)
    assert loser.error_info is not None and loser.error_info.code == "23505", loser.error_info
    # the losing insert waited in the server for the other's uncommitted history entry
    assert any(e.kind == "blocked" for e in failure.trace.events), failure.describe()
    assert race.replay(failure.schedule).violations == failure.violations


def test_kinto_with_upstream_advisory_lock_passes(race: Race) -> None:
    kinto_race(race, fixed=True)
    result = race.assert_no_race(max_schedules=60)
    assert result.schedules_run >= 6, result  # more than the serial orders: preempted ones too
