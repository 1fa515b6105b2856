"""Cost of faults: a server crash + restart inside a schedule, and the exploration rate with faults on.

Run: python -m benchmarks fault_cost [--quick]
     python benchmarks/fault_cost.py [--backends postgres,mysql] [--reps 10] [--schedules 200]

1. Crash + restart (target <= 1 s on a warm server).  On a private server started with fsync on, the
   journal race (scenarios/faults/journal.py: 3 transactions of 2 rows) is replayed with the crash
   placed mid-transaction ("W W W crash") and without it ("W W W"); the cost is the difference of the
   medians, and the restart time the harness itself records in the fault event.  Also the bare
   ``server.kill(); server.restart()`` outside any schedule.
2. Exploration rate with faults enabled: schedules/s under the random chooser for the same race with
   no fault, with the cheap faults (lost commit ack, killed session, injected error: each may be placed
   anywhere or not at all), and with the crash fault; ratios against "no fault" measured in the same run.

Servers are started by the script on 127.0.0.1 (fsync on) and stopped at exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure  # noqa: E402
from harness import load_settings  # noqa: E402
from harness.explore import Race  # noqa: E402
from harness.explore.strategies import RandomChooser  # noqa: E402
from harness.provision.local import start_local  # noqa: E402
from scenarios.faults.journal import append_entries  # noqa: E402

TARGET_S = 1.0
ERROR_CODE = {"postgres": "40001", "mysql": "1213"}
NAME = "fault_cost"


def journal_race(database: Any, faults: str) -> Race:
    race = Race(database, name=f"fault-cost-{faults}")
    race.setup("CREATE TABLE journal (entry int, kind varchar(10))")
    race.teardown("DROP TABLE IF EXISTS journal")
    race.actor("W", lambda ctx: append_entries(ctx, entries=3))
    if faults == "cheap":
        race.fault("ack", race.lose_commit_ack("W"))
        race.fault("kill", race.kill_session("W"))
        race.fault("error", race.inject_error("W", ERROR_CODE[race.backend]))
    elif faults == "crash":
        race.fault("crash", race.crash_server())
    race.check_durable("durable", "SELECT entry FROM journal", rows_per_op=2)
    return race


def timed(fn: Callable[[], Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def crash_cost(backend: str, server: Any, reps: int) -> list[Figure]:
    database = server.create_database()
    with journal_race(database, "crash") as race:
        race.replay("W W W")  # warm: connections, first-use initialisation
        plain = timed(lambda: race.replay("W W W"), reps)
        restarts: list[float] = []

        def crash() -> None:
            outcome = race.replay("W W W crash")
            assert outcome.passed, outcome.violations
            restarts.extend(e.detail["restart_ms"] for e in outcome.trace.events
                            if e.kind == "fault" and e.detail.get("fault") == "server crash")
        crashed = timed(crash, reps)
    bare = timed(lambda: (server.kill(), server.restart()), reps)
    cost = statistics.median(crashed) - statistics.median(plain)
    print(f"{backend:8s} schedule without crash {statistics.median(plain) * 1000:7.1f} ms, with crash "
          f"{statistics.median(crashed) * 1000:7.1f} ms -> crash+restart costs {cost * 1000:6.1f} ms "
          f"(max {max(crashed) * 1000:.1f} ms; target <= {TARGET_S * 1000:.0f} ms: "
          f"{'met' if max(crashed) - statistics.median(plain) <= TARGET_S else 'NOT met'})")
    print(f"{'':8s} restart as recorded in the fault event: median {statistics.median(restarts):6.1f} ms; "
          f"bare kill()+restart(): median {statistics.median(bare) * 1000:6.1f} ms, max {max(bare) * 1000:.1f} ms")
    return [Figure(NAME, f"{backend}: schedule with crash + restart", "ms", statistics.median(crashed) * 1000,
                   statistics.median(plain) * 1000, "the same schedule without the crash",
                   f"median of {reps}; max {max(crashed) * 1000:.0f} ms; target: crash+restart <= 1 s"),
            Figure(NAME, f"{backend}: restart as recorded in the fault event", "ms", statistics.median(restarts),
                   statistics.median(bare) * 1000, "bare server.kill(); server.restart()", f"median of {reps}")]


def rate(backend: str, server: Any, faults: str, schedules: int) -> tuple[float, int]:
    database = server.create_database()
    fired = 0
    with journal_race(database, faults) as race:
        race.run_schedule(RandomChooser(-1))  # warm
        start = time.perf_counter()
        for seed in range(schedules):
            outcome = race.run_schedule(RandomChooser(seed))
            assert outcome.passed, (faults, outcome.schedule_text, outcome.violations)
            fired += any(e.kind == "fault" for e in outcome.trace.events)
        elapsed = time.perf_counter() - start
    if faults != "crash":
        database.drop()
    return schedules / elapsed, fired


def measure(backend: str, reps: int, schedules: int) -> list[Figure]:
    """On a private server with fsync on (a crash must lose nothing acknowledged)."""
    server = start_local(backend, dataclasses.replace(load_settings(), fsync=True))
    try:
        figures = crash_cost(backend, server, reps)
        base, _ = rate(backend, server, "none", schedules)
        for faults in ("cheap", "crash"):
            n = schedules if faults == "cheap" else max(2, schedules // 10)
            per_s, fired = rate(backend, server, faults, n)
            what = "lost ack + killed session + injected error" if faults == "cheap" else "server crash"
            figures.append(Figure(NAME, f"{backend}: schedules/s with {what} declared", "1/s", per_s, base,
                                  "no fault declared", f"a fault fired in {fired} of {n}"))
    finally:
        server.stop()
    return figures


def run(quick: bool) -> list[Figure]:
    figures = []
    for backend in ("postgres", "mysql"):
        figures += measure(backend, 2, 4) if quick else measure(backend, 5, 100)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgres,mysql")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--schedules", type=int, default=200)
    args = parser.parse_args()
    settings = dataclasses.replace(load_settings(), fsync=True)
    for backend in args.backends.split(","):
        server = start_local(backend, settings)
        try:
            print(f"== {server.flavor} {server.version} (fsync on)")
            crash_cost(backend, server, args.reps)
            base, _ = rate(backend, server, "none", args.schedules)
            print(f"{'':8s} exploration rate (random chooser, {args.schedules} schedules each):")
            print(f"{'':8s}   no fault      {base:7.1f} schedules/s")
            for faults in ("cheap", "crash"):
                n = args.schedules if faults == "cheap" else max(10, args.schedules // 10)
                per_s, fired = rate(backend, server, faults, n)
                print(f"{'':8s}   {faults:12s}  {per_s:7.1f} schedules/s ({per_s / base:.2f}x of no fault; "
                      f"a fault fired in {fired} of {n} schedules)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
