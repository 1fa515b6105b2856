"""Narrow-window and three-actor races: the harness (Hypothesis) versus plain threads.

Run: python -m benchmarks narrow_window [--quick]
     python benchmarks/narrow_window.py [--runs 20] [--thread-seconds 60] [--harness-runs R]
                                        [--max-schedules 200] [--races narrow,three] [--jitter]

(a) "narrow": actor A runs ONE transaction of 13 statements + COMMIT with no pause (9 audit INSERTs,
    SELECT balance, UPDATE balance = <value read> - 100, 2 audit INSERTs, COMMIT) on PostgreSQL at READ
    COMMITTED.  Actor B runs a single autocommit statement, UPDATE balance = balance + 10.  B's deposit
    is lost (final 900 instead of 910) only if B's statement runs after A's SELECT and before A's
    UPDATE: the window is the one client round trip between two consecutive statements.  Earlier, A
    reads B's deposit; later, B blocks on A's row lock and adds its 10 after A commits.
(b) "three": three bookers, capacity 2 (each: 1, 5 or 9 audit INSERTs -- three request paths of different
    length --, SELECT count(*), INSERT booking if fewer than 2, audit INSERT, COMMIT).  Overbooking (3
    rows) needs all three interleaved: the last of the three counts must come before the second commit.

Harness: R runs of race.explore(strategy="hypothesis", max_schedules=200), each with a fresh example
database directory (so no run learns from another).  Threads: for T seconds per run, repeat trials of
the same functions on plain connections (connections opened once and reused, state reset per trial,
the threads released together by a barrier, no delays: no schedule control); a run hits if any trial
violates the invariant.  With --jitter, every actor but the first starts after a random delay spread over
the longest actor's measured transaction time, which tries every alignment (kinder to threads than a
plain stress test).

Every loop is bounded by count and time; the script starts its own PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, median, server  # noqa: E402
from harness import load_settings, start_server  # noqa: E402
from harness.dialect import execute  # noqa: E402
from harness.explore import Race  # noqa: E402

MAX_TRIALS_PER_RUN = 2_000_000
NAME = "narrow_window"


# -- the application code (plain DB-API; `mark` records when each statement starts, threads only) ----

def withdraw(conn: Any, mark: Callable[[], None] = lambda: None) -> None:
    """A: 13 statements and COMMIT in one transaction; read-modify-write of the balance near the end."""
    cur = conn.cursor()
    for i in range(9):
        mark()
        cur.execute(f"INSERT INTO audit (note) VALUES ('withdraw step {i}')")
    mark()
    cur.execute("SELECT balance FROM accounts WHERE id = 1")
    (balance,) = cur.fetchone()
    mark()
    cur.execute(f"UPDATE accounts SET balance = {int(balance) - 100} WHERE id = 1")
    for i in range(9, 11):
        mark()
        cur.execute(f"INSERT INTO audit (note) VALUES ('withdraw step {i}')")
    mark()
    conn.commit()


def deposit(conn: Any) -> None:
    """B: one autocommit statement."""
    conn.cursor().execute("UPDATE accounts SET balance = balance + 10 WHERE id = 1")


PREFIX = {"A": 1, "B": 5, "C": 9}  # audit statements before the count: three request paths of different length


def book(conn: Any, who: str) -> bool:
    cur = conn.cursor()
    for i in range(PREFIX[who]):
        cur.execute(f"INSERT INTO audit (note) VALUES ('{who} wants a seat, step {i}')")
    cur.execute("SELECT count(*) FROM bookings")
    (n,) = cur.fetchone()
    if int(n) < 2:
        cur.execute(f"INSERT INTO bookings (who) VALUES ('{who}')")
    cur.execute(f"INSERT INTO audit (note) VALUES ('{who} done')")
    conn.commit()
    return int(n) < 2


NARROW_SETUP = ["CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
                "INSERT INTO accounts VALUES (1, 1000)",
                "CREATE TABLE audit (id serial PRIMARY KEY, note text)"]
THREE_SETUP = ["CREATE TABLE bookings (who text)", "CREATE TABLE audit (id serial PRIMARY KEY, note text)"]


def narrow_race(database: Any) -> Race:
    race = Race(database, name="narrow-window")
    for sql in NARROW_SETUP:
        race.setup(sql)
    race.teardown("DROP TABLE accounts, audit")
    race.actor("A", lambda ctx: withdraw(ctx.connect()))
    race.actor("B", lambda ctx: deposit(ctx.connect(autocommit=True)))
    race.check_sql("deposit_kept", "SELECT balance FROM accounts WHERE id = 1", equals=910)
    return race


def three_race(database: Any) -> Race:
    race = Race(database, name="three-bookers")
    for sql in THREE_SETUP:
        race.setup(sql)
    race.teardown("DROP TABLE bookings, audit")
    for who in ("A", "B", "C"):
        race.actor(who, lambda ctx: book(ctx.connect(), ctx.name))
    race.check_sql("no_overbooking", "SELECT count(*) FROM bookings HAVING count(*) > 2", empty=True)
    return race


# -- the harness -----------------------------------------------------------------------------------

def harness_runs(database: Any, kind: str, runs: int, max_schedules: int, out: dict[str, Any]) -> None:
    build = narrow_race if kind == "narrow" else three_race
    found, schedules, to_first, minimal, preempt, total = [], [], [], set(), set(), []
    example = None
    counts: list[int] = []
    searching: list[float] = []
    with tempfile.TemporaryDirectory(prefix="narrow-hyp-") as tmp:
        for r in range(runs):
            race = build(database)
            stamps: dict[int, float] = {}
            t0 = time.perf_counter()
            try:
                res = race.explore(strategy="hypothesis", max_schedules=max_schedules,
                                   database_dir=Path(tmp) / f"run{r}",
                                   progress=lambda n, _b: stamps.__setitem__(n, time.perf_counter()))
            finally:
                race.close()
            total.append(time.perf_counter() - t0)
            if stamps:  # schedules counted by explore's progress, up to the last one (no minimization)
                counts.append(max(stamps))
                searching.append(stamps[max(stamps)] - t0)
            ok = res.failure is not None
            found.append(ok)
            if ok:
                schedules.append(res.first_failure_after)
                to_first.append(stamps[res.first_failure_after] - t0)
                minimal.add(res.failure.schedule_text)
                preempt.add(res.failure.preemptions)
                example = example or res.failure
            print(f"  harness {kind} run {r + 1}/{runs}: "
                  + (f"found after {res.first_failure_after} schedules, {to_first[-1]:.2f} s "
                     f"(minimal: {res.failure.schedule_text}; {res.failure.preemptions} preemptions; "
                     f"verified minimal {res.minimal_verified})" if ok else f"NOT found in {res.schedules_run}"),
                  flush=True)
    out.update(rate=sum(counts) / sum(searching) if searching else math.nan, found=sum(found), runs=runs,
               schedules=schedules, to_first=to_first, minimal=minimal, preemptions=preempt, example=example, total=total)


# -- plain threads ---------------------------------------------------------------------------------

def _reset(control: Any, kind: str) -> None:
    if kind == "narrow":
        execute(control, "UPDATE accounts SET balance = 1000 WHERE id = 1")
    else:
        execute(control, "TRUNCATE bookings")
    execute(control, "TRUNCATE audit")


def thread_runs(database: Any, kind: str, runs: int, seconds: float, jitter: bool, out: dict[str, Any]) -> None:
    control = database.connect(autocommit=True)
    for sql in (NARROW_SETUP if kind == "narrow" else THREE_SETUP):
        execute(control, sql)
    n_actors = 2 if kind == "narrow" else 3
    conns = [database.connect(autocommit=(kind == "narrow" and i == 1)) for i in range(n_actors)]
    hits_runs, to_first, trials_all, hits_all, landings = 0, [], 0, 0, [0] * 16
    rng = random.Random(1)
    txn_time = 0.0
    try:
        if jitter:  # the longest actor's transaction time, to spread the others' starts over it
            samples = []
            for _ in range(50):
                _reset(control, kind)
                t = time.perf_counter()
                withdraw(conns[0]) if kind == "narrow" else book(conns[2], "C")
                samples.append(time.perf_counter() - t)
            txn_time = statistics.median(samples)
        for r in range(runs):
            trials = hits = 0
            first: float | None = None
            t0 = time.perf_counter()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and trials < MAX_TRIALS_PER_RUN:
                _reset(control, kind)
                barrier = threading.Barrier(n_actors)
                errors: list[BaseException] = []
                a_marks: list[float] = []
                b_at: list[float] = []
                delays = [0.0] + [rng.uniform(0, txn_time) if txn_time else 0.0 for _ in range(n_actors - 1)]

                def guard(fn: Callable[[], Any]) -> Callable[[], None]:
                    def run() -> None:
                        try:
                            barrier.wait(timeout=10)
                            fn()
                        except BaseException as exc:  # recorded; the trial is then not counted
                            errors.append(exc)
                    return run

                if kind == "narrow":
                    def b_run() -> None:
                        if delays[1]:
                            time.sleep(delays[1])
                        deposit(conns[1])
                        b_at.append(time.perf_counter())  # B's statement ran before this instant
                    fns = [lambda: withdraw(conns[0], lambda: a_marks.append(time.perf_counter())), b_run]
                else:
                    def booker(c: Any, w: str, d: float) -> None:
                        if d:
                            time.sleep(d)
                        book(c, w)
                    fns = [lambda c=c, w=w, d=d: booker(c, w, d) for c, w, d in zip(conns, "ABC", delays)]
                threads = [threading.Thread(target=guard(f), daemon=True) for f in fns]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join(timeout=30)
                if any(th.is_alive() for th in threads):
                    raise SystemExit("a thread trial hung for 30 s; giving up")
                if errors:
                    for c in conns:
                        c.rollback()
                    continue
                trials += 1
                if kind == "narrow":
                    landings[sum(1 for m in a_marks if m < b_at[0])] += 1
                    bad = int(execute(control, "SELECT balance FROM accounts WHERE id = 1")[0][0]) != 910
                else:
                    bad = int(execute(control, "SELECT count(*) FROM bookings")[0][0]) > 2
                if bad:
                    hits += 1
                    if first is None:
                        first = time.perf_counter() - t0
            trials_all += trials
            hits_all += hits
            hits_runs += hits > 0
            if first is not None:
                to_first.append(first)
            print(f"  threads {kind} run {r + 1}/{runs}: {trials} trials in {seconds:.0f} s, {hits} hits"
                  + (f", first after {first:.2f} s" if first is not None else ""), flush=True)
    finally:
        for c in conns:
            c.close()
        execute(control, "DROP TABLE IF EXISTS accounts, audit, bookings")
        control.close()
    out.update(hit_runs=hits_runs, runs=runs, trials=trials_all, hits=hits_all, to_first=to_first,
               landings=landings if kind == "narrow" else None, txn_time=txn_time)


def figures_of(kind: str, h: dict[str, Any], t: dict[str, Any], seconds: float) -> list[Figure]:
    rate = t["hits"] / t["trials"] if t["trials"] else 0.0
    thread_first = median(t["to_first"]) if t["to_first"] else None  # None: threads never hit
    return [
        Figure(NAME, f"{kind}: seconds to the first failure", "s", median(h["to_first"]), thread_first,
               "plain threads, first hit", f"harness found it in {h['found']}/{h['runs']} runs; threads hit in "
               f"{t['hit_runs']}/{t['runs']} runs of {seconds:g} s"),
        Figure(NAME, f"{kind}: schedules/s while searching", "1/s", h["rate"], t["trials"] / (t["runs"] * seconds),
               "plain-thread trials/s"),
        Figure(NAME, f"{kind}: schedules to the first failure", "schedules", median(h["schedules"]),
               note=f"max {max(h['schedules']) if h['schedules'] else '-'}; minimal: "
               f"{', '.join(sorted(h['minimal'])) or '-'}"),
        Figure(NAME, f"{kind}: plain-thread trials that break the invariant", "%", 100 * rate,
               note=f"{t['hits']}/{t['trials']} trials"),
    ]


def run(quick: bool) -> list[Figure]:
    """Quick: the narrow race, 1 harness run of <= 40 schedules and 1 thread run of 1 s.  Otherwise
    both races, 5 harness runs and 3 thread runs of 10 s (the standalone script goes further)."""
    database = server("postgres").create_database()
    figures = []
    try:
        for kind in (("narrow",) if quick else ("narrow", "three")):
            h: dict[str, Any] = {}
            t: dict[str, Any] = {}
            seconds = 1.0 if quick else 10.0
            harness_runs(database, kind, 1 if quick else 5, 40 if quick else 200, h)
            thread_runs(database, kind, 1 if quick else 3, seconds, False, t)
            figures += figures_of(kind, h, t, seconds)
    finally:
        database.drop()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="thread runs (and harness runs unless --harness-runs)")
    ap.add_argument("--harness-runs", type=int, default=None)
    ap.add_argument("--thread-seconds", type=float, default=60.0)
    ap.add_argument("--max-schedules", type=int, default=200)
    ap.add_argument("--races", default="narrow,three")
    ap.add_argument("--jitter", action="store_true", help="threads: spread B's start over A's transaction")
    args = ap.parse_args()
    h_runs = args.harness_runs or args.runs
    server = start_server("postgres", load_settings())
    summary = []
    try:
        database = server.create_database()
        print(f"PostgreSQL {server.version} on {server.info.host}:{server.info.port}; harness {h_runs} runs x "
              f"<= {args.max_schedules} schedules; threads {args.runs} runs x {args.thread_seconds:.0f} s"
              f"{' (jitter)' if args.jitter else ''}")
        for kind in args.races.split(","):
            h: dict[str, Any] = {}
            t: dict[str, Any] = {}
            harness_runs(database, kind, h_runs, args.max_schedules, h)
            thread_runs(database, kind, args.runs, args.thread_seconds, args.jitter, t)
            summary.append((kind, h, t))
    finally:
        server.stop()
    print("\n== results")
    for kind, h, t in summary:
        print(f"\n-- {kind}")
        med = lambda xs: f"{statistics.median(xs):.2f}" if xs else "-"  # noqa: E731
        print(f"harness : found in {h['found']}/{h['runs']} runs; schedules to first failure median "
              f"{med(h['schedules'])}, max {max(h['schedules']) if h['schedules'] else '-'}; time to first "
              f"failure median {med(h['to_first'])} s, max {max(h['to_first']) if h['to_first'] else 0:.2f} s; "
              f"explore incl. minimization median {med(h['total'])} s")
        print(f"          distinct minimal schedules: {len(h['minimal'])} {sorted(h['minimal'])}; "
              f"preemptions {sorted(h['preemptions'])}")
        if h["example"] is not None:
            print("          " + h["example"].describe().replace("\n", "\n          "))
        rate = t["hits"] / t["trials"] if t["trials"] else 0.0
        print(f"threads : hit in {t['hit_runs']}/{t['runs']} runs; {t['hits']} hits in {t['trials']} trials "
              f"({100 * rate:.4f}% per trial); time to first hit median {med(t['to_first'])} s over the runs "
              f"that hit")
        if t["landings"] is not None:
            total = sum(t["landings"]) or 1
            dist = ", ".join(f"{i}:{100 * n / total:.1f}%" for i, n in enumerate(t["landings"]) if n)
            print(f"          where B's statement ended (number of A's 14 operations begun before): {dist}"
                  f"; the window is 10 or 11 (B ends after A's SELECT began, before A's UPDATE ran)"
                  + (f"; jitter over {t['txn_time'] * 1000:.2f} ms" if t["txn_time"] else ""))
        elif t["txn_time"]:
            print(f"          jitter over {t['txn_time'] * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
