"""One exploration split in two shards (``--shard 1/2`` and ``2/2``) vs the unsharded exploration.

Three actors that read and increment a counter each (the check holds on every schedule), explored
exhaustively with a preemption bound of 2 (1 in quick mode), so the whole space is tried and the
shards must try exactly the same schedules.  Each shard's wall time is measured as CI would see it
(one shard per job, so the shards' times are not added); the baseline is the unsharded exploration in
the same run.  The shards' extra cost is their probe runs (the top of the schedule tree that every
shard runs to agree on the split) and their own warm-up run.

Run: python -m benchmarks shard [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, server  # noqa: E402
from harness.explore import Race  # noqa: E402

NAME = "shard"


def counter_race(database: Any) -> Race:
    """Three actors, each reading and incrementing its own row: no actor waits for another, so the
    server reports the same facts on every run and the space is the same every time (three actors
    queueing on one row lock are woken in an order the server chooses, which a partition cannot fix)."""
    race = Race(database, name="three-counters")
    race.setup("CREATE TABLE counter (id varchar(1) PRIMARY KEY, n int)")
    race.setup("INSERT INTO counter VALUES ('A', 0), ('B', 0), ('C', 0)")
    race.teardown("DROP TABLE counter")

    def increment(ctx: Any) -> None:
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute(f"SELECT n FROM counter WHERE id = '{ctx.name}'")
        (n,) = cur.fetchone()
        cur.execute(f"UPDATE counter SET n = {int(n) + 1} WHERE id = '{ctx.name}'")
        conn.commit()

    for name in ("A", "B", "C"):
        race.actor(name, increment)
    race.check_sql("all_counted", "SELECT sum(n) FROM counter", equals=3)
    return race


def _explore(database: Any, bound: int, shard: str | None) -> tuple[float, Any]:
    race = counter_race(database)
    try:
        started = time.perf_counter()
        result = race.explore(strategy="exhaustive", preemption_bound=bound, max_schedules=100_000, shard=shard)
        return time.perf_counter() - started, result
    finally:
        race.close()


def run(quick: bool) -> list[Figure]:
    bound, repeats = (1, 1) if quick else (2, 3)
    database = server("postgres").create_database()
    try:
        whole_s, halves_s = [], {1: [], 2: []}  # type: ignore[var-annotated]
        for _ in range(repeats):
            seconds, whole = _explore(database, bound, None)
            whole_s.append(seconds)
            parts = []
            for k in (1, 2):
                seconds, part = _explore(database, bound, f"{k}/2")
                halves_s[k].append(seconds)
                parts.append(part)
            same = Counter(s for p in parts for s in p.tried) == Counter(whole.tried) and whole.exhausted
            if not same:
                raise AssertionError("the two shards did not try exactly the unsharded schedules")
        base = statistics.median(whole_s)
        figures = [Figure(NAME, "unsharded: schedules (space exhausted)", "schedules", whole.schedules_run, None,
                          note=f"3 actors, preemption bound {bound}; median wall {base:.2f} s")]
        for k, part in zip((1, 2), parts):
            wall = statistics.median(halves_s[k])
            figures.append(Figure(NAME, f"shard {k}/2 wall", "s", round(wall, 3), round(base, 3), "unsharded",
                                  note=f"{part.schedules_run} schedules + {part.probe_runs} probe runs; "
                                       "together exactly the unsharded schedules"))
            print(f"  shard {k}/2: {part.schedules_run} schedules (+{part.probe_runs} probes) {wall:.2f} s "
                  f"vs unsharded {whole.schedules_run} in {base:.2f} s", flush=True)
        return figures
    finally:
        database.drop()


if __name__ == "__main__":
    run("--quick" in sys.argv)
