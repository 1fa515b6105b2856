"""User-facing errors.

Every problem a user can cause or fix (a malformed scenario, a missing server binary, an unreachable
DSN) is raised as a :class:`HarnessError` whose message is one self-contained paragraph: what went
wrong, where (file:line, binary, URL) and how to fix it.  The CLI prints it without a traceback and
the pytest plugin reports it with ``pytrace=False``.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error meant for the user, not a bug in the harness."""


class ProvisionError(HarnessError):
    """A server could not be found, started, reached or used."""


class ScenarioError(HarnessError):
    """A scenario or spec file is malformed; the message names file:line and the key."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
