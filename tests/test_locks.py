"""Distributed locks on real servers: mutual exclusion, waits visible to an observer (Redis) or to the
server's wait-for graph (GET_LOCK, advisory), compare-and-delete, lease expiry."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
import redis

from harness.clock import query
from harness.locks import LockError, MySQLUserLock, PgAdvisoryLock, RedisLock, expire_lease, new_token
from harness.provision import Database, Server

from .conftest import wait_until


@dataclass
class Recorder:
    """An observer that records what a lock reports; ``on_retry`` runs at each retry_wait."""

    on_retry: Callable[[], None] = lambda: None
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        self.events.append(("blocked", lock, key, holder))

    def retry_wait(self) -> None:
        self.events.append(("retry_wait",))
        self.on_retry()

    def unblocked(self) -> None:
        self.events.append(("unblocked",))

    def point(self, label: str) -> None:
        self.events.append(("point", label))


@pytest.fixture
def rds(redis_server: Server) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.info.host, port=redis_server.info.port,
                         password=redis_server.info.password or None)
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    return "test-lock:" + secrets.token_hex(6)


def test_redis_mutual_exclusion_and_wait_seen_by_observer(rds: redis.Redis, key: str) -> None:
    first = RedisLock(rds, key, ttl_ms=60_000, token=new_token("a"))
    assert first.acquire(timeout=0)
    other = RedisLock(rds, key, ttl_ms=60_000, token=new_token("b"))
    assert not other.acquire(timeout=0)
    # the scheduler's view: b fails, reports whom it waits for, and is let go once a released
    rec = Recorder(on_retry=lambda: first.release())
    waiter = RedisLock(rds, key, ttl_ms=60_000, token=new_token("b"), observer=rec)
    assert waiter.acquire(timeout=None)
    assert rec.events == [("point", f"redis:acquire:{key}"), ("blocked", "redis lock", key, first.token),
                          ("retry_wait",), ("point", f"redis:acquire:{key}"), ("unblocked",)]
    assert waiter.current_holder() == waiter.token
    assert waiter.release()
    assert rds.get(key) is None


def test_redis_timeout_gives_up(rds: redis.Redis, key: str) -> None:
    holder = RedisLock(rds, key, token=new_token("a"))
    assert holder.acquire()
    rec = Recorder()
    assert not RedisLock(rds, key, observer=rec).acquire(timeout=0.03)
    assert rec.events[-1] == ("unblocked",) and ("retry_wait",) in rec.events
    with pytest.raises(LockError):
        RedisLock(rds, key).acquire(timeout=-1)
    holder.release()


def test_redis_compare_and_delete_never_deletes_another_holders_key(rds: redis.Redis, key: str) -> None:
    a = RedisLock(rds, key, token=new_token("a"))
    b = RedisLock(rds, key, token=new_token("b"))
    assert a.acquire(timeout=0)
    expiry = expire_lease(rds, key)  # a's lease vanishes while a still believes it holds the lock
    assert expiry.key == key and expiry.holder == a.token
    assert b.acquire(timeout=0)  # lease expiry lets a second holder in: two holders at once
    assert a.held and b.held
    assert not a.release()  # a's compare-and-delete finds b's token and deletes nothing
    assert rds.get(key) == b.token.encode()
    assert b.release()
    assert not b.release()
    assert expire_lease(rds, key).holder is None


def test_redis_ttl_is_a_real_lease(rds: redis.Redis, key: str) -> None:
    lock = RedisLock(rds, key, ttl_ms=60_000)
    assert lock.acquire(timeout=0)
    assert 0 < rds.pttl(key) <= 60_000
    lock.release()


def _bg_acquire(lock: Any, timeout: float | None = None) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["got"] = lock.acquire(timeout)
        except Exception as exc:  # surfaced by the assertion below
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_get_lock_mutual_exclusion_and_wait_in_server(mysql_database: Database, key: str) -> None:
    dialect = mysql_database.dialect
    with mysql_database.connect() as ca, mysql_database.connect() as cb, mysql_database.connect() as mon:
        rec = Recorder()
        a = MySQLUserLock(ca, key, observer=rec)
        b = MySQLUserLock(cb, key)
        assert a.acquire(timeout=0)
        assert a.holder() == ca.thread_id() and a.holder_token == str(ca.thread_id())
        assert not b.acquire(timeout=0)
        query(ca, "COMMIT")  # a user lock is not a transaction's: COMMIT keeps it
        assert not b.release()  # not b's to release
        thread, box = _bg_acquire(b)
        sid_b = cb.thread_id()
        wait_until(lambda: any(w.waiter == sid_b and w.lock == "user lock" for w in dialect.waits(mon, [sid_b])),
                   what="GET_LOCK wait visible in the server")
        assert a.release()
        thread.join(10)
        assert box == {"got": True} and b.held
        assert query(ca, "SELECT GET_LOCK(%s, -1)", (key,))[0][0] is None  # MariaDB: no "forever" via -1
        assert b.release()
        assert rec.events == [("point", f"get_lock:acquire:{key}"), ("point", f"get_lock:release:{key}")]


def test_get_lock_rejects_bad_names_and_connections(mysql_database: Database, pg_database: Database) -> None:
    with mysql_database.connect() as c:
        with pytest.raises(LockError, match="64"):
            MySQLUserLock(c, "x" * 65)
        with pytest.raises(LockError, match="PostgreSQL"):
            PgAdvisoryLock(c, 1)
    with pg_database.connect() as c:
        with pytest.raises(LockError, match="PyMySQL"):
            MySQLUserLock(c, "k")


@pytest.mark.parametrize("lock_key", [42, (7, 8), "SHARDING_ROUTING_RULE:c1:m1:DB:r1:add"])
def test_pg_advisory_session_lock(pg_database: Database, lock_key: Any) -> None:
    dialect = pg_database.dialect
    with pg_database.connect() as ca, pg_database.connect() as cb, pg_database.connect() as mon:
        a, b = PgAdvisoryLock(ca, lock_key), PgAdvisoryLock(cb, lock_key)
        assert a.acquire()
        query(ca, "BEGIN")
        query(ca, "COMMIT")  # a session lock survives COMMIT (the bk-ci bug's ingredient)
        assert not b.acquire(timeout=0)
        assert not b.acquire(timeout=0.05)  # lock_timeout, outside a transaction
        assert not b.release()
        thread, box = _bg_acquire(b)
        pid_b = cb.info.backend_pid
        wait_until(lambda: any(w.waiter == pid_b and w.lock == "advisory lock" and w.holder == ca.info.backend_pid
                               for w in dialect.waits(mon, [pid_b, ca.info.backend_pid])),
                   what="advisory lock wait visible in the server")
        assert a.release()
        thread.join(10)
        assert box == {"got": True}
        assert b.release()


def test_pg_advisory_string_key_matches_sql(pg_database: Database) -> None:
    with pg_database.connect() as ca, pg_database.connect() as cb:
        lock = PgAdvisoryLock(ca, "rule-key")
        assert lock.acquire()
        assert query(cb, "SELECT pg_try_advisory_lock(hashtextextended('rule-key', 0))")[0][0] is False
        lock.release()
        assert query(cb, "SELECT pg_try_advisory_lock(hashtextextended('rule-key', 0))")[0][0] is True


def test_pg_advisory_xact_lock_is_released_by_commit(pg_database: Database) -> None:
    with pg_database.connect() as ca, pg_database.connect() as cb:
        query(ca, "CREATE TABLE t (x int)")
        query(ca, "BEGIN")
        a = PgAdvisoryLock(ca, 99, xact=True)
        assert a.acquire()
        assert not a.release()  # only COMMIT/ROLLBACK can release it
        query(cb, "BEGIN")
        b = PgAdvisoryLock(cb, 99, xact=True)
        query(cb, "INSERT INTO t VALUES (1)")
        assert not b.acquire(timeout=0.05)  # timed out inside a savepoint ...
        query(cb, "INSERT INTO t VALUES (2)")  # ... so b's transaction is still usable
        query(ca, "COMMIT")
        assert b.acquire(timeout=5)
        query(cb, "COMMIT")
        assert query(ca, "SELECT count(*) FROM t")[0][0] == 2
        with pytest.raises(LockError, match="inside a transaction"):
            PgAdvisoryLock(ca, 99, xact=True).acquire(timeout=0.05)


def test_user_lock_names_are_scoped_to_the_database_and_fit_get_lock() -> None:
    from harness.locks import user_lock_name

    assert user_lock_name("harness_a1", "rule-r1") == "harness_a1:rule-r1"
    assert user_lock_name("harness_a1", "rule-r1") != user_lock_name("harness_b2", "rule-r1")
    long_key = "SHARDING_ROUTING_RULE:c1:PROCESS:DB:r1:add" * 2
    name = user_lock_name("harness_0123456789ab", long_key)
    assert len(name) <= 64 and name.startswith("harness_0123456789ab:")
    assert name != user_lock_name("harness_0123456789ab", long_key + "x")
