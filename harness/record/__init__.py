"""Recording: from a real run, or a server log someone copied, to a replayable, explorable scenario.

``record`` turns on the servers' own statement logging (PostgreSQL csvlog, the MariaDB general log)
around a command, ``import_log`` reads such a log from a file; both make one scenario session per
client connection and write it as YAML (see docs/recording.md).  The names load on first use, so
``harness --help`` (which registers the record commands) does not import psycopg and sqlparse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import RecordReport, import_log, record
    from .statements import Statement

__all__ = ["RecordReport", "Statement", "import_log", "record"]
_HOMES = {"RecordReport": "api", "import_log": "api", "record": "api", "Statement": "statements"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
