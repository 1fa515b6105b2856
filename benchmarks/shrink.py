"""Shrinking a found failure to its minimal schedule, for 2 and 3 actors (issue 17: <= 1 s).

Each run explores with the Hypothesis strategy alone (its first failures carry many preemptions: 13 to
17 for the three bookers), without minimizing, then times ``race.minimize(failure)``: bounded
enumeration of every schedule with fewer preemptions, then dropping single preemptions, each candidate
replayed exactly.  The baseline is one schedule's run time in the same run (the cost unit).

Run: python -m benchmarks shrink [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, server  # noqa: E402
from benchmarks.narrow_window import three_race  # noqa: E402
from harness.explore import Race  # noqa: E402

NAME = "shrink"


def two_race(database: Any) -> Race:
    race = Race(database, name="check-then-insert")
    race.setup("CREATE TABLE rules (name varchar(20))")
    race.teardown("DROP TABLE rules")

    def save(ctx: Any) -> None:
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM rules WHERE name = 'r1'")
        if int(cur.fetchone()[0]) == 0:
            cur.execute("INSERT INTO rules VALUES ('r1')")
        conn.commit()

    race.actor("A", save)
    race.actor("B", save)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)
    return race


def _measure(build: Callable[[Any], Race], database: Any, runs: int) -> tuple[list[float], list[int], float]:
    shrink, preemptions, schedule_s = [], [], []
    for seed in range(runs):
        race = build(database)
        try:
            with tempfile.TemporaryDirectory(prefix="shrink-hyp-") as tmp:
                found = race.explore(strategy="hypothesis", max_schedules=200, minimize=False, seed=seed,
                                     database_dir=tmp)
            if found.failure is None:
                continue
            started = time.perf_counter()
            minimal, _, _ = race.minimize(found.failure)
            shrink.append(time.perf_counter() - started)
            preemptions.append(found.failure.preemptions)
            schedule_s.append(race.replay(minimal.schedule).duration)
        finally:
            race.close()
    return shrink, preemptions, statistics.median(schedule_s) if schedule_s else float("nan")


def run(quick: bool) -> list[Figure]:
    runs = 2 if quick else 10
    database = server("postgres").create_database()
    figures = []
    try:
        for label, build in (("2 actors (check-then-insert)", two_race), ("3 actors (three bookers)", three_race)):
            shrink, pre, one = _measure(build, database, runs)
            value = statistics.median(shrink) if shrink else float("nan")
            note = (f"median of {len(shrink)} found failures, {min(pre, default=0)}-{max(pre, default=0)} "
                    f"preemptions before; target <= 1 s")
            figures.append(Figure(NAME, f"{label}: shrink to minimal", "s", round(value, 3), round(one, 4),
                                  "one schedule", note=note))
            print(f"  {label:<30} shrink {value:.3f} s (one schedule {one * 1000:.1f} ms)", flush=True)
    finally:
        database.drop()
    return figures


if __name__ == "__main__":
    run("--quick" in sys.argv)
