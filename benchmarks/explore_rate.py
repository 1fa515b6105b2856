"""Exploration rate: schedules per second per worker (one process, one database) on real servers.

Run: python benchmarks/explore_rate.py [--backends postgres,mysql] [--schedules 300] [--seconds 30]
                                       [--profile]

Scenario "free": 2 actors, 6 DB operations each way (per actor: SELECT, UPDATE, COMMIT on row x, then
on row y; A touches rows 1,2 and B rows 3,4), so no schedule ever blocks.
Scenario "contended": the same shape, but both actors read and update row 1 in both transactions, so
a schedule that switches between A's UPDATE and A's COMMIT makes B block on the row lock (the scheduler
must detect the wait through the server and resume later).

For each backend and scenario it prints:
* schedules/s under the random chooser (pure harness cost: no Hypothesis) and under Hypothesis
  (race.explore(strategy="hypothesis"), as a user runs it);
* the fraction of schedules with a blocked call;
* the baseline: the same SQL (setup, both actors' statements in order, check, teardown, with fresh
  connections) run serially with no harness, and the ratio harness/baseline;
* a breakdown of where a schedule's wall time goes (setup/teardown SQL, connect, the statements
  themselves, blocked-detection queries, checks, closing, and the rest: thread start, handoffs,
  condition-variable waits), measured by wrapping harness functions from outside (no harness edits);
* with --profile, the top cProfile entries of the main (conductor) thread.

Every loop is bounded by --schedules and --seconds; servers are started by the script on 127.0.0.1 and
stopped at exit.  Target: >= 50 schedules/s per worker.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import load_settings, start_server  # noqa: E402
from harness.dialect import execute  # noqa: E402
from harness.explore import Race  # noqa: E402
from harness.explore import scheduler as sched_mod  # noqa: E402
from harness.explore.strategies import RandomChooser  # noqa: E402

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


class Timers:
    """Wall-time accumulators around harness functions (patched from outside, restored after)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = collections.defaultdict(float)
        self.count: dict[str, int] = collections.defaultdict(int)
        self.lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any]] = []

    def add(self, key: str, dt: float) -> None:
        with self.lock:
            self.total[key] += dt
            self.count[key] += 1

    def wrap(self, owner: Any, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - t)
        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def wrap_call_fn(self) -> None:
        """Time only the database call inside Scheduler.call (not the wait for the grant)."""
        original = sched_mod.Scheduler.call
        timers = self

        def call(self_: Any, label: str, sid: Any, fn: Callable[[], Any]) -> Any:
            def timed() -> Any:
                t = time.perf_counter()
                try:
                    return fn()
                finally:
                    timers.add("statements (in actor threads)", time.perf_counter() - t)
            return original(self_, label, sid, timed)
        self._undo.append((sched_mod.Scheduler, "call", original))
        sched_mod.Scheduler.call = call  # type: ignore[method-assign]

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def run_random(race: Race, n: int, seconds: float, seed: int = 0) -> tuple[int, float, int]:
    """(schedules, elapsed, schedules with a blocked call) under RandomChooser."""
    race.run_schedule(RandomChooser(10_000))  # warm-up (lazy init), not counted
    blocked = done = 0
    deadline = time.monotonic() + seconds
    t = time.perf_counter()
    for i in range(n):
        if time.monotonic() > deadline:
            break
        outcome = race.run_schedule(RandomChooser(seed + i))
        if not outcome.passed:
            raise SystemExit(f"unexpected violation in {race.name}: {outcome.violations}")
        blocked += any(e.kind == "blocked" for e in outcome.trace.events)
        done += 1
    return done, time.perf_counter() - t, blocked


def breakdown(database: Any, scenario: str, n: int, seconds: float) -> tuple[dict[str, float], int, float, float]:
    race = build(database, scenario)
    timers = Timers()
    timers.wrap(race.dialect, "connect", "connect (in actor threads)")
    timers.wrap(race, "_run_hooks", "setup/teardown SQL")
    timers.wrap(race, "_evaluate", "checks")
    timers.wrap(race, "_close_opened", "close connections")
    timers.wrap(sched_mod.Scheduler, "_server_waits", "blocked-detection queries")
    timers.wrap(sched_mod.Scheduler, "run", "Scheduler.run")
    timers.wrap(sched_mod.Scheduler, "_settle", "_settle")
    timers.wrap(threading.Thread, "start", "thread start")
    timers.wrap_call_fn()
    try:
        done, elapsed, _ = run_random(race, n, seconds, seed=50_000)
    finally:
        timers.restore()
        race.close()
    # the warm-up schedule was timed too: scale by done/(done+1)
    scale = done / (done + 1)
    per = {k: v * scale / done * 1000 for k, v in timers.total.items()}
    polls = timers.count["blocked-detection queries"] * scale / done
    return per, done, polls, elapsed / done * 1000


def profile_top(database: Any, scenario: str, n: int, seconds: float, limit: int = 18) -> str:
    race = build(database, scenario)
    prof = cProfile.Profile()
    prof.enable()
    try:
        run_random(race, n, seconds, seed=90_000)
    finally:
        prof.disable()
        race.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def fmt_row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="postgres,mysql")
    ap.add_argument("--schedules", type=int, default=300, help="schedules per measurement (cap)")
    ap.add_argument("--seconds", type=float, default=30.0, help="time cap per measurement")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top entries")
    args = ap.parse_args()
    settings = load_settings()
    results = []
    for backend in args.backends.split(","):
        server = start_server(backend, settings)
        try:
            database = server.create_database()
            print(f"\n== {backend}: {server.flavor} {server.version} on {server.info.host}:{server.info.port}")
            for scenario in SCENARIOS:
                base = baseline(database, scenario, 50, 10.0)
                race = build(database, scenario)
                try:
                    done, elapsed, blocked = run_random(race, args.schedules, args.seconds)
                    t = time.perf_counter()
                    res = race.explore(strategy="hypothesis", max_schedules=args.schedules,
                                       database_dir=Path(f"/tmp/explore_rate_hyp/{backend}-{scenario}-{time.time_ns()}"))
                    hyp_rate = res.schedules_run / (time.perf_counter() - t)
                finally:
                    race.close()
                light = build(database, scenario, light_setup=True)
                try:
                    ldone, lelapsed, _ = run_random(light, args.schedules, args.seconds, seed=20_000)
                finally:
                    light.close()
                    with database.connect() as conn:
                        execute(conn, "DROP TABLE counter")
                        if not getattr(conn, "autocommit", True):
                            conn.commit()
                rate = done / elapsed
                results.append((backend, scenario, rate, hyp_rate, blocked / done, base * 1000,
                                elapsed / done * 1000, ldone / lelapsed, done))
                per, bdone, polls, bms = breakdown(database, scenario, min(args.schedules, 200), args.seconds)
                total = per.pop("Scheduler.run", 0.0)
                settle = per.pop("_settle", 0.0)
                print(f"\n-- {scenario}: random {rate:.1f}/s ({done} schedules), hypothesis {hyp_rate:.1f}/s "
                      f"({res.schedules_run}), {100 * blocked / done:.0f}% of schedules block; "
                      f"baseline {base * 1000:.1f} ms/run serial no harness")
                sched_ms = sum(v for k, v in per.items() if k in ("setup/teardown SQL", "checks",
                                                                   "close connections")) + total
                print(f"   where a schedule's time goes ({bms:.1f} ms/schedule with timers on, {bdone} schedules; "
                      f"{polls:.1f} blocked-detection queries/schedule):")
                for key in ("setup/teardown SQL", "connect (in actor threads)", "statements (in actor threads)",
                            "blocked-detection queries", "checks", "close connections", "thread start"):
                    print(f"     {key:32s} {per.get(key, 0.0):7.2f} ms")
                inside = per.get("connect (in actor threads)", 0) + per.get("statements (in actor threads)", 0) \
                    + per.get("blocked-detection queries", 0) + per.get("thread start", 0)
                print(f"     {'rest of Scheduler.run':32s} {max(total - inside, 0):7.2f} ms  (handoffs, cond waits, "
                      f"poll sleeps; Scheduler.run total {total:.2f} ms, _settle {settle:.2f} ms)")
                print(f"     {'(main thread: hooks+checks+close+Scheduler.run)':32s} {sched_ms:7.2f} ms;"
                      " actor-thread times overlap when one actor waits on a lock")
                if args.profile:
                    print(profile_top(database, scenario, min(args.schedules, 200), args.seconds))
            database.drop()
        finally:
            server.stop()
    print("\n== schedules per second per worker (target >= 50/s)")
    widths = [22, 9, 11, 8, 13, 13, 7, 16]
    print(fmt_row(["backend/scenario", "random/s", "hypothesis/s", "blocked", "ms/schedule", "baseline ms",
                   "ratio", "light setup /s"], widths))
    by = {}
    for backend, scenario, rate, hyp, frac, base_ms, ms, light_rate, done in results:
        by[(backend, scenario)] = rate
        print(fmt_row([f"{backend}/{scenario}", f"{rate:.1f}", f"{hyp:.1f}", f"{100 * frac:.0f}%", f"{ms:.1f}",
                       f"{base_ms:.1f}", f"{ms / base_ms:.1f}x", f"{light_rate:.1f}"], widths))
    for backend in args.backends.split(","):
        if (backend, "free") in by and (backend, "contended") in by:
            print(f"{backend}: contended/free rate ratio {by[(backend, 'contended')] / by[(backend, 'free')]:.2f}")
    worst = min(r[2] for r in results)
    print(f"target >= {TARGET:.0f}/s: {'met' if worst >= TARGET else 'NOT met'} (slowest {worst:.1f}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
