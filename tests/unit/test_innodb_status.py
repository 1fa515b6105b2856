"""parse_innodb_status (harness/dialect/mysql.py) on a status captured from MariaDB 10.11.

The capture: session thread 6 updated row id=1 in an open transaction; thread 7's UPDATE of the same
row waited for it (data/innodb_status_row_wait.txt is SHOW ENGINE INNODB STATUS taken at that moment).
"""

from __future__ import annotations

from pathlib import Path

from harness.dialect.mysql import parse_innodb_status

CAPTURED = (Path(__file__).parent / "data" / "innodb_status_row_wait.txt").read_text()


def test_a_row_lock_wait_names_waiter_and_holder() -> None:
    waits = parse_innodb_status(CAPTURED)
    assert [(w.waiter, w.holder) for w in waits] == [(7, 6)]
    assert "record" in waits[0].lock or "row" in waits[0].lock


def test_no_waits_once_the_waiter_is_gone() -> None:
    waiter = CAPTURED.index("---TRANSACTION 24")
    holder = CAPTURED.index("---TRANSACTION 23")
    assert parse_innodb_status(CAPTURED[:waiter] + CAPTURED[holder:]) == []


def test_empty_or_foreign_text_has_no_waits() -> None:
    assert parse_innodb_status("") == []
    assert parse_innodb_status("LIST OF TRANSACTIONS FOR EACH SESSION:\n---TRANSACTION 1, not started\n") == []


QUEUED = (Path(__file__).parent / "data" / "innodb_status_queued_waiter.txt").read_text()


def test_a_waiter_queued_behind_another_waiter_waits_for_it_and_the_holder() -> None:
    """Captured: thread 7 holds row id=1; thread 8's UPDATE waits for it; thread 9's UPDATE of the same
    row queued behind 8's request.  9 cannot pass 8: both are its blockers (8 as 'queued')."""
    edges = {(w.waiter, w.holder, w.lock) for w in parse_innodb_status(QUEUED)}
    assert edges == {(8, 7, "row lock"), (9, 7, "row lock"), (9, 8, "row lock (queued)")}
