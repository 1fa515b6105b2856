"""Python in a scenario's setup and teardown: ``{call: "module:function", args: {...}}``.

An app whose schema comes from code (``initialize_schema()``, Alembic, ``metadata.create_all``) is set
up by that code, not by SQL copied out of it.  The function is imported like an actor (module paths
resolve from the project root, the folder holding pyproject.toml) and called as ``fn(db, **args)``
where ``db`` is a :class:`SetupContext`.  A scenario file is code (its ``call:`` entries are imported
and run): trust it like a test file.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..dialect.base import ConnInfo
from ..errors import ScenarioError

#: the SQLAlchemy driver an app uses by default, per backend (psycopg2 is SQLAlchemy's PostgreSQL default)
DEFAULT_DRIVERS = {"postgres": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


@dataclass(frozen=True)
class SetupContext:
    """What a scenario's Python setup/teardown is given: the database to prepare."""

    backend: str
    info: ConnInfo
    conn: Any  # the harness's autocommit connection (psycopg 3 / PyMySQL)

    def url(self, driver: str | None = None) -> str:
        """The database as a SQLAlchemy URL (``driver``: e.g. ``postgresql+psycopg``; default psycopg2 /
        PyMySQL), password included, for an app's settings."""
        from sqlalchemy.engine import URL

        info = self.info
        return URL.create(driver or DEFAULT_DRIVERS[self.backend], username=info.user or None,
                          password=info.password or None, host=info.host, port=info.port,
                          database=info.dbname).render_as_string(hide_password=False)


def project_root(path: Path) -> Path:
    for folder in path.resolve().parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return path.resolve().parent


def resolve_call(scenario_path: str, call: str, what: str, line: int) -> Callable[..., Any]:
    """Import ``module:function`` named in a scenario file, or a ScenarioError naming file:line."""
    module_name, _, function = call.partition(":")
    root = project_root(Path(scenario_path))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ScenarioError(f"{what}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
                            f"the module path is resolved from {root}.", path=scenario_path, line=line) from None
    fn: Callable[..., Any] | None = getattr(module, function, None)
    if not callable(fn):
        raise ScenarioError(f"{what}: {module_name} has no function {function!r}.", path=scenario_path, line=line)
    return fn


def run_hook(scenario_path: str, call: str, args: Mapping[str, Any], line: int, kind: str,
             ctx: SetupContext) -> None:
    """Run one Python setup/teardown entry; its failure is a ScenarioError naming the entry's line."""
    fn = resolve_call(scenario_path, call, f"{kind} call {call!r}", line)
    try:
        fn(ctx, **dict(args))
    except Exception as exc:
        raise ScenarioError(f"{kind} call {call!r} failed: {type(exc).__name__}: {exc}".strip(),
                            path=scenario_path, line=line) from None
