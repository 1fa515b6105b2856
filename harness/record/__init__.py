"""Recording: from a real run, or a server log someone copied, to a replayable, explorable scenario.

``record`` turns on the servers' own statement logging (PostgreSQL csvlog, the MariaDB general log)
around a command, ``import_log`` reads such a log from a file; both make one scenario session per
client connection and write it as YAML (see docs/recording.md).
"""

from __future__ import annotations

from .api import RecordReport, import_log, record
from .statements import Statement

__all__ = ["RecordReport", "Statement", "import_log", "record"]
