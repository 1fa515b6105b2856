"""Operation histories: what each actor attempted, and what it heard back -- ok, fail, or unknown.

A fault can leave a client unable to tell whether its write happened: the connection drops while a
COMMIT (or an autocommit statement) is in flight -- a lost acknowledgement, a killed session, a
crashed server, a cut network link.  Jepsen records such operations as *info*; here their status is
``unknown``, and checks must accept both outcomes for them (but nothing in between: a transaction is
all there or not there).  Everything else is decided: ``ok`` (the block finished) or ``fail`` (it
raised, so the transaction did not commit).

Actors mark operations with ``with ctx.op("add", 3): ...``; the instrumented connection tags the
exception of a call that might have committed, so the classification needs no guessing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
_TAG = "_harness_indeterminate"


@dataclass
class Op:
    """One operation of one actor and its outcome as the client saw it."""

    actor: str
    name: str
    value: Any
    status: str = UNKNOWN
    error: str | None = None
    seq: int = 0  # completion order among all actors' operations in the schedule (1, 2, ...)

    def describe(self) -> str:
        return f"{self.actor}: {self.name} {self.value!r} -> {self.status}" + (f" ({self.error})" if self.error else "")


def mark_indeterminate(exc: BaseException) -> None:
    """Tag a connection error raised while a commit was in flight (its effect is unknown)."""
    try:
        setattr(exc, _TAG, True)
    except AttributeError:  # exceptions with __slots__: classified as failed, the safe side for checks
        pass


def is_indeterminate(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from or during) left a commit's outcome unknown."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if getattr(current, _TAG, False):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def classify(error: BaseException | None) -> str:
    if error is None:
        return OK
    return UNKNOWN if is_indeterminate(error) else FAIL


def durability_violations(ops: Iterable[Op], rows: Iterable[tuple[Any, ...]], *, rows_per_op: int = 1) -> list[str]:
    """Compare what the database holds with the history.

    ``rows``: one row per written row, first column the value of the operation that wrote it.  An
    acknowledged operation must have all ``rows_per_op`` rows (durability), a failed one none, an
    unknown one all or none (atomicity); rows no operation wrote are reported too.
    """
    found = Counter(str(row[0]) for row in rows)
    problems = []
    by_value = {str(op.value): op for op in ops}
    for key, op in by_value.items():
        n = found.get(key, 0)
        if op.status == OK and n != rows_per_op:
            problems.append(f"acknowledged {op.name} {op.value!r} of {op.actor} has {n} of {rows_per_op} row(s)")
        elif op.status == FAIL and n:
            problems.append(f"failed {op.name} {op.value!r} of {op.actor} left {n} row(s)")
        elif op.status == UNKNOWN and n not in (0, rows_per_op):
            problems.append(f"{op.name} {op.value!r} of {op.actor} (outcome unknown) is half there: "
                            f"{n} of {rows_per_op} row(s)")
    for key in sorted(set(found) - set(by_value)):
        problems.append(f"{found[key]} row(s) with value {key!r} that no operation wrote")
    return problems


__all__ = ["FAIL", "OK", "UNKNOWN", "Op", "classify", "durability_violations", "is_indeterminate",
           "mark_indeterminate"]
