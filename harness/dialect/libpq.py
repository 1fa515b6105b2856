"""libpq through ctypes, for the one command that starts a Python process per use: the isolationtester
drop-in (``pg_isolation_regress`` runs it once per spec).

Why not psycopg here: importing psycopg costs 90-160 ms on the project's 2-core machine (its package
initialisation loads adapters, types and the errors module), about a third of a typical spec's whole
run, where the C isolationtester starts in 2 ms.  isolationtester itself is a thin libpq client; so is
this: the handful of calls it makes (``PQconnectdb``, ``PQsendQuery``, ``PQconsumeInput``, ``PQisBusy``,
``PQgetResult``, the notice receiver, ``PQnotifies``, ``PQexecParams``/``PQprepare``), named and shaped
as ``psycopg.pq``'s ``PGconn``/``PGresult`` so result conversion (:mod:`harness.dialect.pqresult`) is
shared with the psycopg path.  Everything else in the harness uses psycopg.

The library is the system's ``libpq.so.5`` (or ``$HARNESS_LIBPQ``), else the one psycopg's binary wheel
bundles, found without importing psycopg.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import HarnessError

_c = ctypes
_P = _c.c_void_p
_NOTICE_RECEIVER = _c.CFUNCTYPE(None, _c.c_void_p, _c.c_void_p)


class _PGnotify(_c.Structure):
    _fields_ = [("relname", _c.c_char_p), ("be_pid", _c.c_int), ("extra", _c.c_char_p)]


# name -> (restype, argtypes)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "PQconnectdb": (_P, [_c.c_char_p]),
    "PQfinish": (None, [_P]),
    "PQstatus": (_c.c_int, [_P]),
    "PQtransactionStatus": (_c.c_int, [_P]),
    "PQerrorMessage": (_c.c_char_p, [_P]),
    "PQsocket": (_c.c_int, [_P]),
    "PQbackendPID": (_c.c_int, [_P]),
    "PQsendQuery": (_c.c_int, [_P, _c.c_char_p]),
    "PQconsumeInput": (_c.c_int, [_P]),
    "PQisBusy": (_c.c_int, [_P]),
    "PQgetResult": (_P, [_P]),
    "PQexecParams": (_P, [_P, _c.c_char_p, _c.c_int, _P, _c.POINTER(_c.c_char_p), _P, _P, _c.c_int]),
    "PQprepare": (_P, [_P, _c.c_char_p, _c.c_char_p, _c.c_int, _P]),
    "PQexecPrepared": (_P, [_P, _c.c_char_p, _c.c_int, _c.POINTER(_c.c_char_p), _P, _P, _c.c_int]),
    "PQsetNoticeReceiver": (_P, [_P, _NOTICE_RECEIVER, _P]),
    "PQnotifies": (_c.POINTER(_PGnotify), [_P]),
    "PQfreemem": (None, [_P]),
    "PQclear": (None, [_P]),
    "PQresultStatus": (_c.c_int, [_P]),
    "PQresultErrorMessage": (_c.c_char_p, [_P]),
    "PQresultErrorField": (_c.c_char_p, [_P, _c.c_int]),
    "PQntuples": (_c.c_int, [_P]),
    "PQnfields": (_c.c_int, [_P]),
    "PQfname": (_c.c_char_p, [_P, _c.c_int]),
    "PQgetisnull": (_c.c_int, [_P, _c.c_int, _c.c_int]),
    "PQgetvalue": (_P, [_P, _c.c_int, _c.c_int]),
    "PQgetlength": (_c.c_int, [_P, _c.c_int, _c.c_int]),
    "PQcmdStatus": (_c.c_char_p, [_P]),
}


def _candidates() -> list[str]:
    env = os.environ.get("HARNESS_LIBPQ")
    if env:
        return [env]
    names = ["libpq.5.dylib", "libpq.dylib"] if sys.platform == "darwin" else ["libpq.so.5", "libpq.so"]
    spec = importlib.util.find_spec("psycopg_binary")  # locates the package without running it
    if spec is not None and spec.origin is not None:
        site = Path(spec.origin).parent.parent
        names += sorted(glob.glob(str(site / "psycopg_binary.libs" / "libpq*.so*")))
        names += sorted(glob.glob(str(site / "psycopg_binary" / ".dylibs" / "libpq*.dylib")))
    return names


def _load() -> Any:
    tried = []
    for name in _candidates():
        try:
            lib = _c.CDLL(name)
        except OSError as exc:
            tried.append(f"{name} ({exc})")
            continue
        for fn, (restype, argtypes) in _SIGNATURES.items():
            f = getattr(lib, fn)
            f.restype, f.argtypes = restype, argtypes
        return lib
    raise HarnessError("cannot load libpq, which the isolationtester drop-in talks to PostgreSQL through: "
                       f"tried {'; '.join(tried)}. Install libpq5 (apt install libpq5) or point "
                       "HARNESS_LIBPQ at a libpq shared library.")


@functools.cache
def _lib() -> Any:
    """The loaded library: one per process, like libpq itself."""
    return _load()


def _params(values: list[bytes | None]) -> Any:
    return (_c.c_char_p * max(1, len(values)))(*values)


class PGresult:
    """One libpq result (psycopg.pq.PGresult's names); cleared when collected unless libpq owns it."""

    def __init__(self, ptr: int, owned: bool = True) -> None:
        self._ptr, self._owned, self._lib = ptr, owned, _lib()

    def __del__(self) -> None:
        if self._owned and self._ptr:
            self._lib.PQclear(self._ptr)
            self._ptr = 0

    @property
    def status(self) -> int:
        return int(self._lib.PQresultStatus(self._ptr))

    @property
    def error_message(self) -> bytes:
        return bytes(self._lib.PQresultErrorMessage(self._ptr) or b"")

    def error_field(self, code: int) -> bytes | None:
        value: bytes | None = self._lib.PQresultErrorField(self._ptr, code)
        return value

    @property
    def ntuples(self) -> int:
        return int(self._lib.PQntuples(self._ptr))

    @property
    def nfields(self) -> int:
        return int(self._lib.PQnfields(self._ptr))

    def fname(self, column: int) -> bytes | None:
        value: bytes | None = self._lib.PQfname(self._ptr, column)
        return value

    def get_value(self, row: int, column: int) -> bytes | None:
        if self._lib.PQgetisnull(self._ptr, row, column):
            return None
        return _c.string_at(self._lib.PQgetvalue(self._ptr, row, column), self._lib.PQgetlength(self._ptr, row, column))

    @property
    def command_status(self) -> bytes | None:
        value: bytes | None = self._lib.PQcmdStatus(self._ptr)
        return value


class Notify:
    def __init__(self, relname: bytes, extra: bytes, be_pid: int) -> None:
        self.relname, self.extra, self.be_pid = relname, extra, be_pid


class PGconn:
    """One libpq connection (psycopg.pq.PGconn's names for what isolationtester uses)."""

    def __init__(self, ptr: int) -> None:
        self._ptr, self._lib = ptr, _lib()
        self._handler: Callable[[PGresult], None] | None = None
        self._receiver = _NOTICE_RECEIVER(self._on_notice)  # kept alive as long as the connection
        self._lib.PQsetNoticeReceiver(ptr, self._receiver, None)

    @classmethod
    def connect(cls, conninfo: bytes) -> "PGconn":
        return cls(_lib().PQconnectdb(conninfo))

    def _on_notice(self, _arg: Any, res: Any) -> None:
        if self._handler is not None:
            self._handler(PGresult(res, owned=False))

    @property
    def notice_handler(self) -> Callable[[PGresult], None] | None:
        return self._handler

    @notice_handler.setter
    def notice_handler(self, handler: Callable[[PGresult], None] | None) -> None:
        self._handler = handler

    def __del__(self) -> None:
        self.finish()

    def finish(self) -> None:
        if self._ptr:
            self._lib.PQfinish(self._ptr)
            self._ptr = 0

    close = finish

    @property
    def closed(self) -> bool:
        return not self._ptr

    @property
    def status(self) -> int:
        return int(self._lib.PQstatus(self._ptr)) if self._ptr else 1

    @property
    def transaction_status(self) -> int:
        return int(self._lib.PQtransactionStatus(self._ptr))

    @property
    def error_message(self) -> bytes:
        return bytes(self._lib.PQerrorMessage(self._ptr) or b"") if self._ptr else b"connection closed"

    @property
    def socket(self) -> int:
        return int(self._lib.PQsocket(self._ptr))

    @property
    def backend_pid(self) -> int:
        return int(self._lib.PQbackendPID(self._ptr))

    def send_query(self, command: bytes) -> None:
        if not self._lib.PQsendQuery(self._ptr, command):
            raise ConnectionError(f"sending query failed: {self.error_message.decode('utf-8', 'replace')}")

    def consume_input(self) -> None:
        if not self._lib.PQconsumeInput(self._ptr):
            raise ConnectionError(self.error_message.decode("utf-8", "replace"))

    def is_busy(self) -> bool:
        return bool(self._lib.PQisBusy(self._ptr))

    def get_result(self) -> PGresult | None:
        ptr = self._lib.PQgetResult(self._ptr)
        return PGresult(ptr) if ptr else None

    def _result(self, ptr: int) -> PGresult:
        if not ptr:
            raise ConnectionError(self.error_message.decode("utf-8", "replace"))
        return PGresult(ptr)

    def exec_params(self, command: bytes, params: list[bytes | None]) -> PGresult:
        return self._result(self._lib.PQexecParams(self._ptr, command, len(params), None, _params(params),
                                                   None, None, 0))

    def prepare(self, name: bytes, command: bytes) -> PGresult:
        return self._result(self._lib.PQprepare(self._ptr, name, command, 0, None))

    def exec_prepared(self, name: bytes, params: list[bytes | None]) -> PGresult:
        return self._result(self._lib.PQexecPrepared(self._ptr, name, len(params), _params(params), None, None, 0))

    def notifies(self) -> Notify | None:
        ptr = self._lib.PQnotifies(self._ptr)
        if not ptr:
            return None
        n = ptr.contents
        out = Notify(bytes(n.relname or b""), bytes(n.extra or b""), int(n.be_pid))
        self._lib.PQfreemem(ptr)
        return out


__all__ = ["Notify", "PGconn", "PGresult"]
