"""PostgreSQL csvlog → statements, one list in log order (columns as documented for csvlog, PG 13+).

A statement is a ``statement: SQL`` row (simple protocol) or an ``execute NAME: SQL`` row (extended
protocol) whose DETAIL ``parameters: $1 = '…', $2 = NULL`` gives the bound values; those are
inlined with the dialect's literal quoting.  An ERROR row whose ``query`` is the session's last
statement marks that statement as failed with its SQLSTATE.  A statement that failed before it was
logged (a syntax error, or any error of an extended-protocol statement: PostgreSQL then logs only the
ERROR row) is taken from the row's ``query``, with the values its CONTEXT shows; one whose values are
not all there is kept as a comment.  Every other row is ignored.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from typing import Callable

from ..dialect import dialect_for
from ..errors import ScenarioError
from .statements import Statement, inline_parameters, not_text_reason, unparsable

#: csvlog columns used here (positions are stable since PostgreSQL 9.0; 23 columns at least)
LOG_TIME, DATABASE, SESSION, TAG, SEVERITY, SQLSTATE, MESSAGE, DETAIL, CONTEXT, QUERY, APPLICATION = \
    0, 2, 5, 7, 11, 12, 13, 14, 18, 19, 22
MIN_COLUMNS = 23
_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_EXECUTE = re.compile(r"execute (fetch from )?([^:]*): (.*)", re.DOTALL)
#: an error's CONTEXT with the bound values (log_parameter_max_length_on_error = -1)
_ERROR_PARAMS = re.compile(r"portal (?:with parameters: |parameter )(\$\d+ = .*)")
_PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')(?:, |$)", re.DOTALL)


def parse_parameters(detail: str) -> dict[int, str | None] | None:
    """``parameters: $1 = 'a', $2 = NULL`` → {1: 'a', 2: None}; None when it is not that shape."""
    if not detail.startswith("parameters: "):
        return None
    text, pos, values = detail[len("parameters: "):], 0, {}
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if m is None:
            return None
        raw = m.group(2)
        values[int(m.group(1))] = None if raw == "NULL" else raw[1:-1].replace("''", "'")
        pos = m.end()
    return values


def parse_csvlog(text: str, path: str, *, database: str | None = None,
                 exclude_applications: frozenset[str] = frozenset()) -> list[Statement]:
    """Every client statement of ``text`` (a csvlog excerpt), optionally of one database only."""
    quote = dialect_for("postgres").quote_literal
    out: list[Statement] = []
    last: dict[str, int] = {}  # session -> index in out of its last statement
    raw_text: dict[int, str] = {}  # index in out -> the statement as logged (for ERROR rows' query)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = 0
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ScenarioError(f"not a PostgreSQL csvlog: {exc}.", path=path, line=line) from None
        rows += 1
        if len(row) < MIN_COLUMNS or not _TIME.match(row[LOG_TIME]):
            raise ScenarioError(
                f"not a PostgreSQL csvlog row: expected {MIN_COLUMNS}+ comma-separated columns starting with a "
                f"timestamp, found {len(row)} column(s). Give the .csv file PostgreSQL writes with "
                "log_destination = 'csvlog'.", path=path, line=line)
        if database is not None and row[DATABASE] != database or row[APPLICATION] in exclude_applications:
            continue
        session, severity, message = row[SESSION], row[SEVERITY], row[MESSAGE]
        if severity in ("ERROR", "FATAL") and row[SQLSTATE] and row[QUERY]:
            i = last.get(session)
            ran = row[TAG] not in ("PARSE", "BIND")  # else it failed before its execute row was logged
            if ran and i is not None and row[QUERY] == raw_text.get(i) and out[i].error is None:
                out[i] = replace(out[i], error=row[SQLSTATE])
                continue
            m = _ERROR_PARAMS.search(row[CONTEXT])
            values = parse_parameters("parameters: " + m.group(1).split("\n")[0]) if m else {}
            statement = _statement(row[QUERY], values or {}, session, path, line, quote, lenient=True)
            last[session] = len(out)
            raw_text[len(out)] = row[QUERY]
            out.append(replace(statement, error=row[SQLSTATE]))
            continue
        if severity != "LOG":
            continue
        sql, fetch = _statement_text(message)
        if sql is None:
            continue
        values = parse_parameters(row[DETAIL]) if row[DETAIL] else None
        if row[DETAIL].startswith("parameters: ") and values is None:
            raise ScenarioError("cannot read this row's bound parameters (expected `parameters: $1 = '…', "
                                "$2 = NULL`); was log_parameter_max_length set, cutting values short?",
                                path=path, line=line)
        statement = _statement(sql, values or {}, session, path, line, quote, lenient=False)
        if fetch:
            statement = replace(statement, not_text="a cursor fetch (execute fetch from) depends on a cursor's state")
        last[session] = len(out)
        raw_text[len(out)] = sql
        out.append(statement)
    if rows == 0:
        raise ScenarioError("not a PostgreSQL csvlog: the file is empty.", path=path)
    return out


def _statement(sql: str, values: dict[int, str | None], session: str, path: str, line: int,
               quote: Callable[[str | None], str], *, lenient: bool) -> Statement:
    """The statement with its values inlined.  ``lenient`` (an ERROR row, whose CONTEXT may show only
    the value that failed): missing values make it a comment instead of an error."""
    why = unparsable(sql)
    if why:
        if lenient:
            return Statement(session, sql, line, not_text=f"it failed to parse ({why})")
        raise ScenarioError(f"cannot parse the statement of session {session}: {why}: {_short(sql)}",
                            path=path, line=line)
    try:
        inlined = inline_parameters(sql, values, quote)
    except KeyError as exc:
        if lenient:
            return Statement(session, sql, line, not_text=f"it failed before it ran and the log does not show "
                                                          f"${exc.args[0]} (log_parameter_max_length_on_error)")
        raise ScenarioError(f"the statement of session {session} uses ${exc.args[0]} but the row gives no "
                            f"value for it: {_short(sql)}", path=path, line=line) from None
    return Statement(session, inlined, line, not_text=not_text_reason(sql))


def _statement_text(message: str) -> tuple[str | None, bool]:
    if message.startswith("statement: "):
        return message[len("statement: "):], False
    m = _EXECUTE.fullmatch(message)
    if m:
        return m.group(3), bool(m.group(1))
    return None, False


def _short(sql: str, limit: int = 120) -> str:
    one = " ".join(sql.split())
    return one if len(one) <= limit else one[:limit] + "…"
