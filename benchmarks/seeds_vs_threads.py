"""The two seed bugs: plain threads hammering versus the harness's exploration, and their fixes.

Run: python -m benchmarks seeds_vs_threads [--quick]
     python benchmarks/seeds_vs_threads.py [--thread-seconds 10] [--runs 20] [--replays 20]
                                           [--fixed-schedules 500] [--seeds kinto-pg,kinto-my,...]

Seeds (scenarios/kinto/storage.py, scenarios/bkci/rules.py, unchanged application code):
  kinto-pg / kinto-my   two create_record calls (collections c1, c2 of bucket b) with the database clock
                        frozen at one instant in both sessions (harness.clock.DbClock), so the two
                        history stamps are computed equal; fixed: variant "locked" (Kinto PR #3790)
  bkci-my-getlock       save_rule x2, GET_LOCK on MariaDB, unlock-before-commit; fixed: commit-inside-lock
  bkci-pg-advisory      the same with a session-level pg_advisory_lock on PostgreSQL
  bkci-my-redis         the same with the Redis lock (SET NX PX + compare-and-delete) and MariaDB

(a) threads: two threads released together by a barrier, each running the application call on its own
    connection (and lock client), state reset between trials, for --thread-seconds; done twice with the
    same parameters to show that the failing trial is not the same twice (nothing to replay).
(b) harness: --runs explorations (Hypothesis, fresh example directory each, <= 50 schedules): schedules
    and seconds to the first failure, the minimal schedule, --replays exact replays of it (same schedule
    and violations each time), then the fixed variant explored for --fixed-schedules schedules.

Every loop is bounded by count and time; servers (PostgreSQL, MariaDB, Redis) are started by the script
on 127.0.0.1 and stopped at exit.  Targets: first failure <= 2 s and <= 50 schedules in 20/20 runs;
fixed variant survives >= 500 schedules.
"""

from __future__ import annotations

import argparse
import math
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402

from benchmarks.core import Figure, median, server  # noqa: E402
from harness import (  # noqa: E402
    load_settings,
    locks,  # noqa: E402
    start_server,
)
from harness.clock import DbClock  # noqa: E402
from harness.dialect import execute  # noqa: E402
from harness.explore import Race  # noqa: E402
from scenarios.bkci import rules  # noqa: E402
from scenarios.kinto import storage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FROZEN = "2024-01-01 00:00:00+00"
RULE = rules.Rule("c1", "m1", "DB", "r1", "rule-x")
MAX_TRIALS = 1_000_000
NAME = "seeds_vs_threads"


@dataclass(frozen=True)
class Seed:
    name: str
    system: str  # kinto | bkci
    backend: str  # postgres | mysql
    lock: str | None  # get_lock | advisory | redis
    buggy: str
    fixed: str


SEEDS = [
    Seed("kinto-pg", "kinto", "postgres", None, "plain", "locked"),
    Seed("kinto-my", "kinto", "mysql", None, "plain", "locked"),
    Seed("bkci-my-getlock", "bkci", "mysql", "get_lock", "unlock-before-commit", "commit-inside-lock"),
    Seed("bkci-pg-advisory", "bkci", "postgres", "advisory", "unlock-before-commit", "commit-inside-lock"),
    Seed("bkci-my-redis", "bkci", "mysql", "redis", "unlock-before-commit", "commit-inside-lock"),
]


# -- setup shared by both ways ---------------------------------------------------------------------

def create_schema(conn: Any, seed: Seed, variant: str) -> None:
    if seed.system == "kinto":
        storage.install_schema(conn, variant=variant)
    else:
        execute(conn, (ROOT / "scenarios" / "bkci" / f"schema_{seed.backend}.sql").read_text())


def drop_schema(conn: Any, seed: Seed) -> None:
    if seed.system == "kinto":
        execute(conn, "DROP TABLE objects" + (", objects_stamp_locks" if seed.backend == "mysql" else ""))
        if seed.backend == "postgres":
            execute(conn, "DROP FUNCTION IF EXISTS bump_timestamp(), bump_timestamp_locked()")
    else:
        execute(conn, "DROP TABLE sharding_routing_rule")


CHECKS = {
    "kinto": [("both_records_kept", "SELECT count(*) FROM objects WHERE resource_name = 'record'", 2),
              ("both_history_entries", "SELECT count(*) FROM objects WHERE resource_name = 'history'", 2)],
    "bkci": [("one_row_per_rule", "SELECT count(*) FROM sharding_routing_rule", 1)],
}


def app_call(seed: Seed, variant: str, who: str, conn: Any, lock: Any) -> Any:
    """The application's own call (the code under test), given a prepared connection/lock."""
    if seed.system == "kinto":
        return storage.create_record(conn, "b", f"c-{who}", f"r-{who}", {"by": who}, variant=variant)
    return rules.save_rule(conn, lock, RULE, variant=variant)


# -- the harness -----------------------------------------------------------------------------------

def build_race(seed: Seed, database: Any, redis_info: Any, variant: str, key_prefix: str) -> Race:
    race = Race(database, name=f"{seed.name}-{variant}", redis=redis_info)
    clock = DbClock(seed.backend)
    race.setup(lambda conn: create_schema(conn, seed, variant))
    race.teardown(lambda conn: drop_schema(conn, seed))
    key = (key_prefix + RULE.lock_key) if seed.lock == "redis" else RULE.lock_key

    def actor(ctx: Any) -> Any:
        conn = ctx.connect()
        lock = None
        if seed.system == "kinto":
            clock.freeze(conn.raw, FROZEN)  # the harness's doing, before the app runs; not a scheduling point
        else:
            lock = ctx.lock(seed.lock, key)
        return app_call(seed, variant, ctx.name, conn, lock)

    race.actor("A", actor)
    race.actor("B", actor)
    for name, sql, value in CHECKS[seed.system]:
        race.check_sql(name, sql, equals=value)
    return race


def harness_side(seed: Seed, database: Any, redis_info: Any, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:{secrets.token_hex(4)}:"
    if seed.system == "kinto" and seed.backend == "postgres":
        with database.connect() as conn:
            DbClock("postgres").install(conn)
    res: dict[str, Any] = {"found": 0, "schedules": [], "seconds": [], "minimal": set(), "example": None}
    with tempfile.TemporaryDirectory(prefix="seeds-hyp-") as tmp:
        race = build_race(seed, database, redis_info, seed.buggy, prefix)
        try:
            for r in range(args.runs):
                stamps: dict[int, float] = {}
                t0 = time.perf_counter()
                out = race.explore(strategy=args.strategy, max_schedules=50, database_dir=Path(tmp) / f"run{r}",
                                   progress=lambda n, _b: stamps.__setitem__(n, time.perf_counter()))
                if out.failure is not None:
                    res["found"] += 1
                    res["schedules"].append(out.first_failure_after)
                    res["seconds"].append(stamps[out.first_failure_after] - t0)
                    res["minimal"].add((out.failure.schedule_text, out.failure.preemptions, out.minimal_verified))
                    res["example"] = res["example"] or out.failure
            example = res["example"]
            if example is not None:
                seen = set()
                for _ in range(args.replays):
                    o = race.replay(example.schedule)
                    seen.add((o.schedule_text, tuple(o.violations)))
                res["replays"] = (args.replays, len(seen), seen == {(example.schedule_text, tuple(example.violations))})
        finally:
            race.close()
        fixed = build_race(seed, database, redis_info, seed.fixed, prefix)
        try:
            t0 = time.perf_counter()
            out = fixed.explore(strategy=args.strategy, max_schedules=args.fixed_schedules,
                                database_dir=Path(tmp) / "fixed")
            res["fixed"] = (out.schedules_run, out.passed, out.exhausted, time.perf_counter() - t0,
                            out.failure.schedule_text if out.failure else None)
        finally:
            fixed.close()
    return res


# -- plain threads ---------------------------------------------------------------------------------

def threads_side(seed: Seed, database: Any, redis_info: Any, variant: str, seconds: float) -> dict[str, Any]:
    dialect = database.server.dialect
    control = database.connect(autocommit=True)
    create_schema(control, seed, variant)
    clock = DbClock(seed.backend)
    if seed.system == "kinto" and seed.backend == "postgres":
        clock.install(control)
    conns = [dialect.connect(database.info, autocommit=False) for _ in range(2)]
    lock_conns: list[Any] = []
    rclient = None
    key = RULE.lock_key
    if seed.system == "kinto":
        for c in conns:
            clock.freeze(c, FROZEN)
    elif seed.lock == "redis":
        rclient = redis_lib.Redis(host=redis_info.host, port=redis_info.port, password=redis_info.password or None)
        key = f"bench:{secrets.token_hex(4)}:{RULE.lock_key}"
    else:
        lock_conns = [dialect.connect(database.info, autocommit=True) for _ in range(2)]

    def make_lock(i: int) -> Any:
        if seed.lock == "redis":
            return locks.RedisLock(rclient, key, token=locks.new_token("AB"[i]))
        if seed.lock == "get_lock":
            return locks.MySQLUserLock(lock_conns[i], key)
        if seed.lock == "advisory":
            return locks.PgAdvisoryLock(lock_conns[i], key)
        return None

    trials = failures = 0
    first_trial: int | None = None
    first_s: float | None = None
    t0 = time.perf_counter()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and trials < MAX_TRIALS:
            execute(control, "TRUNCATE " + ("objects" if seed.system == "kinto" else "sharding_routing_rule"))
            barrier = threading.Barrier(2)
            errors: list[BaseException | None] = [None, None]

            def run(i: int) -> None:
                try:
                    barrier.wait(timeout=10)
                    app_call(seed, variant, "AB"[i], conns[i], make_lock(i))
                except BaseException as exc:  # the application's error is an outcome (Kinto: 409)
                    errors[i] = exc
            threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=30)
            if any(th.is_alive() for th in threads):
                raise SystemExit(f"{seed.name}: a thread trial hung for 30 s; giving up")
            trials += 1
            bad = any(e is not None for e in errors) or any(
                int(execute(control, sql)[0][0]) != value for _, sql, value in CHECKS[seed.system])
            if bad:
                failures += 1
                if first_trial is None:
                    first_trial, first_s = trials, time.perf_counter() - t0
    finally:
        for c in conns + lock_conns:
            c.close()
        if rclient is not None:
            rclient.delete(key)
            rclient.close()
        drop_schema(control, seed)
        control.close()
    return {"trials": trials, "failures": failures, "first_trial": first_trial, "first_s": first_s,
            "elapsed": time.perf_counter() - t0}


def run(quick: bool) -> list[Figure]:
    """Quick: two seeds (kinto-pg, bkci-my-redis), 1 exploration, 0.5 s of threads.  Otherwise every
    seed, 5 explorations, 2 thread runs of 3 s, 10 replays, the fixed variant for 200 schedules."""
    args = argparse.Namespace(runs=1 if quick else 5, replays=2 if quick else 10,
                              fixed_schedules=10 if quick else 200, strategy="auto")
    seconds = 0.5 if quick else 3.0
    wanted = [s for s in SEEDS if not quick or s.name in ("kinto-pg", "bkci-my-redis")]
    redis_info = server("redis").info
    figures = []
    for seed in wanted:
        db = server(seed.backend).create_database()
        try:
            th = [threads_side(seed, db, redis_info, seed.buggy, seconds) for _ in range(1 if quick else 2)]
            h = harness_side(seed, db, redis_info, args)
        finally:
            db.drop()
        firsts = [t["first_s"] for t in th if t["first_s"] is not None]
        trials, fails = sum(t["trials"] for t in th), sum(t["failures"] for t in th)
        rep = h.get("replays")
        fx = h["fixed"]
        figures += [
            Figure(NAME, f"{seed.name}: seconds to the first failure", "s", median(h["seconds"]),
                   median(firsts) if firsts else None, "plain threads, first failure",
                   f"harness found it in {h['found']}/{args.runs} explorations; threads failed in "
                   f"{len(firsts)}/{len(th)} runs of {seconds:g} s"),
            Figure(NAME, f"{seed.name}: schedules to the first failure", "schedules", median(h["schedules"]),
                   note="minimal: " + "; ".join(sorted(m[0] for m in h["minimal"]))),
            Figure(NAME, f"{seed.name}: plain-thread trials that fail", "%", 100 * fails / max(trials, 1),
                   note=f"{fails}/{trials}"),
            Figure(NAME, f"{seed.name}: distinct outcomes of {rep[0] if rep else 0} replays", "outcomes",
                   rep[1] if rep else math.nan, note="1 = the failure replays exactly" if rep else "nothing found"),
            Figure(NAME, f"{seed.name}: fixed variant, schedules passed", "schedules", fx[0] if fx[1] else 0,
                   note=("all distinct schedules" if fx[2] else "") + ("" if fx[1] else f" FAILS: {fx[4]}")),
        ]
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thread-seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=20, help="harness explorations per seed")
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--fixed-schedules", type=int, default=500)
    ap.add_argument("--seeds", default=",".join(s.name for s in SEEDS))
    ap.add_argument("--strategy", default="auto", help="exploration strategy: auto (default), hypothesis, ...")
    args = ap.parse_args()
    wanted = [s for s in SEEDS if s.name in args.seeds.split(",")]
    settings = load_settings()
    servers: dict[str, Any] = {}
    rows = []
    try:
        for service in sorted({s.backend for s in wanted} | ({"redis"} if any(s.lock == "redis" for s in wanted) else set())):
            servers[service] = start_server(service, settings)
        redis_info = servers["redis"].info if "redis" in servers else None
        dbs = {b: servers[b].create_database() for b in ("postgres", "mysql") if b in servers}
        for seed in wanted:
            db = dbs[seed.backend]
            print(f"\n== {seed.name} ({servers[seed.backend].flavor} {servers[seed.backend].version})", flush=True)
            th = [threads_side(seed, db, redis_info, seed.buggy, args.thread_seconds) for _ in range(2)]
            for i, t in enumerate(th):
                print(f"  threads buggy run {i + 1}: {t['trials']} trials in {t['elapsed']:.1f} s, {t['failures']} "
                      f"failures; first at trial {t['first_trial']} ({t['first_s'] and round(t['first_s'], 3)} s)",
                      flush=True)
            tf = threads_side(seed, db, redis_info, seed.fixed, args.thread_seconds)
            print(f"  threads fixed: {tf['trials']} trials, {tf['failures']} failures", flush=True)
            h = harness_side(seed, db, redis_info, args)
            print(f"  harness: found {h['found']}/{args.runs}; schedules {h['schedules']}; "
                  f"seconds {[round(s, 2) for s in h['seconds']]}", flush=True)
            if h["example"] is not None:
                print("  " + h["example"].describe().replace("\n", "\n  "))
                print(f"  replays: {h['replays']}; distinct minimal schedules: {sorted(h['minimal'])}")
            print(f"  fixed variant: {h['fixed']}", flush=True)
            rows.append((seed, th, tf, h))
    finally:
        for server in servers.values():
            server.stop()

    print(f"\n== threads ({args.thread_seconds:.0f} s per run, 2 runs with identical parameters) vs harness "
          f"({args.runs} runs, <= 50 schedules each)")
    hdr = (f"{'seed':17s} {'thr fail/trials (run1 | run2)':32s} {'1st fail trial':>15s} {'fixed thr':>10s} | "
           f"{'found':>6s} {'sched med/max':>13s} {'sec med/max':>11s} {'replay':>7s} {'fixed survives':>15s}")
    print(hdr)
    for seed, th, tf, h in rows:
        thr = " | ".join(f"{t['failures']}/{t['trials']} ({100 * t['failures'] / max(t['trials'], 1):.1f}%)" for t in th)
        first = "/".join(str(t["first_trial"]) for t in th)
        sched = f"{statistics.median(h['schedules']):.0f}/{max(h['schedules'])}" if h["schedules"] else "-"
        secs = f"{statistics.median(h['seconds']):.2f}/{max(h['seconds']):.2f}" if h["seconds"] else "-"
        rep = f"{h['replays'][0]}x{'=' if h['replays'][2] else '!='}" if "replays" in h else "-"
        fx = h["fixed"]
        fixed = f"{fx[0]}{' (all)' if fx[2] else ''} {'ok' if fx[1] else 'FAILS'}"
        print(f"{seed.name:17s} {thr:32s} {first:>15s} {tf['failures']}/{tf['trials']:<6d} | "
              f"{h['found']:>3d}/{args.runs:<2d} {sched:>13s} {secs:>11s} {rep:>7s} {fixed:>15s}")
    print("\nminimal schedules:")
    for seed, _th, _tf, h in rows:
        print(f"  {seed.name:17s} " + "; ".join(f"{s} ({p} preemption(s), verified {v})" for s, p, v in sorted(h["minimal"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
