"""race-harness: replay and explore interleavings of database sessions on real servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import HarnessError, ProvisionError, ScenarioError

if TYPE_CHECKING:
    from .config import Settings, load_settings
    from .provision import Database, Server, start_server

__version__ = "0.1.0"

#: imported on first use: ``harness --help`` must not pay for the database drivers (psycopg alone is
#: ~100 ms of the command's start-up)
_LAZY = {"Settings": ".config", "load_settings": ".config", "Database": ".provision", "Server": ".provision",
         "start_server": ".provision"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Database", "HarnessError", "ProvisionError", "ScenarioError", "Server", "Settings",
           "load_settings", "start_server", "__version__"]
