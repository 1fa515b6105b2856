"""One recorded statement, and what the recorder needs to know about its SQL text (via sqlparse).

Only the lexer is used: which keyword a statement starts with (DDL goes to the scenario's setup,
COPY or a cursor cannot be replayed as text) and where its ``$n`` placeholders are, so bound
parameters are inlined as literals outside strings, comments and dollar quotes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlparse import lexer
from sqlparse import tokens as T

#: first keywords of statements that build the schema (recorded into ``setup``)
DDL = frozenset({"CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "CREATE OR REPLACE"})
#: first keywords of transaction control and session settings (a session of only these is noise)
CONTROL = frozenset({"BEGIN", "START", "COMMIT", "ROLLBACK", "END", "SET", "RESET", "SHOW", "USE", "DISCARD",
                     "DEALLOCATE"})
_NOT_TEXT = {"COPY": "COPY streams its data outside the statement text",
             "DECLARE": "a cursor (DECLARE) keeps server state between statements",
             "FETCH": "a cursor fetch depends on a cursor's state", "MOVE": "a cursor move depends on a cursor's state",
             "CLOSE": "a cursor close depends on a cursor's state", "HANDLER": "a HANDLER reads through a cursor",
             "LOAD": "LOAD DATA streams its data outside the statement text"}
_LARGE_OBJECT = re.compile(r"\blo_(?:import|export|open|creat|create|write|read|put|get|unlink|truncate|lseek)\b"
                           r"|\bpg_largeobject\b", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    """A statement one client session sent, as the server logged it (parameters already inlined)."""

    session: str  # the server's session id (PostgreSQL session_id, MariaDB thread id)
    sql: str
    line: int  # where it is in the log (file line, or row number of a log table)
    error: str | None = None  # the error code it failed with, when the log says
    not_text: str | None = None  # why it cannot be replayed as text (kept as a comment)


@functools.lru_cache(maxsize=4096)
def _tokens(sql: str) -> tuple[tuple[Any, str], ...]:
    """sqlparse's lexer tokens ``(type, text)`` of ``sql`` (no grouping: a recording has many statements,
    most of them the same text with other parameters)."""
    return tuple((ttype, str(value)) for ttype, value in lexer.tokenize(sql))  # type: ignore[no-untyped-call]


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper case ('' when it has none)."""
    for ttype, value in _tokens(sql):
        if ttype in T.Keyword:
            return " ".join(value.upper().split())
        if ttype not in T.Whitespace and ttype not in T.Newline and ttype not in T.Comment:
            return value.upper() if ttype in T.Name else ""
    return ""


def kind(sql: str) -> str:
    """``ddl``, ``control`` or ``step``."""
    word = first_keyword(sql)
    if word in DDL:
        return "ddl"
    return "control" if word in CONTROL else "step"


def not_text_reason(sql: str) -> str | None:
    """Why ``sql`` cannot be replayed as plain text, or None."""
    word = first_keyword(sql)
    if word in _NOT_TEXT:
        return _NOT_TEXT[word]
    if _LARGE_OBJECT.search(sql):
        return "large objects are read and written through a descriptor"
    return None


def unparsable(sql: str) -> str | None:
    """Why the lexer cannot read ``sql`` (an unterminated quote), or None."""
    for ttype, value in _tokens(sql):
        if ttype is T.Error and value in ("'", '"', "`", "$"):
            return f"unterminated {value} quote"
    return None


def inline_parameters(sql: str, values: dict[int, str | None], quote: Callable[[str | None], str]) -> str:
    """``sql`` with each ``$n`` placeholder replaced by ``quote(values[n])``; KeyError(n) if one is missing."""
    out = []
    for ttype, value in _tokens(sql):
        if ttype is T.Name.Placeholder and re.fullmatch(r"\$\d+", value):
            n = int(value[1:])
            if n not in values:
                raise KeyError(n)
            out.append(quote(values[n]))
        else:
            out.append(value)
    return "".join(out) if out else sql
