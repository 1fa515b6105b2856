"""Distributed locks as real services, instrumented so a scheduler can see who waits for whom.

Application code (the seed models) and YAML ``lock`` steps use the same classes.  Every lock has
``acquire(timeout) -> bool``, ``release() -> bool``, ``key`` and ``holder_token``, and reports to an
optional :class:`LockObserver`:

* ``point(label)`` before every lock operation: a scheduling point where the explorer may switch actors;
* ``blocked(lock, key, holder)`` / ``retry_wait()`` / ``unblocked()`` around a *client-side* wait.

A Redis lock waits by retrying in the client, invisible to any database, so it must call
``blocked``/``retry_wait``.  GET_LOCK and ``pg_advisory_lock`` wait inside the server, where the
engine's wait-for query already sees them ('user lock' / 'advisory lock'), so they only call ``point``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .clock import in_transaction, is_mysql, query
from .errors import LockError

#: compare-and-delete: only the holder whose token is stored may delete the key (bk-ci's unlock)
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
else
    return 0
end
"""
#: delete the key whoever holds it and say whose lease vanished (the lease-expiry fault)
EXPIRE_SCRIPT = """
local holder = redis.call('get', KEYS[1])
if holder then redis.call('del', KEYS[1]) end
return holder
"""
#: GET_LOCK with a negative timeout returns NULL on MariaDB 10.11 (measured), so "forever" is a year
_FOREVER_S = 365 * 24 * 3600


class LockObserver(Protocol):
    """How a lock tells a scheduler about its waits; the explorer implements this."""

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        """An attempt failed and the caller will wait (holder: the token found, if known)."""

    def retry_wait(self) -> None:
        """Between attempts: return when it is worth retrying (the explorer: when another actor moved)."""

    def unblocked(self) -> None:
        """The wait is over (acquired, or gave up)."""

    def point(self, label: str) -> None:
        """A scheduling point before every lock operation."""

    # optional: ``done(op, lock, key, ok)`` -- an ``acquire`` or ``release`` finished (``ok``: got /
    # released it), for the trace's lock spans; observers written before it need not have it


@dataclass
class BackoffObserver:
    """The default observer: no scheduler, a short bounded back-off between attempts (1 ms doubling to
    ``max_delay``).  The lock checks its own deadline after each wait, so it overshoots a timeout by at
    most ``max_delay``."""

    first_delay: float = 0.001
    max_delay: float = 0.020
    _delay: float = 0.0

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        if self._delay == 0.0:
            self._delay = self.first_delay

    def retry_wait(self) -> None:
        time.sleep(self._delay or self.first_delay)
        self._delay = min((self._delay or self.first_delay) * 2, self.max_delay)

    def unblocked(self) -> None:
        self._delay = 0.0

    def point(self, label: str) -> None:
        pass

    def done(self, op: str, lock: str, key: str, ok: bool) -> None:
        pass


def _done(observer: Any, op: str, lock: str, key: str, ok: bool) -> None:
    done = getattr(observer, "done", None)
    if done is not None:
        done(op, lock, key, ok)


def _deadline(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise LockError(f"a lock timeout must be None (wait forever) or >= 0 seconds, not {timeout}.")
    return None if timeout is None else time.monotonic() + timeout


def new_token(owner: str = "") -> str:
    """A holder token; ``owner:random`` lets a scheduler name the holder session."""
    return f"{owner}:{secrets.token_hex(8)}" if owner else secrets.token_hex(8)


# -- Redis ------------------------------------------------------------------------------------------

@dataclass
class RedisLock:
    """``SET key token NX PX ttl`` in a retry loop; release is a compare-and-delete Lua script.

    A faithful copy of the lock in bk-ci's routing-rule code: the TTL is a lease, so if the holder
    stalls past it (or :func:`expire_lease` fires), a second holder gets in while the first still
    believes it holds the lock -- and the first's release then must not delete the second's key.
    """

    client: Any  # redis.Redis
    key: str
    ttl_ms: int = 30_000
    token: str = field(default_factory=new_token)
    observer: LockObserver | None = None
    held: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise LockError("a Redis lock needs a non-empty key.")
        if self.ttl_ms <= 0:
            raise LockError(f"a Redis lock's ttl_ms must be positive, not {self.ttl_ms}.")
        self._obs: LockObserver = self.observer or BackoffObserver()

    @property
    def holder_token(self) -> str:
        return self.token

    def try_acquire(self) -> bool:
        """One attempt: SET NX PX."""
        self._obs.point(f"redis:acquire:{self.key}")
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def acquire(self, timeout: float | None = None) -> bool:
        deadline = _deadline(timeout)
        waiting = False
        try:
            while not self.try_acquire():
                holder = self.client.get(self.key)
                if deadline is not None and time.monotonic() >= deadline:
                    _done(self._obs, "acquire", "redis lock", self.key, False)
                    return False
                holder_text = holder.decode() if isinstance(holder, bytes) else holder
                self._obs.blocked("redis lock", self.key, holder_text)
                waiting = True
                self._obs.retry_wait()
            _done(self._obs, "acquire", "redis lock", self.key, True)
            return True
        finally:
            if waiting:
                self._obs.unblocked()

    def release(self) -> bool:
        """Delete the key only if it still holds our token; False if the lease was lost to someone else."""
        self._obs.point(f"redis:release:{self.key}")
        self.held = False
        released = bool(self.client.eval(RELEASE_SCRIPT, 1, self.key, self.token))
        _done(self._obs, "release", "redis lock", self.key, released)
        return released

    def current_holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def __enter__(self) -> "RedisLock":
        if not self.acquire():
            raise LockError(f"could not acquire Redis lock {self.key!r}.")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class LeaseExpiry:
    """A record of the lease-expiry fault: whose lease on which key vanished, and when (epoch s)."""

    key: str
    holder: str | None
    at: float


def expire_lease(redis_client: Any, key: str) -> LeaseExpiry:
    """Make the current holder's lease on ``key`` vanish now, as if its TTL ran out while it stalled.

    The holder is not told (that is the point): it still thinks it holds the lock, a second client's
    SET NX now succeeds, and the first's compare-and-delete release will find another token.
    """
    holder = redis_client.eval(EXPIRE_SCRIPT, 1, key)
    return LeaseExpiry(key, holder.decode() if isinstance(holder, bytes) else holder, time.time())


# -- MariaDB/MySQL GET_LOCK -------------------------------------------------------------------------

def user_lock_name(database: str, key: str) -> str:
    """A GET_LOCK name scoped to one database: user locks are server-wide, and parallel runs sharing a
    server use the same key names (measured: two xdist workers' races on ``rule-r1`` contended and
    their schedules stopped being reproducible).  Names longer than GET_LOCK's 64 characters keep a
    hash of the key."""
    name = f"{database}:{key}"
    if len(name) <= 64:
        return name
    return f"{database}:{hashlib.sha256(key.encode()).hexdigest()[:63 - len(database)]}"


@dataclass
class MySQLUserLock:
    """``GET_LOCK(key, timeout)`` / ``RELEASE_LOCK(key)`` on one connection (the lock belongs to the
    connection's session, not to a transaction: COMMIT does not release it)."""

    conn: Any
    key: str
    observer: LockObserver | None = None
    held: bool = False

    def __post_init__(self) -> None:
        if not is_mysql(self.conn):
            raise LockError("MySQLUserLock needs a PyMySQL connection; on PostgreSQL use PgAdvisoryLock.")
        if not self.key or len(self.key) > 64:
            raise LockError(f"a GET_LOCK name must have 1 to 64 characters, not {len(self.key)} ({self.key!r}).")

    @property
    def holder_token(self) -> str:
        return str(self.conn.thread_id())

    def acquire(self, timeout: float | None = None) -> bool:
        if self.observer:
            self.observer.point(f"get_lock:acquire:{self.key}")
        _deadline(timeout)
        seconds = _FOREVER_S if timeout is None else timeout
        got = query(self.conn, "SELECT GET_LOCK(%s, %s)", (self.key, seconds))[0][0]
        if got is None:
            raise LockError(f"GET_LOCK({self.key!r}) failed in the server (killed, or out of memory).")
        self.held = int(got) == 1
        if self.observer:
            _done(self.observer, "acquire", "user lock", self.key, self.held)
        return self.held

    def release(self) -> bool:
        """True if this session held the lock and released it; False if another session holds it or
        nobody does."""
        if self.observer:
            self.observer.point(f"get_lock:release:{self.key}")
        self.held = False
        released = query(self.conn, "SELECT RELEASE_LOCK(%s)", (self.key,))[0][0]
        ok = released is not None and int(released) == 1
        if self.observer:
            _done(self.observer, "release", "user lock", self.key, ok)
        return ok

    def holder(self) -> int | None:
        """The connection id holding the lock (IS_USED_LOCK), if any."""
        value = query(self.conn, "SELECT IS_USED_LOCK(%s)", (self.key,))[0][0]
        return None if value is None else int(value)


# -- PostgreSQL advisory locks ----------------------------------------------------------------------

def advisory_key(key: int | str | tuple[int, int]) -> tuple[str, tuple[Any, ...]]:
    """The SQL arguments of an advisory lock function for ``key``: an int (the bigint form), a pair of
    ints (the (int, int) form, e.g. Kinto's (hashtext(parent), hashtext(resource))), or a string hashed
    by the server with ``hashtextextended(key, 0)``, so SQL steps can name the same lock."""
    if isinstance(key, bool):
        raise LockError("an advisory lock key must be an int, a pair of ints or a string, not a bool.")
    if isinstance(key, int):
        return "%s::bigint", (key,)
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) and not isinstance(k, bool) for k in key):
        return "%s::int, %s::int", key
    if isinstance(key, str) and key:
        return "hashtextextended(%s, 0)", (key,)
    raise LockError(f"an advisory lock key must be an int, a pair of ints or a non-empty string, not {key!r}.")


@dataclass
class PgAdvisoryLock:
    """``pg_advisory_lock`` (session: held until unlock or disconnect, survives COMMIT) or, with
    ``xact=True``, ``pg_advisory_xact_lock`` (held until the transaction ends; ``release`` cannot
    release it and returns False).  A timeout uses ``lock_timeout`` inside a savepoint, so a timed-out
    attempt does not abort the caller's transaction."""

    conn: Any
    key: int | str | tuple[int, int]
    xact: bool = False
    observer: LockObserver | None = None
    held: bool = False

    def __post_init__(self) -> None:
        if is_mysql(self.conn):
            raise LockError("PgAdvisoryLock needs a PostgreSQL connection; on MariaDB/MySQL use MySQLUserLock.")
        self._sql_args, self._args = advisory_key(self.key)

    @property
    def kind(self) -> str:
        return "advisory_xact" if self.xact else "advisory"

    @property
    def holder_token(self) -> str:
        return str(self.conn.info.backend_pid)

    def _fn(self, name: str) -> str:
        return f"{name}({self._sql_args})"

    def acquire(self, timeout: float | None = None) -> bool:
        if self.observer:
            self.observer.point(f"{self.kind}:acquire:{self.key}")
        got = self._acquire(timeout)
        if self.observer:
            _done(self.observer, "acquire", "advisory lock", str(self.key), got)
        return got

    def _acquire(self, timeout: float | None) -> bool:
        _deadline(timeout)
        lock_fn = "pg_advisory_xact_lock" if self.xact else "pg_advisory_lock"
        if timeout is None:
            query(self.conn, "SELECT " + self._fn(lock_fn), self._args)
        elif timeout == 0:
            try_fn = "pg_try_advisory_xact_lock" if self.xact else "pg_try_advisory_lock"
            got = query(self.conn, "SELECT " + self._fn(try_fn), self._args)[0][0]
            self.held = got in (True, "t")
            return self.held
        else:
            self.held = self._acquire_with_timeout(lock_fn, timeout)
            return self.held
        self.held = True
        return True

    def _acquire_with_timeout(self, lock_fn: str, timeout: float) -> bool:
        ms = max(1, int(timeout * 1000))
        own_tx = not in_transaction(self.conn)
        if own_tx and self.xact:
            raise LockError("a transaction-scoped advisory lock with a timeout must be taken inside a transaction.")
        if own_tx:
            old = query(self.conn, "SELECT current_setting('lock_timeout')")[0][0]
            query(self.conn, "SELECT set_config('lock_timeout', %s, false)", (f"{ms}ms",))
            try:
                query(self.conn, "SELECT " + self._fn(lock_fn), self._args)
                return True
            except Exception as exc:
                if _sqlstate(exc) != "55P03":
                    raise
                if in_transaction(self.conn):  # a non-autocommit driver opened one for us
                    self.conn.rollback()
                return False
            finally:
                query(self.conn, "SELECT set_config('lock_timeout', %s, false)", (old,))
        query(self.conn, "SAVEPOINT harness_lock")
        old = query(self.conn, "SELECT current_setting('lock_timeout')")[0][0]
        query(self.conn, "SELECT set_config('lock_timeout', %s, true)", (f"{ms}ms",))
        try:
            query(self.conn, "SELECT " + self._fn(lock_fn), self._args)
        except Exception as exc:
            if _sqlstate(exc) != "55P03":
                raise
            query(self.conn, "ROLLBACK TO SAVEPOINT harness_lock")
            query(self.conn, "RELEASE SAVEPOINT harness_lock")
            return False
        query(self.conn, "SELECT set_config('lock_timeout', %s, true)", (old,))
        query(self.conn, "RELEASE SAVEPOINT harness_lock")
        return True

    def release(self) -> bool:
        """Session lock: True if this session held it.  Transaction lock: False (COMMIT/ROLLBACK releases)."""
        if self.observer:
            self.observer.point(f"{self.kind}:release:{self.key}")
        self.held = False
        released = not self.xact and query(self.conn, "SELECT " + self._fn("pg_advisory_unlock"),
                                           self._args)[0][0] in (True, "t")
        if self.observer:
            _done(self.observer, "release", "advisory lock", str(self.key), released)
        return released


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


__all__ = ["BackoffObserver", "LeaseExpiry", "LockError", "LockObserver", "MySQLUserLock", "PgAdvisoryLock",
           "RedisLock", "advisory_key", "expire_lease", "new_token"]
