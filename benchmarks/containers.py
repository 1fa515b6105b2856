"""Containers against local binaries, in one run: start to first query, per-test database, exploration rate.

Run: python -m benchmarks containers [--quick]
     (with DOCKER_HOST at an engine holding the stand-in images of tests/docker; with
     HARNESS_DOCKER_TESTS=1 the images are built or loaded, and a private engine started, as the opt-in
     container tests do)

Per service, the Docker provisioner (a container of the stand-in image) against the local provisioner
(a warm start from the cached data dir): milliseconds from asking for a server to its first answered
query, the median of several starts; per SQL backend, the per-test database (create + drop) and a
seed exploration's schedules/s (two actors incrementing a counter under SELECT ... FOR UPDATE, so half
the schedules block on a row lock, seed 1, no early stop).  Without an engine (the default suite), the
local figures are still measured and the container figures are NaN with the reason in the note: that
no engine answered is itself the result of such a run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import Figure, median  # noqa: E402
from harness.config import Settings, load_settings  # noqa: E402
from harness.dialect import execute  # noqa: E402
from harness.explore import Race  # noqa: E402
from harness.provision import Server, start_server  # noqa: E402

NAME = "containers"
SERVICES = ("postgres", "mysql", "redis")


def _first_query(server: Server) -> None:
    if server.service == "redis":
        import redis

        client = redis.Redis(host=server.info.host, port=server.info.port, password=server.info.password)
        client.ping()
        client.close()
        return
    with server.admin() as conn:
        execute(conn, "SELECT 1")


def start_ms(settings: Settings, service: str, n: int) -> float:
    """Median ms from start_server() to the first answered query (stop not counted)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        server = start_server(service, settings)
        _first_query(server)
        times.append((time.perf_counter() - t) * 1000)
        server.stop()
    return median(times)


def database_ms(server: Server, n: int) -> float:
    server.prepare_template()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        server.create_database().drop()
        times.append((time.perf_counter() - t) * 1000)
    return median(times)


def _increment(ctx: Any) -> None:
    conn = ctx.connect()
    cur = conn.cursor()
    cur.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
    (n,) = cur.fetchone()
    cur.execute(f"UPDATE counter SET n = {int(n) + 1} WHERE id = 1")
    conn.commit()


def exploration_rate(server: Server, schedules: int) -> float:
    """Schedules/s of a seeded exploration that finds nothing (every schedule runs)."""
    db = server.create_database()
    try:
        with Race(db, name="containers-rate") as race:
            race.setup("CREATE TABLE counter (id int PRIMARY KEY, n int)")
            race.setup("INSERT INTO counter VALUES (1, 0)")
            race.teardown("DROP TABLE counter")
            race.actor("A", _increment)
            race.actor("B", _increment)
            race.check_sql("both_counted", "SELECT n FROM counter", equals=2)
            result = race.explore(max_schedules=schedules, seed=1, stop_at_first=False, minimize=False)
            if result.failure is not None:
                raise RuntimeError(f"the locked counter failed: {result.failure.violations}")
            return result.schedules_run / result.elapsed
    finally:
        db.drop()


def docker_settings() -> tuple[Settings | None, str, Callable[[], None]]:
    """Settings for the stand-in containers, the engine's description, and what stops a private engine;
    (None, why not, no-op) without an engine or images."""
    from harness.provision import docker_available

    opted_in = os.environ.get("HARNESS_DOCKER_TESTS") == "1"
    stop: Callable[[], None] = lambda: None  # noqa: E731
    ok, why = docker_available()
    if not ok and opted_in:
        from tests.docker.engine import start_private

        engine, reason = start_private()
        if engine is None:
            return None, reason, stop
        os.environ["DOCKER_HOST"] = engine.host  # read by the provisioner and testcontainers
        stop = engine.stop
        ok, why = docker_available()
    if not ok:
        return None, why, stop
    import docker

    from tests.docker.images import ensure_images

    client = docker.from_env(timeout=600)
    try:
        images = ensure_images(client, build=opted_in)
    finally:
        client.close()
    if not all(images.values()):
        return None, ("the stand-in images are neither in the engine nor cached: run the opt-in container "
                      "tests once (HARNESS_DOCKER_TESTS=1)"), stop
    settings = replace(load_settings(cli={"provisioner": "docker"}), image=dict(images))  # type: ignore[arg-type]
    return settings, why, stop


def measure(starts: int, dbs: int, schedules: int) -> list[Figure]:
    local = load_settings(cli={"provisioner": "local"})
    docker, engine, stop_engine = docker_settings()
    note = f"containers on {engine}" if docker else f"no containers: {engine.split(' (')[0]}"
    figures = []
    try:
        for service in SERVICES:
            base = start_ms(local, service, starts)
            value = start_ms(docker, service, starts) if docker else math.nan
            figures.append(Figure(NAME, f"{service}: start to first query", "ms", value, base,
                                  "local binaries (warm)", f"median of {starts}; {note}"))
        for service in ("postgres", "mysql"):
            pair: dict[str, Server | None] = {"local": start_server(service, local),
                                              "docker": start_server(service, docker) if docker else None}
            try:
                got = {k: (database_ms(s, dbs) if s else math.nan, exploration_rate(s, schedules) if s else math.nan)
                       for k, s in pair.items()}
            finally:
                for s in pair.values():
                    if s is not None:
                        s.stop()
            figures.append(Figure(NAME, f"{service}: per-test database create+drop", "ms", got["docker"][0],
                                  got["local"][0], "local binaries", f"median of {dbs}; {note}"))
            figures.append(Figure(NAME, f"{service}: seed exploration rate", "schedules/s", got["docker"][1],
                                  got["local"][1], "local binaries",
                                  f"{schedules} schedules, locked counter, seed 1; {note}"))
    finally:
        stop_engine()
    return figures


def run(quick: bool) -> list[Figure]:
    return measure(1, 3, 5) if quick else measure(5, 30, 200)


if __name__ == "__main__":
    from benchmarks.__main__ import print_figures

    print_figures(run("--quick" in sys.argv))
