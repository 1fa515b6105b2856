"""A journal service that appends entries, each a transaction of two rows (entry + audit line).

The harness crashes the database server at a point the explorer chooses; the service reconnects and
goes on.  Afterwards the durability check compares the table with what the service was told: every
acknowledged entry must be there in full, a failed one not at all, one whose COMMIT was in flight
when the server died (outcome unknown to the client) all or nothing.
"""

from __future__ import annotations

from typing import Any


def append_entries(ctx: Any, *, entries: int = 3) -> int:
    """Append ``entries`` entries; returns how many the service believes were written."""
    conn = None
    written = 0
    for entry in range(entries):
        try:
            with ctx.op("append", entry):
                conn = conn or ctx.connect()
                cur = conn.cursor()
                cur.execute(f"INSERT INTO journal (entry, kind) VALUES ({entry}, 'entry')")
                cur.execute(f"INSERT INTO journal (entry, kind) VALUES ({entry}, 'audit')")
                conn.commit()
                written += 1
        except Exception:  # the server went away: reconnect for the next entry (no retry: not idempotent)
            conn = None
    return written
