"""A minimal model of Kinto's storage: create a record and its history entry in one transaction.

Plain DB-API code (psycopg 3, psycopg2 or PyMySQL), unaware of any harness.  Stamping happens in the
database trigger (``schema_*.sql``); :func:`install_schema` installs the ``plain`` trigger or the
``locked`` one of Kinto PR #3790.  ``create_record``'s ``variant`` says which schema the caller
expects; ``locked`` additionally takes the same per-key-space lock in the application right before
each insert (an equivalent placement of the fix, usable against a plain schema).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("plain", "locked")
HISTORY = "history"


def _is_mysql(conn: Any) -> bool:
    return conn.__class__.__module__.startswith("pymysql")


def schema_sql(backend: str, variant: str = "plain") -> list[str]:
    """The SQL scripts (each one multi-statement text) that create the schema of ``variant``."""
    if backend not in ("postgres", "mysql"):
        raise ValueError(f"unknown backend {backend!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    scripts = [(HERE / f"schema_{backend}.sql").read_text()]
    if variant == "locked":
        scripts.append((HERE / f"schema_{backend}_locked.sql").read_text())
    return scripts


def install_schema(conn: Any, *, variant: str = "plain") -> None:
    """Create the objects table and the stamping trigger (needs multi-statement support on PyMySQL)."""
    backend = "mysql" if _is_mysql(conn) else "postgres"
    for script in schema_sql(backend, variant):
        cur = conn.cursor()
        try:
            cur.execute(script)
        finally:
            cur.close()
    if not _autocommit(conn):
        conn.commit()


def _autocommit(conn: Any) -> bool:
    return bool(conn.get_autocommit()) if _is_mysql(conn) else bool(getattr(conn, "autocommit", False))


def _lock_key_space(cur: Any, mysql: bool, parent_id: str, resource_name: str) -> None:
    if mysql:
        cur.execute("INSERT INTO objects_stamp_locks (parent_id, resource_name) VALUES (%s, %s) "
                    "ON DUPLICATE KEY UPDATE resource_name = VALUES(resource_name)", (parent_id, resource_name))
    else:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (parent_id, resource_name))
        cur.fetchall()


def create_record(conn: Any, bucket: str, collection: str, record_id: str, data: dict[str, Any], *,
                  variant: str = "plain") -> int:
    """Insert record ``record_id`` into ``/buckets/{bucket}/collections/{collection}`` and its history
    entry (parent ``/buckets/{bucket}``) in ONE transaction; returns the record's last_modified.

    On any error the transaction is rolled back and the error re-raised (Kinto answers 409 for the
    unique violation): the record is lost together with its history entry.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    mysql = _is_mysql(conn)
    auto = _autocommit(conn)
    bucket_uri = f"/buckets/{bucket}"
    parent = f"{bucket_uri}/collections/{collection}"
    cur = conn.cursor()
    try:
        if mysql:
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")  # as Kinto on PostgreSQL
            conn.begin()
        elif auto:
            cur.execute("BEGIN")
        if variant == "locked":
            _lock_key_space(cur, mysql, parent, "record")
        cur.execute("INSERT INTO objects (id, parent_id, resource_name, data) VALUES (%s, %s, 'record', %s)",
                    (record_id, parent, json.dumps(data)))
        cur.execute("SELECT last_modified FROM objects WHERE id = %s AND parent_id = %s AND resource_name = 'record'",
                    (record_id, parent))
        stamp = int(cur.fetchall()[0][0])
        entry = {"action": "create", "uri": f"{parent}/records/{record_id}", "target": data}
        if variant == "locked":
            _lock_key_space(cur, mysql, bucket_uri, HISTORY)
        cur.execute("INSERT INTO objects (id, parent_id, resource_name, data) VALUES (%s, %s, %s, %s)",
                    (f"h-{record_id}", bucket_uri, HISTORY, json.dumps(entry)))
        if auto and not mysql:
            cur.execute("COMMIT")
        else:
            conn.commit()
        return stamp
    except BaseException:
        if auto and not mysql:
            cur.execute("ROLLBACK")
        else:
            conn.rollback()
        raise
    finally:
        cur.close()
