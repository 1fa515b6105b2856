"""Short names for what a move did, from the typed fields of its trace records.

A statement's label is its verb and table (``SELECT count sharding_routing_rule``, ``INSERT rule``,
``COMMIT``), read from the record's ``sql`` field -- the statement itself, never a rendered sentence.
Only the leading keyword and the first table reference are looked at: labels name a statement, they do
not analyse it (the full SQL is one click away in every view).
"""

from __future__ import annotations

import re

from ..trace import StepResult

_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")
_TABLE_AFTER = {"SELECT": ("FROM",), "DELETE": ("FROM",), "INSERT": ("INTO",), "REPLACE": ("INTO",),
                "UPDATE": (), "LOCK": ("TABLE", "TABLES"), "TRUNCATE": ("TABLE",)}
_TX = {"BEGIN": "BEGIN", "START": "BEGIN", "COMMIT": "COMMIT", "END": "COMMIT", "ROLLBACK": "ROLLBACK",
       "ABORT": "ROLLBACK"}
_NAME = re.compile(r'[`"]?([A-Za-z_][A-Za-z_0-9$]*)[`"]?(?:\s*\.\s*[`"]?([A-Za-z_][A-Za-z_0-9$]*)[`"]?)?')


def verb(sql: str | None) -> str:
    """The statement's leading keyword, upper case (``BEGIN`` for ``START TRANSACTION``)."""
    m = _WORD.search(sql or "")
    if m is None:
        return ""
    word = m.group(0).upper()
    return _TX.get(word, word) if word != "START" or "TRANSACTION" in (sql or "").upper() else word


def table(sql: str | None) -> str | None:
    """The first table the statement names (after FROM / INTO / UPDATE ...), without its schema."""
    text = " ".join((sql or "").split())
    v = verb(text)
    if v not in _TABLE_AFTER:
        return None
    upper = text.upper()
    start = _WORD.search(text)
    pos = start.end() if start else 0
    for kw in _TABLE_AFTER[v]:
        m = re.search(rf"\b{kw}\b", upper[pos:])
        if m is None:
            return None
        pos += m.end()
    m = _NAME.match(text[pos:].lstrip())
    if m is None:
        return None
    return m.group(2) or m.group(1)


def sql_label(sql: str | None) -> str:
    """``SELECT count t`` / ``SELECT t FOR UPDATE`` / ``INSERT t`` / ``COMMIT`` / first two words."""
    v = verb(sql)
    if not v:
        return "?"
    if v in ("BEGIN", "COMMIT", "ROLLBACK"):
        return v
    t = table(sql)
    if t is None:
        call = re.match(r"\s*\w+\s+([A-Za-z_][\w.]*)\s*\(", sql or "")
        if call is not None:  # SELECT pg_advisory_lock(...): the function names it
            return f"{v} {call.group(1)}(…)"
        words = (sql or "").split()
        return " ".join(words[:2]) if len(words) > 1 and words[1][:1].isalpha() else v
    upper = " ".join((sql or "").upper().split())
    if v == "SELECT":
        head = upper.split(" FROM ", 1)[0]
        parts = ["SELECT"]
        if re.search(r"\bCOUNT\s*\(", head):
            parts.append("count")
        parts.append(t)
        if re.search(r"\bFOR\s+(UPDATE|SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b", upper):
            parts.append("FOR UPDATE" if "FOR UPDATE" in upper else "FOR SHARE")
        return " ".join(parts)
    return f"{v} {t}"


def short_key(key: str, limit: int = 28) -> str:
    """A long lock key cut in the middle, where keys differ least (``SHARDING_R…:r1:add``)."""
    if len(key) <= limit:
        return key
    head = (limit - 1) // 2
    return key[:head] + "…" + key[-(limit - 1 - head):]


def rows_of(result: StepResult | None, preview: list[list[str | None]] | None) -> list[list[str | None]]:
    """The rows a statement returned: the result set, or the preview an explored actor recorded."""
    if result is not None and result.last_rows:
        return result.last_rows
    return list(preview or [])


def single_value(rows: list[list[str | None]]) -> str | None:
    """The value of a one-row, one-column result (a count), else None."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return "NULL" if rows[0][0] is None else str(rows[0][0])
    return None
