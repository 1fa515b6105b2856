"""Backend dialects: look one up by backend name."""

from __future__ import annotations

import importlib

from .base import ConnInfo, Dialect, Wait, execute

#: backend -> (module, class): imported when first asked for, so a PostgreSQL-only command (the
#: isolationtester drop-in, run once per spec) does not pay for PyMySQL and its crypto imports
_DIALECTS: dict[str, tuple[str, str]] = {"postgres": (".postgres", "PostgresDialect"),
                                         "mysql": (".mysql", "MySQLDialect")}


def dialect_for(backend: str) -> Dialect:
    """The dialect of a backend name (``postgres`` or ``mysql``)."""
    module, name = _DIALECTS[backend]
    cls: type[Dialect] = getattr(importlib.import_module(module, __name__), name)
    return cls()


__all__ = ["ConnInfo", "Dialect", "Wait", "dialect_for", "execute"]
