"""Tiny application code used as systems under test: plain DB-API code that knows nothing of the harness."""

from __future__ import annotations

from typing import Any


def check_then_insert(conn: Any, name: str = "r1") -> bool:
    """Racy: two callers can both see 0 rows and both insert."""
    cur = conn.cursor()
    cur.execute(f"SELECT count(*) FROM rules WHERE name = '{name}'")
    (n,) = cur.fetchone()
    if int(n) == 0:
        cur.execute(f"INSERT INTO rules (name) VALUES ('{name}')")
    conn.commit()
    return int(n) == 0


def lock_then_insert(conn: Any, lock: Any, name: str = "r1") -> bool:
    """Correct: the lock is held until after the commit."""
    lock.acquire()
    try:
        inserted = check_then_insert(conn, name)
    finally:
        lock.release()
    return inserted


def lock_then_insert_unlock_first(conn: Any, lock: Any, name: str = "r1") -> bool:
    """bk-ci's bug in miniature: the lock is released before the commit."""
    lock.acquire()
    cur = conn.cursor()
    cur.execute(f"SELECT count(*) FROM rules WHERE name = '{name}'")
    (n,) = cur.fetchone()
    if int(n) == 0:
        cur.execute(f"INSERT INTO rules (name) VALUES ('{name}')")
    lock.release()
    conn.commit()
    return int(n) == 0


def increment_racy(conn: Any) -> None:
    """Lost update: read, compute, write back."""
    cur = conn.cursor()
    cur.execute("SELECT n FROM counter WHERE id = 1")
    (n,) = cur.fetchone()
    cur.execute(f"UPDATE counter SET n = {int(n) + 1} WHERE id = 1")
    conn.commit()


def increment_for_update(conn: Any) -> None:
    """Correct: the read locks the row."""
    cur = conn.cursor()
    cur.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
    (n,) = cur.fetchone()
    cur.execute(f"UPDATE counter SET n = {int(n) + 1} WHERE id = 1")
    conn.commit()
