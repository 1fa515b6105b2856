"""Recorded statements → a scenario draft: sessions, steps, setup, the recorded order, exploration.

One session per client connection, named ``a``, ``b``, … in order of first statement; steps are
``a1``, ``a2``, ….  Schema statements (CREATE/ALTER/DROP…) become ``setup`` unless a schema is given;
a connection left with only transaction control (the one that created the schema) is dropped.
A statement that failed in the recording expects that error; one that cannot be replayed as text
is kept as a comment and reported as a warning.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScenarioError
from .statements import Statement, kind


@dataclass(frozen=True)
class DraftStep:
    name: str
    sql: str
    error: str | None = None


@dataclass
class DraftSession:
    name: str
    origin: str  # the server's id of the connection, for a comment
    items: list[DraftStep | str] = field(default_factory=list)  # a str is a comment (not replayable)

    @property
    def steps(self) -> list[DraftStep]:
        return [i for i in self.items if isinstance(i, DraftStep)]


@dataclass
class Draft:
    name: str
    description: str
    backend: str
    setup: str | None
    teardown: str
    sessions: list[DraftSession]
    order: list[str]
    schedules: int
    expect: str = "holds"
    checks: dict[str, Any] | None = None
    header: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def session_names(count: int) -> list[str]:
    letters = string.ascii_lowercase
    return [letters[i] if i < len(letters) else f"s{i + 1}" for i in range(count)]


def _join(sqls: list[str]) -> str:
    return ";\n".join(s.strip().rstrip(";").rstrip() for s in sqls) + "\n"


_PROGRAM = re.compile(r"\bCREATE\b.*?\b(?:TRIGGER|PROCEDURE|FUNCTION|EVENT)\b", re.IGNORECASE | re.DOTALL)


def _norm(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").strip()


def inside_programs(statements: list[Statement], schema: str | None) -> set[int]:
    """Indexes of statements the MariaDB general log shows but a stored program ran (its triggers'
    statements are logged as the client's): their text is a statement of a recorded or given
    CREATE TRIGGER/PROCEDURE/FUNCTION body, and a client would not send it anyway (NEW., local
    variables)."""
    bodies = [_norm(s.sql) for s in statements if _PROGRAM.search(s.sql)]
    if schema:
        bodies.append(_norm(schema))
    if not bodies:
        return set()
    return {i for i, s in enumerate(statements)
            if kind(s.sql) == "step" and len(_norm(s.sql)) > 10 and any(_norm(s.sql) in b for b in bodies)}


def build(statements: list[Statement], *, backend: str, name: str, description: str, source: str,
          schema: str | None, teardown: str, schedules: int, expect: str = "holds",
          checks: dict[str, Any] | None = None, sessions: list[str] | None = None) -> Draft:
    """The draft of the scenario ``statements`` make; ``sessions`` keeps only those ids, in that order."""
    if sessions is not None:
        present = list(dict.fromkeys(s.session for s in statements))
        unknown = [s for s in sessions if s not in present]
        if unknown:
            raise ScenarioError(f"session(s) {', '.join(unknown)} are not in the log; its sessions are: "
                                f"{', '.join(present) or '(none)'}.", path=source)
        statements = [s for s in statements if s.session in sessions]
    nested = inside_programs(statements, schema) if backend == "mysql" else set()
    statements = [s for i, s in enumerate(statements) if i not in nested]
    ddl = [s for s in statements if schema is None and not s.not_text and kind(s.sql) == "ddl"]
    rest = [s for s in statements if s not in ddl]
    by_session: dict[str, list[Statement]] = {}
    for s in rest:
        by_session.setdefault(s.session, []).append(s)
    kept = [sid for sid, sts in by_session.items()
            if any(s.not_text or kind(s.sql) == "step" for s in sts) or (schema is not None and sts)]
    if sessions is not None:
        kept = [s for s in sessions if s in kept]
    names = dict(zip(kept, session_names(len(kept))))
    drafts = {sid: DraftSession(names[sid], sid) for sid in kept}
    order: list[str] = []
    warnings: list[str] = []
    for s in rest:
        d = drafts.get(s.session)
        if d is None:
            continue
        if s.not_text:
            d.items.append(f"not replayable as text ({s.not_text}): {' '.join(s.sql.split())}")
            warnings.append(f"{source}:{s.line}: session {s.session}: {s.not_text}; kept as a comment, not a step")
            continue
        sep = "" if len(d.name) == 1 else "_"  # s27_1, never s271 (which session 271 would also make)
        step = DraftStep(f"{d.name}{sep}{len(d.steps) + 1}", s.sql, s.error)
        d.items.append(step)
        order.append(step.name)
    dropped = [sid for sid in by_session if sid not in drafts]
    header = [f"Recorded from {source}."]
    if dropped:
        header.append(f"Left out (only transaction control or settings): session(s) {', '.join(dropped)}.")
    if nested:
        header.append(f"Left out: {len(nested)} logged statement(s) that ran inside triggers or stored programs.")
    setup = schema if schema is not None else (_join([s.sql for s in ddl]) if ddl else None)
    return Draft(name=name, description=description, backend=backend, setup=setup, teardown=teardown,
                 sessions=list(drafts.values()), order=order, schedules=schedules, expect=expect, checks=checks,
                 header=header, warnings=warnings)
