"""The PostgreSQL version ``isolationtester -V`` reports, found without importing a database driver
(``-V`` is asked once per spec by pg_isolation_regress: its start-up time counts)."""

from __future__ import annotations

import os
import shutil
import subprocess


def pg_version() -> str:
    """The PG_VERSION isolationtester -V reports (pg_isolation_regress compares it with its own)."""
    if os.environ.get("ISOLATIONTESTER_PG_VERSION"):
        return os.environ["ISOLATIONTESTER_PG_VERSION"]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            text = subprocess.run([pg_config, "--version"], capture_output=True, text=True, timeout=10).stdout
            if text.startswith("PostgreSQL "):
                return text[len("PostgreSQL "):].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "15"
