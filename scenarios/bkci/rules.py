"""A minimal model of bk-ci's ShardingRoutingRuleService.addShardingRoutingRule.

Plain DB-API code (psycopg 3, psycopg2 or PyMySQL) and any lock with ``acquire(timeout)`` /
``release()`` (a Redis lock as upstream, GET_LOCK, or a PostgreSQL advisory lock).

``variant="unlock-before-commit"`` is the bug (bk-ci #11732): the lock is released in ``finally``
before the transaction commits, so a second writer can count 0 while the first's row is uncommitted.
``variant="commit-inside-lock"`` is the fix: lock -> begin -> check -> insert -> commit -> unlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

VARIANTS = ("unlock-before-commit", "commit-inside-lock")


class Lock(Protocol):
    def acquire(self, timeout: float | None = None) -> bool: ...

    def release(self) -> bool: ...


class RuleLockTimeout(Exception):
    """The rule's lock was not acquired in time (bk-ci: 'add routing rule failed, lock timeout')."""


@dataclass(frozen=True)
class Rule:
    cluster_name: str
    module_code: str
    type: str
    routing_name: str
    routing_rule: str
    data_tag: str | None = None

    @property
    def lock_key(self) -> str:
        return (f"SHARDING_ROUTING_RULE:{self.cluster_name}:{self.module_code}:{self.type}:"
                f"{self.routing_name}:add")


def _is_mysql(conn: Any) -> bool:
    return conn.__class__.__module__.startswith("pymysql")


class _Tx:
    """begin/commit/rollback on a DB-API connection, autocommit or not."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.mysql = conn, _is_mysql(conn)
        self.auto = bool(conn.get_autocommit()) if self.mysql else bool(getattr(conn, "autocommit", False))

    def _run(self, sql: str) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def begin(self) -> None:
        if self.mysql:
            self.conn.begin()
        elif self.auto:
            self._run("BEGIN")

    def commit(self) -> None:
        self._run("COMMIT") if self.auto and not self.mysql else self.conn.commit()

    def rollback(self) -> None:
        self._run("ROLLBACK") if self.auto and not self.mysql else self.conn.rollback()


def count_rules(conn: Any, rule: Rule) -> int:
    cur = conn.cursor()
    try:
        cur.execute("SELECT COUNT(*) FROM sharding_routing_rule WHERE cluster_name = %s AND module_code = %s "
                    "AND type = %s AND routing_name = %s", (rule.cluster_name, rule.module_code, rule.type,
                                                            rule.routing_name))
        return int(cur.fetchall()[0][0])
    finally:
        cur.close()


def _insert(conn: Any, rule: Rule) -> None:
    cur = conn.cursor()
    try:
        cur.execute("INSERT INTO sharding_routing_rule (cluster_name, module_code, type, routing_name, "
                    "routing_rule, data_tag) VALUES (%s, %s, %s, %s, %s, %s)",
                    (rule.cluster_name, rule.module_code, rule.type, rule.routing_name, rule.routing_rule,
                     rule.data_tag))
    finally:
        cur.close()


def save_rule(conn: Any, lock: Lock, rule: Rule, *, variant: str = "unlock-before-commit",
              timeout: float | None = 30.0) -> bool:
    """Add ``rule`` unless one with its name exists; True if this call inserted it."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if not lock.acquire(timeout):
        raise RuleLockTimeout(rule.lock_key)
    tx = _Tx(conn)
    if variant == "unlock-before-commit":
        try:
            tx.begin()
            inserted = count_rules(conn, rule) == 0
            if inserted:
                _insert(conn, rule)
        except BaseException:
            tx.rollback()
            raise
        finally:
            lock.release()  # upstream: finally { lock.unlock() }
        tx.commit()  # BUG: the row becomes visible only after the lock is gone
        return inserted
    try:
        tx.begin()
        inserted = count_rules(conn, rule) == 0
        if inserted:
            _insert(conn, rule)
        tx.commit()
        return inserted
    except BaseException:
        tx.rollback()
        raise
    finally:
        lock.release()
