"""Two concurrent requests saving the same rule, as an incident had them: a program to record.

``python -m scenarios.bkci.two_requests unlock-before-commit|commit-inside-lock`` creates the schema,
then runs two threads, each with its own connection, through the unchanged :func:`save_rule`, with
the database's own lock (advisory lock / GET_LOCK).  It reads ``DATABASE_URL`` and
``HARNESS_RECORD_BACKEND`` as ``harness record`` sets them (docs/recording.md)::

    harness record -o racy.yaml --checks scenarios/bkci/explore_db_lock.yaml -- \\
        python -m scenarios.bkci.two_requests unlock-before-commit

The timing of the incident is reproduced with events, not sleeps: B asks for the lock only after A
released it, and A's ``release`` returns only once B is done.  With the bug, A's commit comes after
the release, so B counts 0 and inserts too; with the fix, A committed before releasing, so B counts 1.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from harness.dialect import ConnInfo, dialect_for

from .rules import VARIANTS, Rule, save_rule

RULE = Rule("c1", "PROCESS", "DB", "r1", "ds_0")
WAIT = 30.0  # seconds either request waits for the other before giving up


class SqlLock:
    """The database's own session lock on the request's connection, with hooks around it."""

    def __init__(self, conn: Any, backend: str, key: str, before_acquire: Callable[[], None] = lambda: None,
                 after_release: Callable[[], None] = lambda: None) -> None:
        self.conn, self.mysql, self.key = conn, backend == "mysql", key
        self.before_acquire, self.after_release = before_acquire, after_release

    def _one(self, sql: str, *args: Any) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, args)
            return cur.fetchall()[0][0]
        finally:
            cur.close()

    def acquire(self, timeout: float | None = None) -> bool:
        self.before_acquire()
        if self.mysql:
            return bool(self._one("SELECT GET_LOCK(%s, %s)", self.key, int(timeout or WAIT)) == 1)
        self._one("SELECT pg_advisory_lock(hashtext(%s))", self.key)
        return True

    def release(self) -> bool:
        self._one("SELECT RELEASE_LOCK(%s)" if self.mysql else "SELECT pg_advisory_unlock(hashtext(%s))", self.key)
        self.after_release()
        return True


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise TimeoutError(f"waited {WAIT:.0f}s for {what}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in VARIANTS:
        print(f"usage: python -m scenarios.bkci.two_requests {'|'.join(VARIANTS)}", file=sys.stderr)
        return 2
    backend = os.environ.get("HARNESS_RECORD_BACKEND", "postgres")
    dialect = dialect_for(backend)
    info = ConnInfo.parse(os.environ["DATABASE_URL"], default_scheme=dialect.scheme, default_port=dialect.default_port)
    with dialect.connect(info, autocommit=True) as setup:
        setup.cursor().execute((Path(__file__).parent / f"schema_{backend}.sql").read_text())
    a_released, b_done = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def request(name: str, lock: Callable[[Any], SqlLock]) -> None:
        conn = dialect.connect(info, autocommit=False)
        try:
            results[name] = save_rule(conn, lock(conn), RULE, variant=argv[0])
        except Exception as exc:  # reported below: the recording goes on
            results[name] = exc
        finally:
            conn.close()
            if name == "B":
                b_done.set()

    threads = [
        threading.Thread(target=request, args=("A", lambda c: SqlLock(
            c, backend, RULE.lock_key, after_release=lambda: (a_released.set(), _wait(b_done, "request B"))))),
        threading.Thread(target=request, args=("B", lambda c: SqlLock(
            c, backend, RULE.lock_key, before_acquire=lambda: _wait(a_released, "request A's unlock")))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * WAIT)
    print(f"inserted: A={results.get('A')!r} B={results.get('B')!r}")
    return 0 if all(isinstance(results.get(n), bool) for n in "AB") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
