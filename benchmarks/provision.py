"""Provisioning benchmark: cold/warm start per flavor, per-test database create+drop, suite wall time.

Run: python -m benchmarks provision [--quick]   (the suite's wall time only with HARNESS_BENCH_SUITE=1)
     python benchmarks/provision.py [--skip-suite]
Prints numbers (medians) and ratios against baselines measured in the same run; targets from the
issue: warm PostgreSQL start <= 0.5 s, per-test database <= 30 ms median on PostgreSQL and MariaDB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure  # noqa: E402
from harness.config import load_settings  # noqa: E402
from harness.provision.local import start_local  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "provision"


def start_ms(start: Callable[[], object], n: int) -> float:
    """Median time to a server answering queries (its stop is not counted)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        server = start()
        times.append((time.perf_counter() - t) * 1000)
        server.stop()  # type: ignore[attr-defined]
    return statistics.median(times)


def median_ms(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(starts: int, dbs: int, cold_starts: bool = True) -> list[Figure]:
    """Warm start against cold start per service; the harness's per-test database against PostgreSQL's
    default CREATE DATABASE (template0, WAL_LOG); MariaDB's CREATE + DROP DATABASE.  Without
    ``cold_starts`` only Redis (cheap) is started cold: initdb and install-db take seconds."""
    settings = load_settings()
    figures = []
    for service in ("postgres", "mysql", "redis"):
        cold = start_ms(lambda: start_local(service, settings, use_cache=False), starts) \
            if cold_starts or service == "redis" else None
        warm = start_ms(lambda: start_local(service, settings), starts)
        figures.append(Figure(NAME, f"{service}: warm start (cached data dir)", "ms", warm, cold, "cold start",
                              f"median of {starts}" + ("; target <= 500 ms" if service == "postgres" else "")))
    pg = start_local("postgres", settings)
    try:
        pg.prepare_template()
        ours = median_ms(lambda _: pg.create_database().drop(), dbs)
        admin = pg.admin()
        try:
            base = median_ms(lambda i: (admin.execute(f"CREATE DATABASE b{i} TEMPLATE template0"),
                                        admin.execute(f"DROP DATABASE b{i}")), dbs)
        finally:
            admin.close()
    finally:
        pg.stop()
    figures.append(Figure(NAME, "postgres: per-test database create+drop", "ms", ours, base,
                          "CREATE DATABASE from template0 (PG default)", f"median of {dbs}; target <= 30 ms"))
    my = start_local("mysql", settings)
    try:
        figures.append(Figure(NAME, "mariadb: per-test database create+drop", "ms",
                              median_ms(lambda _: my.create_database().drop(), dbs),
                              note=f"median of {dbs}; target <= 30 ms"))
    finally:
        my.stop()
    return figures


def suite_walls() -> list[Figure]:
    """The test suite's wall time with 2 xdist workers against 1 process (minutes: opt-in)."""
    walls = {}
    for n in ("0", "2"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", n, "tests"], cwd=ROOT, capture_output=True,
                       text=True)
        walls[n] = time.perf_counter() - t
    return [Figure(NAME, "test suite wall time, pytest -n 2", "s", walls["2"], walls["0"], "pytest -n 0")]


def run(quick: bool) -> list[Figure]:
    import os

    figures = measure(1, 3, cold_starts=False) if quick else measure(5, 30)
    if not quick and os.environ.get("HARNESS_BENCH_SUITE") == "1":
        figures += suite_walls()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-suite", action="store_true")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--dbs", type=int, default=50)
    args = parser.parse_args()
    settings = load_settings()

    print(f"{'flavor':10} {'cold start':>11} {'warm start':>11} {'cold/warm':>9}")
    for service in ("postgres", "mysql", "redis"):
        cold = start_ms(lambda: start_local(service, settings, use_cache=False), args.starts)
        warm = start_ms(lambda: start_local(service, settings), args.starts)
        print(f"{service:10} {cold:9.0f}ms {warm:9.0f}ms {cold / warm:8.1f}x")

    print(f"\nper-test database create+drop, median of {args.dbs}:")
    pg = start_local("postgres", settings)
    pg.prepare_template()
    results = {"harness (template, FILE_COPY)": median_ms(lambda _: pg.create_database().drop(), args.dbs)}
    admin = pg.admin()
    for label, sql in (("baseline: template0, WAL_LOG (PG15 default)", "CREATE DATABASE b{} TEMPLATE template0"),
                       ("baseline: harness template, WAL_LOG", f"CREATE DATABASE b{{}} TEMPLATE {pg.template} STRATEGY WAL_LOG")):
        results[label] = median_ms(lambda i: (admin.execute(sql.format(i)), admin.execute(f"DROP DATABASE b{i}")), args.dbs)
    admin.close()
    pg.stop()
    base = results["baseline: template0, WAL_LOG (PG15 default)"]
    for label, ms in results.items():
        print(f"  postgres {label:45} {ms:7.2f} ms  ({ms / base:.2f}x of PG default)")
    my = start_local("mysql", settings)
    print(f"  mariadb  {'CREATE DATABASE + DROP':45} {median_ms(lambda _: my.create_database().drop(), args.dbs):7.2f} ms")
    my.stop()

    if not args.skip_suite:
        print("\ntest suite wall time (tests/):")
        walls = {}
        for n in ("0", "2"):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", n, "tests"], cwd=ROOT,
                                  capture_output=True, text=True)
            walls[n] = time.perf_counter() - t
            print(f"  pytest -n {n}: {walls[n]:6.1f} s  ({done.stdout.strip().splitlines()[-1] if done.stdout else ''})")
        print(f"  speed-up -n 2 vs -n 0: {walls['0'] / walls['2']:.2f}x")


if __name__ == "__main__":
    main()
