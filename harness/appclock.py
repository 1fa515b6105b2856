"""The application clock: an injectable, freezable clock with per-actor skew for Python code under test
(the database clock is :mod:`harness.clock`'s ``DbClock``; both are re-exported there)."""

from __future__ import annotations

import threading
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .instants import from_micros, to_micros


@dataclass
class FakeClock:
    """An injectable clock for Python code under test: real time unless frozen, plus skew per actor.

    ``time(actor)`` = (frozen instant, or ``source()`` + offset) + that actor's skew, in epoch seconds.
    State is kept in integer microseconds, so a thousand 1 ms advances make exactly one second.
    Thread-safe: actors run in their own threads and read while the test freezes/advances.
    """

    source: Callable[[], float] = _time.time
    _frozen_us: int | None = None
    _offset_us: int = 0
    _skew_us: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _base_us(self) -> int:  # under the lock
        if self._frozen_us is not None:
            return self._frozen_us
        return round(self.source() * 1_000_000) + self._offset_us

    def time(self, actor: str | None = None) -> float:
        with self._lock:
            return (self._base_us() + (self._skew_us.get(actor, 0) if actor is not None else 0)) / 1e6

    def now(self, actor: str | None = None, tz: timezone = timezone.utc) -> datetime:
        with self._lock:
            us = self._base_us() + (self._skew_us.get(actor, 0) if actor is not None else 0)
        return from_micros(us).astimezone(tz)

    def freeze(self, at: datetime | str | float | int | None = None) -> float:
        """Stop the clock at ``at`` (default: the current reading); returns epoch seconds."""
        with self._lock:
            self._frozen_us = self._base_us() if at is None else to_micros(at)
            return self._frozen_us / 1e6

    def unfreeze(self) -> None:
        with self._lock:
            self._frozen_us, self._offset_us = None, 0

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_us is not None

    def advance(self, ms: float = 0.0, *, seconds: float = 0.0) -> float:
        """Move the clock forward (frozen: the instant; running: an offset to real time)."""
        step = round(seconds * 1_000_000 + ms * 1000)
        with self._lock:
            if self._frozen_us is not None:
                self._frozen_us += step
            else:
                self._offset_us += step
            return self._base_us() / 1e6

    def skew(self, actor: str, ms: float) -> None:
        """Make ``actor``'s clock read ``ms`` ahead (negative: behind) of everyone else's."""
        with self._lock:
            self._skew_us[actor] = round(ms * 1000)

    def sleep(self, seconds: float) -> None:
        """A sleep for code under test: a frozen clock just advances; a running one really sleeps."""
        with self._lock:
            if self._frozen_us is not None:
                self._frozen_us += round(seconds * 1_000_000)
                return
        _time.sleep(seconds)

    def for_actor(self, actor: str) -> "ActorClock":
        return ActorClock(self, actor)


@dataclass(frozen=True)
class ActorClock:
    """One actor's view of a :class:`FakeClock` (pass it where code wants ``time()``/``now()``)."""

    clock: FakeClock
    actor: str

    def time(self) -> float:
        return self.clock.time(self.actor)

    def now(self, tz: timezone = timezone.utc) -> datetime:
        return self.clock.now(self.actor, tz)
