"""The Docker provisioner end to end on a live engine (opt-in: ``HARNESS_DOCKER_TESTS=1``).

Provisioning, per-test databases, a seed exploration and a crash fault on PostgreSQL, MariaDB and Redis
containers; with an engine that cannot publish ports (no bridge), host networking on a port the server
is told, bound to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.config import Settings
from harness.dialect import execute
from harness.explore import Race
from harness.explore.history import OK, UNKNOWN
from harness.explore.strategies import bounded_exhaustive
from harness.provision import Database, Server, start_server
from harness.provision.docker import OWNER_LABEL, network_mode, sweep_stale_containers
from scenarios.faults.journal import append_entries

from .. import apps
from ..conftest import ROOT
from .engine import Engine

COUNTER = ("CREATE TABLE counter (id int PRIMARY KEY, n int)", "INSERT INTO counter VALUES (1, 0)")
SERVICES = ("postgres", "mysql", "redis")
pytestmark = pytest.mark.docker


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` in this network namespace (/proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(addr)
    return found


def redis_client(server: Server, *, password: bool = True) -> redis.Redis:
    info = server.info  # no retries: a dead server must show at once, not after redis-py's back-off
    return redis.Redis(host=info.host, port=info.port, password=info.password if password else None,
                       socket_timeout=5, retry=Retry(NoBackoff(), 0))


@pytest.mark.parametrize("service", SERVICES)
def test_provisioning_starts_a_container_on_loopback(containers: dict[str, Server], engine: Engine,
                                                     service: str) -> None:
    server = containers[service]
    assert server.provisioner == "docker" and "container race-harness/" in server.describe()
    assert server.flavor == {"postgres": "postgres", "mysql": "mariadb", "redis": "redis"}[service]
    assert server.info.host == "127.0.0.1"
    container = server.lifecycle.wrapped  # type: ignore[attr-defined]
    container.reload()
    assert container.status == "running" and OWNER_LABEL in container.labels
    if network_mode(engine.client(), "auto") == "host":
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        # the server was told its port and binds loopback only: 127.0.0.1, nothing else, listens on it
        assert listening_addresses(server.info.port) == {"0100007F"}
    if service == "redis":
        with pytest.raises(redis.AuthenticationError):
            redis_client(server, password=False).ping()
        assert redis_client(server).ping()


def test_two_runs_side_by_side_do_not_collide(docker_settings: Settings, containers: dict[str, Server]) -> None:
    first = containers["postgres"]
    second = start_server("postgres", docker_settings)
    try:
        assert second.info.port != first.info.port and second.info.password != first.info.password
        a, b = first.create_database(), second.create_database()
        with a.connect() as conn:
            execute(conn, "CREATE TABLE mine (x int)")
            conn.commit()
        with b.connect() as conn:
            assert execute(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'mine'")[0][0] == 0
        a.drop()
        b.drop()
    finally:
        second.stop()


def test_per_test_database_is_fresh_and_dropped(container_db: Database) -> None:
    with container_db.connect() as conn:
        execute(conn, "CREATE TABLE t (x int)")
        execute(conn, "INSERT INTO t VALUES (1)")
        conn.commit()
        assert execute(conn, "SELECT x FROM t") in ([(1,)], ((1,),))
    server = container_db.server
    assert container_db.name in server.created
    assert container_db.name in server._with_admin(lambda admin: server.dialect.list_databases(admin, "harness_"))


def test_seed_exploration_finds_the_lost_update_on_a_container(container_db: Database, tmp_path: Path) -> None:
    with Race(container_db, name="container-lost-update") as race:
        for sql in COUNTER:
            race.setup(sql)
        race.teardown("DROP TABLE counter")
        race.actor("A", lambda ctx: apps.increment_racy(ctx.connect()))
        race.actor("B", lambda ctx: apps.increment_racy(ctx.connect()))
        race.check_sql("both_counted", "SELECT n FROM counter", equals=2)
        found = race.assert_finds_race(max_schedules=100, seed=1, database_dir=tmp_path)
        assert "check both_counted violated: expected 2, got 1" in found.failure.violations
        again = race.replay(found.failure.schedule)
        assert again.violations == found.failure.violations


def test_seed_exploration_sees_redis_lock_waits_in_containers(containers: dict[str, Server]) -> None:
    db = containers["postgres"].create_database()
    try:
        with Race(db, name="container-redis-lock", redis=containers["redis"].info) as race:
            race.setup("CREATE TABLE inside (who varchar(10))")
            race.setup("CREATE TABLE collisions (who varchar(10))")
            race.teardown("DROP TABLE inside")
            race.teardown("DROP TABLE collisions")

            def holder(ctx):  # type: ignore[no-untyped-def]
                lock = ctx.lock("redis", "k", ttl_ms=60_000)
                lock.acquire()
                conn = ctx.connect()
                execute(conn, f"INSERT INTO inside VALUES ('{ctx.name}')")
                execute(conn, f"INSERT INTO collisions SELECT who FROM inside WHERE who <> '{ctx.name}'")
                conn.commit()
                execute(conn, f"DELETE FROM inside WHERE who = '{ctx.name}'")
                conn.commit()
                lock.release()

            race.actor("A", holder)
            race.actor("B", holder)
            race.check_sql("one_holder_at_a_time", "SELECT who FROM collisions", empty=True)
            result = race.assert_no_race(max_schedules=30, seed=1)
            assert result.schedules_run >= 2
            # a holder that asks for the held lock waits, as the Redis container reports
            waits = []
            for outcome in bounded_exhaustive(race.run_schedule, 1, 30):
                waits = [w for e in outcome.trace.events if e.kind == "blocked" for w in e.waits]
                if waits:
                    break
            assert waits and waits[0].lock == "redis lock" and {waits[0].waiter, waits[0].holder} == {"A", "B"}
    finally:
        db.drop()


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_a_crash_fault_kills_and_restarts_the_container_on_its_data_and_address(
        docker_settings: Settings, backend: str) -> None:
    server = start_server(backend, replace(docker_settings, fsync=True))
    try:
        address = (server.info.host, server.info.port)
        with Race(server.create_database(), name=f"container-crash-{backend}") as race:
            race.setup("CREATE TABLE journal (entry int, kind varchar(10))")
            race.teardown("DROP TABLE IF EXISTS journal")
            race.actor("W", lambda ctx: append_entries(ctx, entries=3))
            race.fault("crash", race.crash_server())
            race.check_durable("durable", "SELECT entry FROM journal", rows_per_op=2)
            # W: start, insert, insert, [crash] -> its COMMIT meets a dead connection; it reconnects
            outcome = race.replay("W W W crash")
            assert outcome.passed, outcome.describe()
            assert [op.status for op in outcome.results["W"].ops] == [UNKNOWN, OK, OK]
            crash = [e for e in outcome.trace.events if e.kind == "fault" and e.detail.get("fault") == "server crash"]
            assert len(crash) == 1 and crash[0].detail["restart_ms"] > 0
            result = race.assert_no_race(max_schedules=20, seed=1)
            assert result.schedules_run >= 5
        assert (server.info.host, server.info.port) == address
    finally:
        server.stop()


def test_a_killed_redis_container_comes_back_on_its_address(docker_settings: Settings) -> None:
    server = start_server("redis", docker_settings)
    try:
        client = redis_client(server)
        client.set("k", "v")
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.restart()
        again = redis_client(server)
        assert again.ping() and again.get("k") is None  # the harness's Redis keeps nothing on disk
        with pytest.raises(redis.AuthenticationError):
            redis_client(server, password=False).ping()
        client.close()
        again.close()
    finally:
        server.stop()


def test_stopped_containers_are_gone(docker_settings: Settings, engine: Engine) -> None:
    server = start_server("redis", docker_settings)
    client = engine.client()
    before = {c.id for c in client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    server.stop()
    after = {c.id for c in client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    assert before - after == {server.lifecycle.wrapped.id} and not after - before  # type: ignore[attr-defined]


def test_containers_of_a_killed_run_are_removed_by_the_next_start(docker_settings: Settings, engine: Engine) -> None:
    """A run SIGKILLed before it could stop its container: the next start on this host removes it."""
    code = ("import os, signal\nfrom dataclasses import replace\nfrom harness.config import load_settings\n"
            "from harness.provision import start_server\n"
            f"s = replace(load_settings(cli={{'provisioner': 'docker'}}), image={dict(docker_settings.image)!r})\n"
            "srv = start_server('redis', s)\nprint(srv.lifecycle.wrapped.id, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "DOCKER_HOST": engine.host})
    assert done.returncode == -9, done.stderr[-2000:]
    orphan = done.stdout.strip()
    client = engine.client()
    assert [c.id for c in client.containers.list(filters={"id": orphan})] == [orphan]  # still running
    assert orphan[:12] in sweep_stale_containers(client)
    assert client.containers.list(all=True, filters={"id": orphan}) == []
