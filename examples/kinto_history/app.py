"""The real Kinto's storage, as a scenario file drives it (scenarios/apps/kinto_real*.yaml).

``prepare`` is the scenario's Python setup (``{call: ...}``): Kinto's own ``initialize_schema()``, the
upstream fix when asked for, and the database clock frozen for every session.  ``request`` is an actor:
one Kinto request creating a record and its history entry.  Kinto keeps one storage (engine, pool) per
URL for the process's life, as a deployment does; so does this module.
"""

from __future__ import annotations

from typing import Any

import transaction
from kinto.core.storage.postgresql import Storage

from harness.clock import DbClock
from harness.scenario.hooks import SetupContext

from .test_kinto_history import create_with_history, install_upstream_fix, kinto_storage

_STORAGES: dict[str, Storage] = {}


def storage_for(url: str) -> Storage:
    if url not in _STORAGES:
        _STORAGES[url] = kinto_storage(url)
    return _STORAGES[url]


def prepare(db: SetupContext, *, fixed: bool, frozen_at: str) -> None:
    """Kinto's schema (and PR #3790's lock if ``fixed``), and every session's clock frozen at ``frozen_at``."""
    # first, so the sessions Kinto's pool opens from here on read the frozen clock
    DbClock("postgres").freeze_database(db.conn, db.info.dbname, frozen_at)
    storage = storage_for(db.url())
    with transaction.manager:  # as `kinto migrate` does: the schema work is one committed transaction
        storage.initialize_schema()
    if fixed:
        with transaction.manager, storage.client.connect() as session:
            locked = "pg_advisory_xact_lock" in str(session.execute(
                _sql("SELECT pg_get_functiondef('bump_timestamp'::regproc)")).scalar())
        if not locked:
            install_upstream_fix(storage)


def _sql(text: str) -> Any:
    from sqlalchemy import text as sql_text

    return sql_text(text.replace(":", r"\:"))


def request(ctx: Any, *, collection: str, record: str) -> None:
    """An actor: one Kinto request (a record and its history entry, in one transaction)."""
    create_with_history(storage_for(ctx.url()), collection, record)
