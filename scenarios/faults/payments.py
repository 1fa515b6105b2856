"""A payment service with a retry loop: the classic double-apply after a lost commit acknowledgement.

``pay`` retries on a dropped connection. Without ``idempotent`` a retry inserts again, although the
first COMMIT may have been durable (the client only lost the answer); with it, a retry first checks
whether payment p1 already landed.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql

CONNECTION_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, pymysql.err.InterfaceError)


def pay(conn_factory: Any, payment_id: str, amount: int, *, idempotent: bool, attempts: int = 3) -> str:
    for _ in range(attempts):
        conn = conn_factory()
        try:
            cur = conn.cursor()
            if idempotent:
                cur.execute(f"SELECT count(*) FROM ledger WHERE payment_id = '{payment_id}'")
                if int(cur.fetchone()[0]):
                    conn.commit()
                    return "already applied"
            cur.execute(f"INSERT INTO ledger (payment_id, amount) VALUES ('{payment_id}', {int(amount)})")
            conn.commit()
            return "applied"
        except CONNECTION_ERRORS:
            continue
    raise RuntimeError(f"payment {payment_id} failed after {attempts} attempts")


def pay_actor(ctx: Any, *, idempotent: bool) -> str:
    """Explorer glue: the service gets instrumented connections from the harness."""
    return pay(ctx.connect, "p1", 100, idempotent=idempotent)
