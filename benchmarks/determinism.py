"""Determinism (issue 11): does the same schedule give the same outcome, and does exploring finish?

Run: python -m benchmarks determinism [--quick] [--load]
     python benchmarks/determinism.py [--quick] [--load] [--explorations K] [--replays R] [--random S]

For each scenario below, on each backend where it exists: K explorations (``race.explore``, strategy
auto, a fresh example directory each), then R replays (``race.replay``) of every distinct failure they
found and of S random valid schedules (``RandomChooser``).  A replay *diverges* when its outcome --
verdict, violations, schedule, step labels, each actor's error code -- differs from the first run of
that schedule, or when it raises (Divergence, HarnessError "the same decisions gave different
schedules", anything).  An exploration is *aborted* when it raises instead of returning a verdict.
Target (issue 11): 0 divergences in >= 2,000 replays and 0 aborted explorations in >= 100, measured
while another process loads both cores (``--load`` starts two busy-loop processes and stops them).

Scenarios (every one through the public Race API):
  row_lock      lost update (read, then UPDATE): the second UPDATE waits for the row lock until COMMIT
  advisory_xact check-then-insert under pg_advisory_xact_lock, released by COMMIT (PostgreSQL)
  unique_wait   both insert the same key: the second waits on the unique index, then fails (allowed)
  deadlock      opposite-order updates of two rows: one is the deadlock victim (allowed)
  get_lock      check-then-insert under GET_LOCK, unlocked before COMMIT (MariaDB)
  redis_lock    check-then-insert under a Redis lock, unlocked before COMMIT
  sqlalchemy    check-then-insert in ``engine.begin()`` of ``ctx.engine()`` (psycopg 3 / PyMySQL)
  sqlalchemy_psycopg2  the same through an app's own engine over psycopg2, built from its URL with
                ``connect_args={"connection_factory": race.psycopg2_connection_factory()}`` (PostgreSQL)
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, fmt, server, stop_servers  # noqa: E402
from harness.explore import Race, ScheduleOutcome  # noqa: E402
from harness.explore.strategies import RandomChooser  # noqa: E402

NAME = "determinism"
RULES = "CREATE TABLE rules (name varchar(50))"
# MariaDB: PyMySQL puts the server's SQLSTATE on its errors (``sqlstate``) and ActorResult.error_info
# prefers it, so a real server error reads as 23000/40001, not as its number 1062/1213: both are allowed
DEADLOCK = {"postgres": ("40P01",), "mysql": ("1213", "40001")}
DUPLICATE = {"postgres": ("23505",), "mysql": ("1062", "23000")}


def _check_then_insert(conn: Any) -> bool:
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM rules WHERE name = 'r1'")
    (n,) = cur.fetchone()
    if int(n) == 0:
        cur.execute("INSERT INTO rules (name) VALUES ('r1')")
    conn.commit()
    return int(n) == 0


def _unlock_first(conn: Any, lock: Any) -> bool:
    """bk-ci's bug in miniature: the lock is released before the commit."""
    lock.acquire()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM rules WHERE name = 'r1'")
    (n,) = cur.fetchone()
    if int(n) == 0:
        cur.execute("INSERT INTO rules (name) VALUES ('r1')")
    lock.release()
    conn.commit()
    return int(n) == 0


def _rules(race: Race, actor: Callable[[Any], Any]) -> None:
    race.setup(RULES)
    race.teardown("DROP TABLE IF EXISTS rules")
    race.actor("A", actor)
    race.actor("B", actor)
    race.check_sql("one_rule", "SELECT count(*) FROM rules", equals=1)


def row_lock(race: Race) -> None:
    race.setup("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    race.setup("INSERT INTO counter VALUES (1, 0)")
    race.teardown("DROP TABLE IF EXISTS counter")

    def increment(ctx: Any) -> None:
        conn = ctx.connect()
        cur = conn.cursor()
        cur.execute("SELECT n FROM counter WHERE id = 1")
        (n,) = cur.fetchone()
        cur.execute(f"UPDATE counter SET n = {int(n) + 1} WHERE id = 1")
        conn.commit()
    race.actor("A", increment)
    race.actor("B", increment)
    race.check_sql("both_counted", "SELECT n FROM counter WHERE id = 1", equals=2)


def advisory_xact(race: Race) -> None:
    def actor(ctx: Any) -> bool:
        conn = ctx.connect()
        ctx.lock("advisory", "rule-r1", conn=conn, xact=True).acquire()
        return _check_then_insert(conn)  # its COMMIT releases the lock
    _rules(race, actor)


def unique_wait(race: Race) -> None:
    race.setup("CREATE TABLE u (k int PRIMARY KEY)")
    race.teardown("DROP TABLE IF EXISTS u")

    def insert(ctx: Any) -> None:
        conn = ctx.connect()
        conn.cursor().execute("INSERT INTO u VALUES (1)")
        conn.commit()
    race.actor("A", insert)
    race.actor("B", insert)
    race.check_sql("one_row", "SELECT count(*) FROM u", equals=1)


def deadlock(race: Race) -> None:
    race.setup("CREATE TABLE pair (id int PRIMARY KEY, n int)")
    race.setup("INSERT INTO pair VALUES (1, 0), (2, 0)")
    race.teardown("DROP TABLE IF EXISTS pair")

    def updates(first: int, second: int) -> Callable[[Any], None]:
        def run(ctx: Any) -> None:
            conn = ctx.connect()
            cur = conn.cursor()
            cur.execute(f"UPDATE pair SET n = n + 1 WHERE id = {first}")
            cur.execute(f"UPDATE pair SET n = n + 1 WHERE id = {second}")
            conn.commit()
        return run
    race.actor("A", updates(1, 2))
    race.actor("B", updates(2, 1))
    race.check_sql("all_or_nothing", "SELECT count(DISTINCT n) FROM pair", equals=1)


def get_lock(race: Race) -> None:
    _rules(race, lambda ctx: _unlock_first(ctx.connect(), ctx.lock("get_lock", "rule-r1")))


def redis_lock(race: Race) -> None:
    _rules(race, lambda ctx: _unlock_first(ctx.connect(), ctx.lock("redis", "rule-r1")))


def sqlalchemy_engine(race: Race) -> None:
    import sqlalchemy

    def actor(ctx: Any) -> None:
        with ctx.engine().begin() as conn:
            n = conn.execute(sqlalchemy.text("SELECT count(*) FROM rules")).scalar()
            if n == 0:
                conn.execute(sqlalchemy.text("INSERT INTO rules (name) VALUES ('r1')"))
    _rules(race, actor)


def sqlalchemy_psycopg2(race: Race) -> None:
    """An app's own engine over psycopg2, built from its URL, with the race's connection_factory."""
    import sqlalchemy

    info = race.database.info
    url = sqlalchemy.engine.URL.create("postgresql+psycopg2", username=info.user, password=info.password or None,
                                       host=info.host, port=info.port, database=info.dbname)
    engine = sqlalchemy.create_engine(url, connect_args={"connection_factory": race.psycopg2_connection_factory()},
                                      poolclass=sqlalchemy.pool.NullPool)

    def actor() -> None:
        with engine.begin() as conn:
            n = conn.execute(sqlalchemy.text("SELECT count(*) FROM rules")).scalar()
            if n == 0:
                conn.execute(sqlalchemy.text("INSERT INTO rules (name) VALUES ('r1')"))
    _rules(race, lambda: actor())


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[Race], None]
    backends: tuple[str, ...]
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # backend -> allowed error codes


SCENARIOS = [
    Scenario("row_lock", row_lock, ("postgres", "mysql")),
    Scenario("advisory_xact", advisory_xact, ("postgres",)),
    Scenario("unique_wait", unique_wait, ("postgres", "mysql"), DUPLICATE),
    Scenario("deadlock", deadlock, ("postgres", "mysql"), DEADLOCK),
    Scenario("get_lock", get_lock, ("mysql",)),
    Scenario("redis_lock", redis_lock, ("postgres", "mysql")),
    Scenario("sqlalchemy", sqlalchemy_engine, ("postgres", "mysql")),
    Scenario("sqlalchemy_psycopg2", sqlalchemy_psycopg2, ("postgres",)),
]


def signature(outcome: ScheduleOutcome) -> tuple[Any, ...]:
    """What must be identical between two runs of one schedule."""
    errors = tuple(sorted((name, r.error_info.code if r.error_info else None) for name, r in outcome.results.items()))
    return (outcome.passed, tuple(outcome.violations), tuple(outcome.schedule), tuple(outcome.labels), errors)


@dataclass
class Tally:
    explorations: int = 0
    aborted: list[str] = field(default_factory=list)
    failures: int = 0  # distinct failing schedules found
    replays: int = 0
    divergences: list[str] = field(default_factory=list)


def _replays(race: Race, first: ScheduleOutcome, n: int, tally: Tally) -> None:
    expected = signature(first)
    for _ in range(n):
        tally.replays += 1
        try:
            got = signature(race.replay(first.schedule))
        except Exception as exc:  # Divergence, HarnessError, or a bug: all count
            tally.divergences.append(f"{first.schedule_text} (first run: errors {expected[4]}): raised "
                                     f"{type(exc).__name__}: {exc}"[:300])
            continue
        if got != expected:
            diff = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
            fields = ", ".join(("verdict", "violations", "schedule", "labels", "errors")[i] for i in diff)
            tally.divergences.append(f"{first.schedule_text}: {fields} differ: {expected[diff[0]]} -> {got[diff[0]]}"[:300])


def measure(scn: Scenario, backend: str, k: int, budget: int, r: int, s: int, redis_info: Any) -> Tally:
    tally = Tally()
    database = server(backend).create_database()
    race = Race(database, name=f"determinism-{scn.name}", redis=redis_info,
                allowed_errors=scn.allowed.get(backend, ()))
    scn.build(race)
    failures: dict[tuple[str, ...], ScheduleOutcome] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="determinism-") as tmp:
            for i in range(k):
                tally.explorations += 1
                try:
                    res = race.explore(max_schedules=budget, database_dir=Path(tmp) / str(i))
                except Exception as exc:
                    tally.aborted.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                if res.failure is not None:
                    failures.setdefault(tuple(res.failure.schedule), res.failure)
        tally.failures = len(failures)
        for failure in failures.values():
            _replays(race, failure, r, tally)
        for seed in range(s):
            try:
                first = race.run_schedule(RandomChooser(seed))
            except Exception as exc:  # a random schedule that cannot even run once: reported, not replayed
                tally.divergences.append(f"random schedule {seed}: first run raised {type(exc).__name__}: {exc}"[:300])
                continue
            _replays(race, first, r, tally)
    finally:
        race.close()
        database.drop()
    return tally


def load_processes(n: int = 2, max_seconds: int = 3600) -> list[subprocess.Popen[bytes]]:
    """CPU load: ``n`` busy loops that end by themselves after ``max_seconds`` at the latest."""
    code = f"import time\nend = time.monotonic() + {max_seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def measure_all(k: int, budget: int, r: int, s: int, load: bool, quick: bool) -> list[Figure]:
    loaders = load_processes() if load else []
    figures = []
    total = Tally()
    try:
        redis_info = server("redis").info
        for scn in SCENARIOS:
            for backend in scn.backends:
                if quick and scn.name == "deadlock" and backend == "postgres":
                    continue  # each deadlock waits deadlock_timeout (1 s): too slow for quick mode
                t = measure(scn, backend, k, budget, r, s, redis_info)
                key = f"{scn.name}/{backend}"
                print(f"  {key:26s} divergences {len(t.divergences)}/{t.replays} replays; aborted "
                      f"{len(t.aborted)}/{t.explorations} explorations; distinct failures found {t.failures}", flush=True)
                for line, n in collections.Counter(t.divergences + t.aborted).most_common():
                    print(f"      {n} x {line}", flush=True)
                figures += [Figure(NAME, f"{key}: divergent replays", "replays", len(t.divergences),
                                   note=f"of {t.replays}; {t.failures} distinct failures + {s} random schedules"
                                   + (f"; e.g. {t.divergences[0][:120]}" if t.divergences else "")),
                            Figure(NAME, f"{key}: aborted explorations", "explorations", len(t.aborted),
                                   note=f"of {t.explorations}" + (f"; e.g. {t.aborted[0][:120]}" if t.aborted else ""))]
                total.replays += t.replays
                total.explorations += t.explorations
                total.divergences += t.divergences
                total.aborted += t.aborted
    finally:
        for p in loaders:
            p.kill()
            p.wait()
    under = "under load (2 busy loops)" if load else "no load added"
    figures += [Figure(NAME, "all: divergent replays", "replays", len(total.divergences),
                       note=f"of {total.replays}, {under}; target 0 in >= 2,000"),
                Figure(NAME, "all: aborted explorations", "explorations", len(total.aborted),
                       note=f"of {total.explorations}, {under}; target 0 in >= 100")]
    return figures


def run(quick: bool) -> list[Figure]:
    """Quick: 1 exploration of <= 6 schedules, 1 random schedule, 2 replays each.  Full: 10
    explorations of <= 30 schedules, 8 random schedules, 20 replays each (>= 2,000 replays, 120
    explorations).  ``--load`` (HARNESS_BENCH_LOAD=1) adds the CPU load."""
    load = os.environ.get("HARNESS_BENCH_LOAD") == "1"
    if quick:
        return measure_all(1, 6, 2, 1, load, quick=True)
    return measure_all(10, 30, 20, 8, load, quick=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load", action="store_true", help="run under two busy-loop processes")
    ap.add_argument("--explorations", type=int, default=10)
    ap.add_argument("--schedules", type=int, default=30, help="budget of each exploration")
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--random", type=int, default=8, help="random valid schedules replayed per scenario")
    args = ap.parse_args()
    try:
        figures = (measure_all(1, 6, 2, 1, args.load, True) if args.quick else
                   measure_all(args.explorations, args.schedules, args.replays, args.random, args.load, False))
    finally:
        stop_servers()
    for f in figures[-2:]:
        print(f"{f.name}: {fmt(f.value)} {f.unit} ({f.note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
