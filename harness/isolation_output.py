"""isolationtester's stdout, byte for byte: ``PQprint`` tables, ``SEVERITY:  message`` errors,
``<waiting ...>`` / ``<... completed>`` lines and cancel messages, from the engine's traces (see
:mod:`harness.isolation` for how a spec is run)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from .scenario.model import Interleaving
from .trace import ErrorInfo, Event, StepResult, Trace

#: ResultSet.command of a NOTIFY message a step's connection received (rows: [[channel, payload, sender]])
NOTIFY_TAG = "isolationtester:notify"
#: ResultSet.command prefix of a result status isolationtester does not print as a table (COPY...)
STATUS_TAG = "isolationtester:status:"
#: ResultSet.command of a second error result (libpq's "server closed the connection") after ``error``
LATER_ERROR_TAG = "isolationtester:later-error"


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# -- PQprint ----------------------------------------------------------------------------------------
def _is_numeric(value: bytes) -> bool:
    """fe-print.c's test: only digits . E e space -, not starting with E/e, ending with a digit."""
    if value[:1] in (b"E", b"e"):
        return False
    if any(not (48 <= b <= 57 or b in b".Ee -") for b in value):
        return False
    return 48 <= value[-1] <= 57


def pqprint(columns: list[str], rows: list[list[str | None]]) -> bytes:
    """libpq's ``PQprint`` with header=1, align=1, fieldSep="|" (isolationtester's printResultSet).

    Widths are in bytes, as in C; a column whose non-empty values all look numeric is right-aligned,
    header included; NULLs and empty strings print as blanks and do not count for alignment.
    """
    if not columns:
        return b""
    names = [_bytes(c) for c in columns]
    width = [len(n) for n in names]
    numeric = [True] * len(names)
    cells: list[list[bytes]] = []
    for row in rows:
        out_row = []
        for j, value in enumerate(row):
            b = _bytes(value) if value else b""
            if b:
                if numeric[j] and not _is_numeric(b):
                    numeric[j] = False
                width[j] = max(width[j], len(b))
            out_row.append(b)
        cells.append(out_row)

    def line(values: list[bytes]) -> bytes:
        return b"|".join(v.rjust(width[j]) if numeric[j] else v.ljust(width[j]) for j, v in enumerate(values)) + b"\n"

    parts = [line(names), b"+".join(b"-" * w for w in width) + b"\n"]
    parts.extend(line(r) for r in cells)
    parts.append(b"(%d row%s)\n\n" % (len(rows), b"" if len(rows) == 1 else b"s"))
    return b"".join(parts)


# -- output -----------------------------------------------------------------------------------------
class Output:
    """Unbuffered byte output to a text or binary stream (isolationtester does setbuf(stdout, NULL))."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        if not data:
            return
        if isinstance(self.stream, io.TextIOBase):
            if hasattr(self.stream, "buffer"):
                self.stream.flush()
                self.stream.buffer.write(data)
                self.stream.buffer.flush()
            else:
                self.stream.write(data.decode("utf-8", "surrogateescape"))
            return
        if hasattr(self.stream, "mode") and "b" not in getattr(self.stream, "mode", "b"):
            self.stream.write(data.decode("utf-8", "surrogateescape"))
        else:
            self.stream.write(data)
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


def _error_text(err: ErrorInfo) -> bytes:
    """A step error as isolationtester prints it: severity and primary message only."""
    if err.severity:
        return _bytes(f"{err.severity}:  {err.message}\n")
    return _bytes(err.message + "\n")


def _conn_error_message(err: ErrorInfo) -> bytes:
    """Roughly ``PQerrorMessage`` after a failed setup/teardown (goes to stderr)."""
    if not err.severity:
        return _bytes(err.message if err.message.endswith("\n") else err.message + "\n")
    text = f"{err.severity}:  {err.message}\n"
    if err.detail:
        text += f"DETAIL:  {err.detail}\n"
    return _bytes(text)


@dataclass
class IsolationFormatter:
    """Turns traces into isolationtester's output; state carries NOTIFYs a session received outside a
    step (in its setup/teardown) to its next completed step, as libpq queues them until then."""

    out: Output
    err: Output
    _queued_notifies: dict[str, list[bytes]] = field(default_factory=dict)

    def header(self, sessions: int) -> None:
        self.out.write(b"Parsed test spec with %d sessions\n" % sessions)

    def starting(self, interleaving: Interleaving) -> None:
        self.out.write(_bytes("\nstarting permutation:" + "".join(" " + r.step for r in interleaving.steps) + "\n"))

    def trace(self, trace: Trace) -> None:
        """Everything after the ``starting permutation`` line, in isolationtester's order."""
        deferred: dict[str, list[tuple[int, bytes]]] = {}
        for e in trace.events:
            if e.kind in ("setup", "teardown"):
                self._setup_event(e)
            elif e.kind == "notice":
                text = self._notice_text(e)
                after = int(e.detail.get("after_results", 0) or 0)
                if after > 0 and e.step is not None:
                    deferred.setdefault(e.step, []).append((after, text))
                else:
                    self.out.write(text)
            elif e.kind == "blocked":
                for _, text in deferred.pop(e.step or "", []):
                    self.out.write(text)
                self.out.write(_bytes(f"step {e.step}: {e.sql or ''} <waiting ...>\n"))
            elif e.kind == "complete":
                self._complete(e, deferred.pop(e.step or "", []))
            elif e.kind == "cancel" and "after_seconds" in e.detail:
                self.out.write(_bytes(f"isolationtester: canceling step {e.step} after "
                                      f"{e.detail['after_seconds']} seconds\n"))
            elif e.kind == "hang":
                self._hang(e)
                return  # isolationtester exits here: no teardown output

    def _notice_text(self, e: Event) -> bytes:
        text = e.detail.get("text") or f"{e.detail.get('severity', 'NOTICE')}:  {e.detail.get('message', '')}\n"
        return _bytes(f"{e.session}: {text}")

    def _notify_lines(self, session: str, result: StepResult | None) -> list[bytes]:
        if result is None:
            return []
        return [_bytes(f'{session}: NOTIFY "{ch}" with payload "{payload}" from {sender}\n')
                for rs in result.results if rs.command == NOTIFY_TAG
                for ch, payload, sender in (rs.rows or [])]

    def _setup_event(self, e: Event) -> None:
        r = e.result
        if r is None:
            return
        if e.session is not None:
            self._queued_notifies.setdefault(e.session, []).extend(self._notify_lines(e.session, r))
        if r.error is not None:
            if e.kind == "teardown":
                what = f"teardown of session {e.session} failed: " if e.session else "teardown failed: "
                self.err.write(_bytes(what) + _conn_error_message(r.error))
            return
        real = [rs for rs in r.results if rs.command not in (NOTIFY_TAG, LATER_ERROR_TAG)]
        if real and real[-1].columns is not None:  # PQexec returns only the last result
            self.out.write(pqprint(real[-1].columns, real[-1].rows or []))

    def _complete(self, e: Event, deferred: list[tuple[int, bytes]]) -> None:
        if e.detail.get("after_wait"):
            self.out.write(_bytes(f"step {e.step}: <... completed>\n"))
        else:
            self.out.write(_bytes(f"step {e.step}: {e.sql or ''}\n"))
        r = e.result or StepResult()
        results = [rs for rs in r.results if rs.command not in (NOTIFY_TAG, LATER_ERROR_TAG)]
        later = [rs for rs in r.results if rs.command == LATER_ERROR_TAG]
        n = 0

        def flush_upto(k: int) -> None:
            for after, text in deferred:
                if after == k:
                    self.out.write(text)

        for rs in results:
            n += 1
            if rs.columns is not None:
                self.out.write(pqprint(rs.columns, rs.rows or []))
            elif rs.command and rs.command.startswith(STATUS_TAG):
                self.out.write(_bytes(f"unexpected result status: {rs.command[len(STATUS_TAG):]}\n"))
            flush_upto(n)
        if r.error is not None:
            n += 1
            self.out.write(_error_text(r.error))
            flush_upto(n)
        for rs in later:
            n += 1
            self.out.write(_bytes(f"{(rs.rows or [['']])[0][0]}\n"))
            flush_upto(n)
        for after, text in deferred:
            if after > n:
                self.out.write(text)
        session = e.session or ""
        for line in self._queued_notifies.pop(session, []) + self._notify_lines(session, e.result):
            self.out.write(line)

    def _hang(self, e: Event) -> None:
        reason = str(e.detail.get("reason", "hang"))
        if "mutually-blocking" in reason:
            self.err.write(b"failed to complete permutation due to mutually-blocking steps\n")
        else:
            self.err.write(_bytes(reason + "\n"))
