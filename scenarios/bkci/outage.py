"""The bk-ci rule service when its Redis lock service is down: fail open or fail closed.

Lock helpers often swallow a Redis error and let the request through ("better a rare duplicate than
an outage"). :class:`DegradingLock` models that choice around any lock: with ``fail_open`` an
unreachable Redis counts as acquired, so two requests run the check-then-insert unprotected -- even
with the fixed order (commit inside the lock) the rule is saved twice.  Failing closed rejects the
request instead (:class:`RuleLockTimeout`), which the caller reports as "try again".
"""

from __future__ import annotations

from typing import Any

import redis

from .actors import RULE
from .rules import Lock, RuleLockTimeout, save_rule


class DegradingLock:
    """A lock that, when the lock service cannot be reached, lets the caller in (fail open) or not."""

    def __init__(self, inner: Lock, *, fail_open: bool) -> None:
        self.inner, self.fail_open, self.degraded = inner, fail_open, False

    def acquire(self, timeout: float | None = None) -> bool:
        try:
            return self.inner.acquire(timeout)
        except redis.ConnectionError:
            if not self.fail_open:
                raise RuleLockTimeout("lock service unreachable") from None
            self.degraded = True  # proceed without the lock
            return True

    def release(self) -> bool:
        if self.degraded:
            return False
        try:
            return self.inner.release()
        except redis.ConnectionError:
            return False  # the lease will expire by itself


def save_rule_during_outage(ctx: Any, *, fail_open: bool) -> str:
    """One request saving the shared rule with the fixed code (commit inside the lock)."""
    lock = DegradingLock(ctx.lock("redis", RULE.lock_key), fail_open=fail_open)
    try:
        return "inserted" if save_rule(ctx.connect(), lock, RULE, variant="commit-inside-lock") else "exists"
    except RuleLockTimeout:
        return "rejected"
