"""libpq results as the harness's trace records, for any object shaped like ``psycopg.pq.PGresult``:
psycopg's own (the PostgreSQL dialect) and :mod:`harness.dialect.libpq`'s (the isolationtester drop-in).
Statuses and fields are libpq's numbers, so this module imports no driver."""

from __future__ import annotations

from typing import Any

from ..trace import ErrorInfo, ResultSet

# ExecStatusType
EMPTY_QUERY, COMMAND_OK, TUPLES_OK, FATAL_ERROR = 0, 1, 2, 7
STATUS_NAMES = ("EMPTY_QUERY", "COMMAND_OK", "TUPLES_OK", "COPY_OUT", "COPY_IN", "BAD_RESPONSE",
                "NONFATAL_ERROR", "FATAL_ERROR", "COPY_BOTH", "SINGLE_TUPLE", "PIPELINE_SYNC",
                "PIPELINE_ABORTED", "TUPLES_CHUNK")
# ConnStatusType / PGTransactionStatusType
CONNECTION_OK = 0
PQTRANS_IDLE = 0
# PG_DIAG_* field codes
SEVERITY, SQLSTATE, MESSAGE_PRIMARY, MESSAGE_DETAIL = ord("S"), ord("C"), ord("M"), ord("D")


def status_name(status: int) -> str:
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else str(status)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def error_of(res: Any) -> ErrorInfo:
    message = _text(res.error_field(MESSAGE_PRIMARY))
    if message is None:  # libpq-generated errors carry only the old-style message
        message = _text(res.error_message) or "unknown error"
        return ErrorInfo(code=None, message=message.strip(), severity="")
    code = _text(res.error_field(SQLSTATE))
    return ErrorInfo(code=code, message=message, sqlstate=code,
                     severity=_text(res.error_field(SEVERITY)) or "ERROR",
                     detail=_text(res.error_field(MESSAGE_DETAIL)))


def convert_result(res: Any) -> ResultSet | ErrorInfo | None:
    """One libpq result as rows (the server's text), a command tag, or an error; None for others."""
    status = int(res.status)
    if status == TUPLES_OK:
        columns = [_text(res.fname(i)) or "" for i in range(res.nfields)]
        rows = [[_text(res.get_value(r, c)) for c in range(res.nfields)] for r in range(res.ntuples)]
        return ResultSet(columns, rows, _text(res.command_status), res.ntuples)
    if status in (COMMAND_OK, EMPTY_QUERY):
        tag = _text(res.command_status) or ""
        last = tag.rsplit(" ", 1)[-1]
        return ResultSet(command=tag, rowcount=int(last) if last.isdigit() else None)
    if status == FATAL_ERROR:
        return error_of(res)
    return None


__all__ = ["COMMAND_OK", "CONNECTION_OK", "EMPTY_QUERY", "FATAL_ERROR", "MESSAGE_DETAIL", "MESSAGE_PRIMARY", "PQTRANS_IDLE",
           "SEVERITY", "SQLSTATE", "TUPLES_OK", "convert_result", "error_of", "status_name"]
