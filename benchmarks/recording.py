"""Recording overhead (issue 18: <= 1.3x): a run of N statements with the server's statement logging
on and collected, against the same run with logging off, on one server, in one run.

Each round runs the workload twice on fresh databases of the same server -- once plain, once between
``capture.start()`` and ``capture.stop()`` (PostgreSQL: ``log_statement = all`` into csvlog, then
reading and parsing the file; MariaDB: the general log into its table, then reading it) -- in
alternating order; the figures are medians over the rounds: the run's own wall with logging on (the
overhead the workload sees), and the wall end to end (turning logging on, the run, reading and parsing
the log).  The workload is two autocommit
connections taking turns: a parameterised INSERT and a parameterised SELECT by key.

Run: python -m benchmarks recording [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure  # noqa: E402
from harness.config import load_settings  # noqa: E402
from harness.provision import Database  # noqa: E402
from harness.provision.local import start_local  # noqa: E402
from harness.record.capture import PG_SERVER_OPTIONS, capture_for  # noqa: E402

NAME = "recording"


def _workload(db: Database, statements: int) -> None:
    conns = [db.connect(autocommit=True) for _ in range(2)]
    try:
        cur = conns[0].cursor()
        cur.execute("CREATE TABLE bench (id int PRIMARY KEY, v varchar(64))")
        cur.close()
        for i in range(statements // 2):
            cur = conns[i % 2].cursor()
            cur.execute("INSERT INTO bench (id, v) VALUES (%s, %s)", (i, f"value '{i}'"))
            cur.execute("SELECT v FROM bench WHERE id = %s", (i,))
            cur.fetchall()
            cur.close()
    finally:
        for c in conns:
            c.close()


def _timed(server: Any, statements: int, recording: bool) -> tuple[float, float, int]:
    """(the run's wall, the wall including turning logging on and collecting/parsing the log, statements
    recorded); without recording both walls are the run's."""
    db = server.create_database()
    try:
        started = time.perf_counter()
        if not recording:
            _workload(db, statements)
            wall = time.perf_counter() - started
            return wall, wall, 0
        capture = capture_for(db)
        capture.start()
        try:
            run_started = time.perf_counter()
            _workload(db, statements)
            run_wall = time.perf_counter() - run_started
        finally:
            recorded = capture.stop()
        return run_wall, time.perf_counter() - started, len(recorded)
    finally:
        db.drop()


def run(quick: bool) -> list[Figure]:
    statements, rounds = (200, 2) if quick else (4000, 11)
    settings = load_settings(cli={})
    figures = []
    for backend in ("postgres", "mysql"):
        server = start_local(backend, settings, options=PG_SERVER_OPTIONS if backend == "postgres" else None)
        try:
            plain, logged, whole = [], [], []
            for r in range(rounds):
                for recording in ((False, True) if r % 2 == 0 else (True, False)):
                    run_wall, total, recorded = _timed(server, statements, recording)
                    if recording:
                        logged.append(run_wall)
                        whole.append(total)
                        if recorded < statements:
                            raise RuntimeError(f"{backend}: recorded {recorded} of {statements} statements")
                    else:
                        plain.append(run_wall)
            value, base, total = statistics.median(logged), statistics.median(plain), statistics.median(whole)
            note = f"median of {rounds}; {server.flavor} {server.version}"
            figures.append(Figure(NAME, f"{backend}: run of {statements} statements, logging on", "s",
                                  round(value, 3), round(base, 3), "logging off", note=note + "; target <= 1.3x"))
            figures.append(Figure(NAME, f"{backend}: ... plus turning logging on, collecting and parsing the log",
                                  "s", round(total, 3), round(base, 3), "logging off",
                                  note=note + "; what `harness record` adds around COMMAND, end to end"))
            print(f"  {backend:<9} {statements} statements: run with logging {value:.3f} s, end to end "
                  f"{total:.3f} s, logging off {base:.3f} s ({value / base:.2f}x, {total / base:.2f}x)", flush=True)
        finally:
            server.stop()
    return figures


if __name__ == "__main__":
    run("--quick" in sys.argv)
