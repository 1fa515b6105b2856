"""MariaDB/MySQL general log → statements: from the ``mysql.general_log`` table, or its file form.

``Query`` entries are statements as sent (client-side drivers inline parameters themselves);
``Execute`` entries are server-side prepared statements with their parameters already substituted
by the server, so ``Prepare`` and ``Close stmt`` add nothing.  ``Connect`` and ``Init DB`` say which
database a thread uses, so a recording keeps only the threads of its own database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import ScenarioError
from .statements import Statement, not_text_reason, unparsable

_CONNECT_DB = re.compile(r" on (\S*)")
#: one entry of the file form: [time] thread-id command<TAB>argument (MariaDB and MySQL 5.7/8 layouts)
_ENTRY = re.compile(r"^(?:\d{6} {1,2}\d{1,2}:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)?\s+(\d+) ([A-Z][A-Za-z ]*?)\t(.*)$")
_HEADER = re.compile(r".*started with:$|Tcp port: |Time\s+Id\s+Command\s+Argument")


@dataclass(frozen=True)
class Entry:
    thread: str
    command: str
    argument: str
    line: int


def statements(entries: Iterable[Entry], path: str, *, database: str | None = None,
               exclude_threads: frozenset[str] = frozenset()) -> list[Statement]:
    """The ``Query``/``Execute`` entries as statements, of threads using ``database`` when given."""
    db_of: dict[str, str] = {}
    out: list[Statement] = []
    for e in entries:
        if e.thread in exclude_threads:
            continue
        if e.command == "Connect":
            m = _CONNECT_DB.search(e.argument)
            db_of[e.thread] = m.group(1) if m else ""
            continue
        if e.command == "Init DB":
            db_of[e.thread] = e.argument.strip()
            continue
        if e.command not in ("Query", "Execute"):
            continue
        if database is not None and db_of.get(e.thread) != database:
            continue
        why = unparsable(e.argument)
        if why:
            raise ScenarioError(f"cannot parse the statement of thread {e.thread}: {why}: "
                                f"{' '.join(e.argument.split())[:120]}", path=path, line=e.line)
        out.append(Statement(session=e.thread, sql=e.argument, line=e.line, not_text=not_text_reason(e.argument)))
    return out


def parse_file(text: str, path: str) -> list[Entry]:
    """The entries of a general log file (``log_output=FILE``); continuation lines join their entry."""
    entries: list[Entry] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if _HEADER.match(line):  # the server's banner, at the top and after each restart
            continue
        m = _ENTRY.match(line)
        if m:
            entries.append(Entry(m.group(1), m.group(2).strip(), m.group(3), number))
        elif entries:
            last = entries[-1]
            entries[-1] = Entry(last.thread, last.command, last.argument + "\n" + line, last.line)
        elif line.strip():
            raise ScenarioError("not a MySQL/MariaDB general log: expected `[time] THREAD-ID COMMAND<TAB>ARGUMENT` "
                                "(the file the server writes with general_log = ON, log_output = FILE).",
                                path=path, line=number)
    if not entries:
        raise ScenarioError("not a MySQL/MariaDB general log: no entries in the file.", path=path)
    return entries


def table_entries(rows: Iterable[tuple[object, object, object]]) -> list[Entry]:
    """Rows ``(thread_id, command_type, argument)`` of ``mysql.general_log``, in table order."""
    out = []
    for n, (thread, command, argument) in enumerate(rows, 1):
        arg = argument.decode("utf-8", "replace") if isinstance(argument, (bytes, bytearray)) else str(argument)
        cmd = command.decode() if isinstance(command, (bytes, bytearray)) else str(command)
        out.append(Entry(str(thread), cmd, arg, n))
    return out
