"""The harness actions YAML steps can use: clock, lock, unlock, expire_lease, point, and the fault steps
kill_session, inject_error and lose_commit_ack.

Each action runs in its session's worker thread with an :class:`~harness.engine.ActionContext` and
returns a :class:`StepResult` (a user mistake in ``args`` is a step *error* with code ``harness``, so
the trace shows it where it happened).  A Redis lock wait is invisible to the database, so the lock
action reports it through ``ctx.waiting`` and the engine treats the session as blocked; GET_LOCK and
advisory lock waits happen in the server, where the engine sees them itself.

Redis keys are namespaced by the session's database name (``harness:<db>:<key>``): every scenario run
gets a fresh database, so runs sharing one Redis server never see each other's locks.  A session's
lock token is ``<session>:<nonce>``, so an ``unlock`` step finds its own ``lock`` step's token without
keeping lock objects between steps, and a waiter can name the holder session.  The nonce is fixed
(``run``): the namespace already makes tokens unique, and a token that changed from run to run would
make the same interleaving give different step results.

Fault steps act on another session through ``ctx.faults`` (:class:`~harness.engine.FaultPort`): the
engine's in a listed interleaving, the explorer's Race when a scenario is explored; the action itself
only checks its args for the backend it runs on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .clock import DbClock, is_mysql, query
from .dialect import ConnInfo
from .errors import ActionArgsError, HarnessError
from .locks import BackoffObserver, MySQLUserLock, PgAdvisoryLock, RedisLock, expire_lease, user_lock_name
from .scenario.model import FAULT_ACTIONS
from .steps import Action, ActionContext
from .trace import ErrorInfo, ResultSet, StepResult

LOCK_KINDS = ("redis", "get_lock", "advisory", "advisory_xact")
CLOCK_ARGS = ("freeze", "advance_ms", "unfreeze", "all_sessions")
LOCK_ARGS = ("kind", "key", "ttl_ms", "timeout_ms")
FAULT_ARGS = FAULT_ACTIONS  # fault step -> the args it takes
INJECTED_MESSAGE = "injected by the harness"  # inject_error's message when the step gives none


def _fail(message: str, code: str = "harness") -> StepResult:
    return StepResult(error=ErrorInfo(code, message))


def _row(command: str, **values: Any) -> StepResult:
    cols = list(values)
    return StepResult([ResultSet(cols, [[None if v is None else str(v) for v in values.values()]], command, 1)])


def _check_args(ctx: ActionContext, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(ctx.args) - set(allowed))
    if unknown:
        raise ActionArgsError(f"unknown args {', '.join(unknown)}; this action takes {', '.join(allowed)}.")


def _ms(ctx: ActionContext, name: str, default: float | None) -> float | None:
    raw = ctx.args.get(name, default)
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ActionArgsError(f"{name} must be a number of milliseconds, not {raw!r}.") from None
    if value < 0:
        raise ActionArgsError(f"{name} must not be negative, not {raw!r}.")
    return value


def database_name(conn: Any) -> str:
    return str(query(conn, "SELECT DATABASE()" if is_mysql(conn) else "SELECT current_database()")[0][0])


# -- clock ----------------------------------------------------------------------------------------

def clock_action(ctx: ActionContext) -> StepResult:
    """``{freeze: "2024-01-01 00:00:00+00"}`` | ``{advance_ms: 5}`` | ``{unfreeze: true}``, each with
    optional ``all_sessions: true`` (PostgreSQL only)."""
    try:
        _check_args(ctx, CLOCK_ARGS)
        ops = [k for k in ("freeze", "advance_ms", "unfreeze") if k in ctx.args]
        if len(ops) != 1:
            raise ActionArgsError("a clock step needs exactly one of freeze: <instant>, advance_ms: <ms> or "
                                  "unfreeze: true.")
        everyone = bool(ctx.args.get("all_sessions", False))
        clock = DbClock(ctx.dialect.name)
        if ops[0] == "freeze":
            at = clock.freeze(ctx.conn, ctx.args["freeze"], all_sessions=everyone)
        elif ops[0] == "advance_ms":
            at = clock.advance(ctx.conn, _ms(ctx, "advance_ms", 0.0) or 0.0, all_sessions=everyone)
        else:
            clock.unfreeze(ctx.conn, all_sessions=everyone)
            at = clock.now(ctx.conn)
    except HarnessError as exc:
        return _fail(str(exc))
    scope = "all sessions" if everyone else "session"
    return _row(f"CLOCK {ops[0]} ({scope})", clock=at.isoformat(sep=" "))


# -- locks ----------------------------------------------------------------------------------------

@dataclass
class _StepObserver:
    """A lock observer for engine steps: client-side waits become ``ctx.waiting`` (a blocked step)."""

    ctx: ActionContext
    backoff: BackoffObserver = field(default_factory=BackoffObserver)

    def blocked(self, lock: str, key: str, holder: str | None) -> None:
        holder_session = holder.split(":", 1)[0] if holder and ":" in holder else None
        self.ctx.waiting(lock, holder_session if holder_session != self.ctx.session else None, key)
        self.backoff.blocked(lock, key, holder)

    def retry_wait(self) -> None:
        self.backoff.retry_wait()

    def unblocked(self) -> None:
        self.ctx.done_waiting()
        self.backoff.unblocked()

    def point(self, label: str) -> None:
        pass

    def done(self, op: str, lock: str, key: str, ok: bool) -> None:
        pass  # a step's lock result is its row (acquired / released)


@dataclass
class LockActions:
    """The lock, unlock and expire_lease actions, sharing one lazily made Redis client."""

    redis_info: Callable[[], ConnInfo] | None = None
    nonce: str = "run"
    default_timeout_ms: float = 30_000  # a Redis wait is a client loop: the engine cannot cancel it
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def redis(self) -> Any:
        with self._lock:
            if self._client is None:
                if self.redis_info is None:
                    raise ActionArgsError("this run has no Redis server for kind: redis locks; run with a Redis "
                                          "server (harness run starts one; pass redis_info to build_actions).")
                import redis

                info = self.redis_info()
                self._client = redis.Redis(host=info.host, port=info.port, password=info.password or None,
                                           db=int(info.dbname or 0), socket_timeout=30)
            return self._client

    def _kind(self, ctx: ActionContext) -> str:
        kind = str(ctx.args.get("kind", "redis"))
        if kind not in LOCK_KINDS:
            raise ActionArgsError(f"unknown lock kind {kind!r}; expected one of {', '.join(LOCK_KINDS)}.")
        if kind == "get_lock" and ctx.dialect.name != "mysql":
            raise ActionArgsError("kind: get_lock is MariaDB/MySQL's GET_LOCK; on PostgreSQL use kind: advisory.")
        if kind.startswith("advisory") and ctx.dialect.name != "postgres":
            raise ActionArgsError(f"kind: {kind} is a PostgreSQL advisory lock; on MariaDB/MySQL use kind: get_lock.")
        return kind

    def _key(self, ctx: ActionContext) -> Any:
        key = ctx.args.get("key")
        if key is None or key == "":
            raise ActionArgsError("a lock step needs key: <name>.")
        return key

    def redis_key(self, ctx: ActionContext, key: Any) -> str:
        return f"harness:{database_name(ctx.conn)}:{key}"

    def token(self, session: str) -> str:
        return f"{session}:{self.nonce}"

    def _lock_for(self, ctx: ActionContext, kind: str, key: Any, observer: Any = None) -> Any:
        if kind == "redis":
            ttl = _ms(ctx, "ttl_ms", 30_000.0) or 30_000.0
            return RedisLock(self.redis(), self.redis_key(ctx, key), int(ttl), self.token(ctx.session), observer)
        if kind == "get_lock":
            return MySQLUserLock(ctx.conn, user_lock_name(database_name(ctx.conn), str(key)), observer)
        return PgAdvisoryLock(ctx.conn, key, xact=kind == "advisory_xact", observer=observer)

    def lock(self, ctx: ActionContext) -> StepResult:
        """Acquire; a lock not acquired within ``timeout_ms`` is a step error with code ``lock_timeout``."""
        try:
            _check_args(ctx, LOCK_ARGS)
            kind, key = self._kind(ctx), self._key(ctx)
            default = self.default_timeout_ms if kind == "redis" else None
            timeout_ms = _ms(ctx, "timeout_ms", default)
            lk = self._lock_for(ctx, kind, key, ctx.lock_observer or _StepObserver(ctx))
            got = lk.acquire(None if timeout_ms is None else timeout_ms / 1000.0)
        except HarnessError as exc:
            return _fail(str(exc))
        if not got:
            return _fail(f"{kind} lock {key!r} not acquired within {timeout_ms:g} ms", "lock_timeout")
        return _row(f"LOCK {kind} {key}", acquired="t", holder=lk.holder_token)

    def unlock(self, ctx: ActionContext) -> StepResult:
        """Release; ``released`` is f when the lock was not ours any more (lease expired, or never held)."""
        try:
            _check_args(ctx, LOCK_ARGS)
            kind, key = self._kind(ctx), self._key(ctx)
            released = self._lock_for(ctx, kind, key).release()
        except HarnessError as exc:
            return _fail(str(exc))
        return _row(f"UNLOCK {kind} {key}", released="t" if released else "f")

    def expire(self, ctx: ActionContext) -> StepResult:
        """The lease-expiry fault on a Redis lock: the holder's key vanishes, the holder is not told."""
        try:
            _check_args(ctx, ("key", "kind"))
            if ctx.args.get("kind", "redis") != "redis":
                raise ActionArgsError("only Redis locks have leases; expire_lease takes kind: redis (the default).")
            key = self._key(ctx)
            record = expire_lease(self.redis(), self.redis_key(ctx, key))
        except HarnessError as exc:
            return _fail(str(exc))
        holder = record.holder.split(":", 1)[0] if record.holder else None
        return _row(f"FAULT expire_lease {key}", fault="expire_lease", key=str(key), holder=holder)


# -- faults ---------------------------------------------------------------------------------------

def _for_backend(ctx: ActionContext, name: str) -> str | None:
    """An arg given plainly or as ``{postgres: …, mysql: …}``, for the backend this step runs on."""
    raw = ctx.args.get(name)
    if isinstance(raw, Mapping):
        raw = raw.get(ctx.dialect.name)
    return None if raw is None or str(raw).strip() == "" else str(raw).strip()


def fault_action(kind: str) -> Action:
    """The ``kind`` fault step (kill_session, inject_error, lose_commit_ack) on ``args.session``;
    inject_error also takes ``code`` (SQLSTATE / MySQL error number) and ``message``."""
    if kind not in FAULT_ARGS:
        raise HarnessError(f"unknown fault {kind!r}; expected one of {', '.join(FAULT_ARGS)}.")

    def act(ctx: ActionContext) -> StepResult:
        try:
            _check_args(ctx, FAULT_ARGS[kind])
            victim = str(ctx.args.get("session") or "")
            if not victim:
                raise ActionArgsError(f"a {kind} step needs args: {{session: <name>}}.")
            if ctx.faults is None:
                raise ActionArgsError(f"{kind} needs a run that can place faults (the engine or the explorer).")
            if kind == "inject_error":
                code = _for_backend(ctx, "code")
                if code is None:
                    raise ActionArgsError(f"inject_error needs a code for {ctx.dialect.name}: "
                                          "code: {postgres: SQLSTATE, mysql: error number}.")
                message = _for_backend(ctx, "message") or INJECTED_MESSAGE
                try:
                    ctx.dialect.make_error(code, message)  # the driver must know it, as for a real error
                except (KeyError, ValueError):
                    what = "a SQLSTATE psycopg knows" if ctx.dialect.name == "postgres" else "a MySQL error number"
                    raise ActionArgsError(f"code {code!r} is not {what} (e.g. "
                                          f"{'40001' if ctx.dialect.name == 'postgres' else '1213'}).") from None
                ctx.faults.inject_error(victim, code, message)
            elif kind == "kill_session":
                ctx.faults.kill_session(victim)
            else:
                ctx.faults.lose_commit_ack(victim)
        except HarnessError as exc:
            return _fail(str(exc))
        return _row(f"FAULT {kind} {victim}", fault=kind, session=victim)

    act.__name__ = f"{kind}_action"
    return act


def point_action(ctx: ActionContext) -> StepResult:
    """A named scheduling point; does nothing but appear in the trace."""
    label = str(ctx.args.get("label", ""))
    return StepResult([ResultSet(command=f"POINT {label}".rstrip())])


def build_actions(backend: str, redis_info: Callable[[], ConnInfo] | None = None) -> dict[str, Action]:
    """All harness actions for one run on ``backend``; ``redis_info`` starts/finds Redis on first use."""
    if backend not in ("postgres", "mysql"):
        raise HarnessError(f"no harness actions for backend {backend!r}; expected postgres or mysql.")
    locks = LockActions(redis_info)
    return {"clock": clock_action, "lock": locks.lock, "unlock": locks.unlock, "expire_lease": locks.expire,
            "point": point_action, **{kind: fault_action(kind) for kind in FAULT_ACTIONS}}


__all__ = ["FAULT_ARGS", "LOCK_KINDS", "ActionArgsError", "LockActions", "build_actions", "clock_action", "fault_action",
           "point_action"]
