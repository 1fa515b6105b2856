"""An asyncio request handler with the check-then-insert race: save a rule unless one of that name exists.

Written as async services write it: asyncpg, its own connection per request, awaited calls.  ``locked``
serialises the check and the insert with a transaction-scoped advisory lock.  Used as the actors of
``scenarios/apps/async_rules*.yaml`` (``{call: "examples.async_rules.app:request"}``).
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def save_rule(url: str, name: str, *, locked: bool) -> bool:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            if locked:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
            if await conn.fetchval("SELECT count(*) FROM rules WHERE name = $1", name):
                return False
            await conn.execute("INSERT INTO rules (name) VALUES ($1)", name)
            return True
    finally:
        await conn.close()


async def request(ctx: Any, name: str, locked: bool = False) -> bool:
    """A race actor (``ctx``: the harness's ActorContext, whose url() names the race database)."""
    return await save_rule(ctx.url("postgresql"), name, locked=locked)
