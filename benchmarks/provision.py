"""Provisioning benchmark: cold/warm start per flavor, per-test database create+drop, suite wall time.

Run: python benchmarks/provision.py [--skip-suite]
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

from harness.config import load_settings
from harness.provision.local import start_local

ROOT = Path(__file__).resolve().parent.parent


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
