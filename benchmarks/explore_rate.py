"""Exploration rate: schedules per second per worker (one process, one database) on real servers.

Run: python -m benchmarks explore_rate [--quick]
     python benchmarks/explore_rate.py [--backends postgres,mysql] [--schedules 300] [--seconds 30]

Scenario "free": 2 actors, 6 DB operations each (per actor: SELECT, UPDATE, COMMIT on row x, then on
row y; A touches rows 1,2 and B rows 3,4), so no schedule ever blocks.  Scenario "contended": the same
shape, but both actors read and update row 1, so a switch between A's UPDATE and A's COMMIT makes B
block on the row lock (the scheduler must see the wait through the server and resume later).

Per backend and scenario: ms per schedule under the random chooser (the harness's own cost, no
Hypothesis) against the baseline -- the same SQL run serially with fresh connections and no harness;
schedules/s under ``race.explore(strategy="hypothesis")`` as a user runs it; the share of schedules
with a blocked call; the rate with a light setup (rows reset, table kept); and where a schedule's time
goes, read from the trace events (each event has a time ``t``): inside the actors' steps (launch to
complete: SQL, blocked time, the actor's own code), between steps (handoffs, blocked detection), and
outside the scheduled part (setup, checks, teardown, connection resets).

Every loop is bounded by a count and a time limit.  Target: >= 50 schedules/s per worker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, fmt, median, server, stop_servers  # noqa: E402
from harness.dialect import execute  # noqa: E402
from harness.explore import Race, ScheduleOutcome  # noqa: E402
from harness.explore.strategies import RandomChooser  # noqa: E402

NAME = "explore_rate"
TARGET = 50.0
SCENARIOS = {"free": ((1, 2), (3, 4)), "contended": ((1, 1), (1, 1))}
CHECK = {"free": ("SELECT sum(n) FROM counter", 4), "contended": ("SELECT n FROM counter WHERE id = 1", 4)}


def actor_fn(rows: tuple[int, int]) -> Callable[[Any], None]:
    def run(ctx: Any) -> None:
        conn = ctx.connect()  # autocommit off: the first statement opens the transaction
        cur = conn.cursor()
        for row in rows:
            cur.execute(f"SELECT n FROM counter WHERE id = {row}")
            cur.fetchall()
            cur.execute(f"UPDATE counter SET n = n + 1 WHERE id = {row}")
            conn.commit()
    return run


def build(database: Any, scenario: str, light_setup: bool = False) -> Race:
    race = Race(database, name=f"rate-{scenario}")
    if light_setup:  # table made once; each schedule only resets the rows
        with database.connect() as conn:
            execute(conn, "CREATE TABLE counter (id int PRIMARY KEY, n int)")
            execute(conn, "INSERT INTO counter VALUES (1, 0), (2, 0), (3, 0), (4, 0)")
            if not getattr(conn, "autocommit", True):
                conn.commit()
        race.setup("UPDATE counter SET n = 0")
    else:
        race.setup("CREATE TABLE counter (id int PRIMARY KEY, n int)")
        race.setup("INSERT INTO counter VALUES (1, 0), (2, 0), (3, 0), (4, 0)")
        race.teardown("DROP TABLE counter")
    rows_a, rows_b = SCENARIOS[scenario]
    race.actor("A", actor_fn(rows_a))
    race.actor("B", actor_fn(rows_b))
    sql, value = CHECK[scenario]
    race.check_sql("all_counted", sql, equals=value)
    return race


def baseline(database: Any, scenario: str, n: int, seconds: float) -> float:
    """Seconds per serial, un-instrumented run of the same SQL (median)."""
    rows_a, rows_b = SCENARIOS[scenario]
    times = []
    deadline = time.monotonic() + seconds
    control = database.connect(autocommit=True)
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            t = time.perf_counter()
            execute(control, "CREATE TABLE counter (id int PRIMARY KEY, n int)")
            execute(control, "INSERT INTO counter VALUES (1, 0), (2, 0), (3, 0), (4, 0)")
            for rows in (rows_a, rows_b):
                conn = database.connect(autocommit=False)
                cur = conn.cursor()
                for row in rows:
                    cur.execute(f"SELECT n FROM counter WHERE id = {row}")
                    cur.fetchall()
                    cur.execute(f"UPDATE counter SET n = n + 1 WHERE id = {row}")
                    conn.commit()
                conn.close()
            execute(control, CHECK[scenario][0])
            execute(control, "DROP TABLE counter")
            times.append(time.perf_counter() - t)
    finally:
        control.close()
    return statistics.median(times)


def split(outcome: ScheduleOutcome) -> tuple[float, float, float]:
    """(in steps, between steps, outside the trace) seconds of one schedule, from its trace events."""
    events = outcome.trace.events
    open_at: dict[str, float] = {}
    in_steps = 0.0
    for e in events:
        if e.kind == "launch" and e.step:
            open_at[e.step] = e.t
        elif e.kind in ("complete", "done") and e.step in open_at:
            in_steps += e.t - open_at.pop(e.step)  # type: ignore[arg-type]
    span = events[-1].t if events else 0.0
    return in_steps, max(span - in_steps, 0.0), max(outcome.duration - span, 0.0)


def run_random(race: Race, n: int, seconds: float, seed: int = 0) -> tuple[int, float, int, list[tuple[float, float, float]]]:
    """(schedules, elapsed, schedules with a blocked call, time splits) under RandomChooser."""
    race.run_schedule(RandomChooser(10_000))  # warm-up (lazy init), not counted
    blocked = done = 0
    splits = []
    deadline = time.monotonic() + seconds
    t = time.perf_counter()
    for i in range(n):
        if time.monotonic() > deadline:
            break
        outcome = race.run_schedule(RandomChooser(seed + i))
        if not outcome.passed:
            raise RuntimeError(f"unexpected violation in {race.name}: {outcome.violations}")
        blocked += any(e.kind == "blocked" for e in outcome.trace.events)
        splits.append(split(outcome))
        done += 1
    return done, time.perf_counter() - t, blocked, splits


def measure(backend: str, schedules: int, seconds: float) -> list[Figure]:
    database = server(backend).create_database()
    figures = []
    try:
        for scenario in SCENARIOS:
            key = f"{backend}/{scenario}"
            base = baseline(database, scenario, max(3, schedules // 4), seconds)
            with build(database, scenario) as race:
                done, elapsed, blocked, splits = run_random(race, schedules, seconds)
                t = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="explore-rate-") as tmp:
                    res = race.explore(strategy="hypothesis", max_schedules=schedules, database_dir=Path(tmp))
                hyp_rate = res.schedules_run / (time.perf_counter() - t)
            with build(database, scenario, light_setup=True) as light:
                ldone, lelapsed, _, _ = run_random(light, schedules, seconds, seed=20_000)
            with database.connect() as conn:
                execute(conn, "DROP TABLE counter")
                if not getattr(conn, "autocommit", True):
                    conn.commit()
            ms = elapsed / done * 1000
            figures += [
                Figure(NAME, f"{key}: ms per schedule, random chooser", "ms", ms, base * 1000,
                       "same SQL serial, fresh connections, no harness", f"{done} schedules"),
                Figure(NAME, f"{key}: schedules/s, random chooser", "1/s", done / elapsed, note=f"target >= {TARGET:.0f}/s"),
                Figure(NAME, f"{key}: schedules/s, hypothesis", "1/s", hyp_rate, done / elapsed, "random chooser",
                       f"{res.schedules_run} schedules"),
                Figure(NAME, f"{key}: schedules/s, light setup", "1/s", ldone / lelapsed, done / elapsed,
                       "random chooser, table per schedule"),
                Figure(NAME, f"{key}: schedules with a blocked call", "%", 100 * blocked / done),
            ]
            for i, part in enumerate(("inside steps (SQL, waits, actor code)", "between steps (handoffs, blocked detection)",
                                      "outside (setup, checks, teardown, resets)")):
                figures.append(Figure(NAME, f"{key}: ms per schedule {part}", "ms", median(s[i] * 1000 for s in splits),
                                      note="median, from trace event times"))
    finally:
        database.drop()
    return figures


def run(quick: bool) -> list[Figure]:
    """Both backends: 4 schedules per measurement in quick mode, 200 (or 20 s) otherwise."""
    figures = []
    for backend in ("postgres", "mysql"):
        figures += measure(backend, 4 if quick else 200, 5.0 if quick else 20.0)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--backends", default="postgres,mysql")
    ap.add_argument("--schedules", type=int, default=300, help="schedules per measurement (cap)")
    ap.add_argument("--seconds", type=float, default=30.0, help="time cap per measurement")
    args = ap.parse_args()
    try:
        for backend in args.backends.split(","):
            for f in measure(backend, args.schedules, args.seconds):
                print(f"{f.name:70s} {fmt(f.value):>8s} {f.unit}"
                      + (f"  (baseline {fmt(f.baseline)}, ratio {fmt(f.ratio)})" if f.baseline is not None else ""))
    finally:
        stop_servers()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
