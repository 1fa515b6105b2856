"""Instants as the clocks take them: a datetime, an ISO string or epoch seconds, always meant as UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from .errors import ClockError


def to_datetime(at: datetime | str | float | int) -> datetime:
    """An aware UTC datetime from a datetime, an ISO string (``2024-01-01 00:00:00+00``) or epoch
    seconds.  Naive values are taken as UTC, so a scenario means the same instant on every server."""
    if isinstance(at, (int, float, Decimal)) and not isinstance(at, bool):
        return datetime.fromtimestamp(float(at), timezone.utc)
    if isinstance(at, str):
        text = at.strip()
        if text[-3:-2] in "+-" and text[-2:].isdigit() and ":" in text[:-3]:
            text += ":00"  # PostgreSQL's "+00" offset form
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise ClockError(f"cannot read the instant {at!r}; write it as ISO 8601, e.g. "
                             "'2024-01-01 00:00:00+00' or '2024-01-01T00:00:00.123Z'.") from None
    if not isinstance(at, datetime):
        raise ClockError(f"an instant must be a datetime, an ISO string or epoch seconds, not {at!r}.")
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def to_micros(at: datetime | str | float | int) -> int:
    delta = to_datetime(at) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
