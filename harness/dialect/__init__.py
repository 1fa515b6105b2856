"""Backend dialects: look one up by backend name."""

from __future__ import annotations

from .base import ConnInfo, Dialect, Wait, execute
from .mysql import MySQLDialect
from .postgres import PostgresDialect

_DIALECTS: dict[str, type[Dialect]] = {"postgres": PostgresDialect, "mysql": MySQLDialect}


def dialect_for(backend: str) -> Dialect:
    """The dialect of a backend name (``postgres`` or ``mysql``)."""
    return _DIALECTS[backend]()


__all__ = ["ConnInfo", "Dialect", "Wait", "dialect_for", "execute"]
