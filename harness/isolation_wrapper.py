"""``harness isolation-wrapper DIR``: a folder from which ``pg_isolation_regress`` runs our drop-in.

pg_isolation_regress starts the ``isolationtester`` found next to itself, once per spec (``make
installcheck``), so the folder holds a copy of the real pg_isolation_regress (a symlink would not do:
it resolves its own path through links) and an ``isolationtester`` script.  The script starts Python
with ``-S`` and imports only :mod:`harness.isolation`: the drop-in needs nothing outside the standard
library and this package (it calls libpq through ctypes), and ``site``'s processing of every installed
package's ``.pth`` files cost 20-40 ms per spec here, where the C binary starts in 4 ms.  Paths are
written as Python literals: nothing from the command line becomes code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError

SCRIPT = '''#!{python} -S
# written by `harness isolation-wrapper`: PostgreSQL's isolationtester, as race-harness's drop-in
import sys
sys.path.insert(0, {root!r})
from harness.isolation import main
sys.exit(main())
'''


def find_pg_isolation_regress() -> Path | None:
    """pg_isolation_regress of the PostgreSQL whose pg_config is on PATH (PGXS installs it)."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        pgxs = subprocess.run([pg_config, "--pgxs"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    # .../lib/pgxs/src/makefiles/pgxs.mk -> .../lib/pgxs/src/test/isolation/pg_isolation_regress
    candidate = Path(pgxs).parent.parent / "test" / "isolation" / "pg_isolation_regress"
    return candidate if candidate.is_file() else None


def write_wrapper(folder: Path, regress: Path | None = None, python: str | None = None) -> Path:
    """Make ``folder`` hold ``pg_isolation_regress`` (a copy) and our ``isolationtester``; return
    the pg_isolation_regress to run."""
    regress = regress or find_pg_isolation_regress()
    if regress is None or not regress.is_file():
        raise ConfigError(f"pg_isolation_regress not found{f' at {regress}' if regress else ''}: install "
                          "PostgreSQL's server development files (apt install postgresql-server-dev-15), or "
                          "give its path with --pg-isolation-regress.")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "pg_isolation_regress"
    if link.is_symlink() or link.exists():
        link.unlink()
    shutil.copy2(regress, link)
    tester = folder / "isolationtester"
    root = str(Path(__file__).resolve().parent.parent)
    tester.write_text(SCRIPT.format(python=python or sys.executable, root=root))
    tester.chmod(0o755)
    return link


def cmd_isolation_wrapper(folder: str, regress: str | None) -> int:
    link = write_wrapper(Path(folder), Path(regress) if regress else None)
    print(f"wrote {Path(folder) / 'isolationtester'}; run PostgreSQL's isolation schedule with it:")
    print(f"  {link} --inputdir=<postgresql source>/src/test/isolation --schedule=isolation_schedule "
          f"[--host=... --port=...]")
    return 0


__all__ = ["SCRIPT", "cmd_isolation_wrapper", "find_pg_isolation_regress", "write_wrapper"]
