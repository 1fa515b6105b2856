"""A last-writer-wins register stamped with the database clock: correct only while clocks agree.

Each write keeps the newer stamp (``WHERE stamp < clock``).  When one writer's clock runs ahead (the
harness skews that session's clock at a point the explorer chooses), a later write carries an older
stamp and is silently dropped: the register ends with a value that was not written last.
"""

from __future__ import annotations

from typing import Any

CLOCK = {"postgres": "clock_timestamp()", "mysql": "NOW(6)"}


def write(ctx: Any, *, value: str, by_version: bool = False) -> None:
    """Write ``value``: lock the register row, log the write (commit order), update it."""
    conn = ctx.connect()
    with ctx.op("write", value):
        cur = conn.cursor()
        cur.execute("SELECT value FROM register WHERE id = 1 FOR UPDATE")
        cur.execute(f"INSERT INTO writes (value) VALUES ('{value}')")
        if by_version:  # the fix: order writes by the database's own commit order, not by a clock
            cur.execute(f"UPDATE register SET value = '{value}', version = version + 1 WHERE id = 1")
        else:
            clock = CLOCK[ctx.race.backend]
            cur.execute(f"UPDATE register SET value = '{value}', stamp = {clock} WHERE id = 1 AND stamp < {clock}")
        conn.commit()


def last_write_wins(conn: Any, results: dict[str, Any]) -> None:
    """The register holds the value of the write that completed last."""
    ops = sorted((op for r in results.values() for op in r.ops if op.status == "ok"), key=lambda op: op.seq)
    cur = conn.cursor()
    cur.execute("SELECT value FROM register WHERE id = 1")
    held = cur.fetchone()[0]
    assert not ops or held == ops[-1].value, f"register holds {held!r}, but the last write was {ops[-1].value!r}"
