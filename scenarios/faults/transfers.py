"""A money transfer written as two steps: debit, then credit.

Without a transaction (autocommit) a crash between the two steps leaves the debit without its
credit; inside one transaction the crash rolls both back. The explorer places the fault (the
session is killed server-side) between any two statements, or nowhere.
"""

from __future__ import annotations

from typing import Any

from .payments import CONNECTION_ERRORS


def transfer(conn: Any, amount: int, *, transactional: bool) -> str:
    cur = conn.cursor()
    try:
        cur.execute(f"UPDATE accounts SET balance = balance - {int(amount)} WHERE id = 'alice'")
        if not transactional:
            conn.commit()  # the bug: the debit is its own transaction
        cur.execute(f"UPDATE accounts SET balance = balance + {int(amount)} WHERE id = 'bob'")
        conn.commit()
    except CONNECTION_ERRORS:
        return "failed"  # the request fails; the money must not have moved halfway
    return "done"


def transfer_actor(ctx: Any, *, transactional: bool) -> str:
    return transfer(ctx.connect(), 10, transactional=transactional)
