"""Explorer glue for the Kinto model: one actor = one request creating a record in its collection.

The database clock is frozen for the actor's session (the harness's clock fault) so the trigger's two
stamps are computed equal, as when two requests land in the same millisecond.
"""

from __future__ import annotations

from typing import Any

from harness.clock import DbClock

from .storage import create_record

FROZEN_AT = "2024-01-01 00:00:00+00"


def create_record_actor(ctx: Any, *, collection: str, record_id: str, variant: str = "plain") -> int:
    conn = ctx.connect()
    DbClock(ctx.race.backend).freeze(conn.raw, FROZEN_AT)  # fault setup, not a scheduled step
    if not getattr(conn.raw, "autocommit", True) and ctx.race.backend == "postgres":
        conn.raw.commit()
    return create_record(conn, "b", collection, record_id, {"title": record_id}, variant=variant)
