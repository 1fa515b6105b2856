"""LinkProxy on real servers: forwarding, cut, partition (held, then delivered once and in order),
delay, outage, reset and a clean close."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Iterator, TypeVar

import psycopg
import pymysql
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.dialect.base import ConnInfo, execute
from harness.errors import HarnessError
from harness.netproxy import LinkProxy
from harness.provision import Database, Server

from .conftest import wait_until

T = TypeVar("T")
CONNECTION_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, pymysql.err.InterfaceError)
RESULT_TIMEOUT = 15.0  # bound on waiting for a call the test expects to finish


def via(info: ConnInfo, link: LinkProxy) -> ConnInfo:
    return dataclasses.replace(info, host=link.host, port=link.port)


def in_thread(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` in a daemon thread: a call held by a fault must not block teardown if a test fails."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def round_trip(conn: Any) -> float:
    start = time.monotonic()
    assert execute(conn, "SELECT 1")[0][0] == 1
    return time.monotonic() - start


def redis_client(info: ConnInfo, link: LinkProxy, name: str | None = None) -> redis.Redis:
    """No retries: redis-py's default reconnects and retries, which would hide the fault under test."""
    return redis.Redis(host=link.host, port=link.port, password=info.password or None, client_name=name,
                       retry=Retry(NoBackoff(), 0), socket_connect_timeout=2, socket_timeout=RESULT_TIMEOUT)


@pytest.fixture
def link(database: Database) -> Iterator[LinkProxy]:
    with LinkProxy(database.info.host, database.info.port, name="db") as proxy:
        yield proxy


@pytest.fixture
def connect(database: Database, link: LinkProxy) -> Iterator[Callable[..., Any]]:
    """Connections to ``database`` through ``link``; closed at teardown, after the link (which frees
    any call a fault still holds)."""
    opened: list[Any] = []

    def open_conn(**kwargs: Any) -> Any:
        conn = database.dialect.connect(via(database.info, link), autocommit=True, **kwargs)
        opened.append(conn)
        return conn

    yield open_conn
    link.close()
    for conn in opened:
        try:
            conn.close()
        except Exception:  # already broken by a fault
            pass


@pytest.fixture
def redis_link(redis_server: Server) -> Iterator[LinkProxy]:
    with LinkProxy(redis_server.info.host, redis_server.info.port, name="redis") as proxy:
        yield proxy


def test_forwards_queries(connect: Callable[..., Any], link: LinkProxy) -> None:
    conn = connect()
    assert execute(conn, "SELECT 40 + 2")[0][0] == 42
    assert link.connections == 1 and link.state == "ok" and not link.stalled
    conn.close()
    wait_until(lambda: link.connections == 0, 10, "the proxy to see the client close")


def test_forwards_redis_commands(redis_server: Server, redis_link: LinkProxy) -> None:
    client = redis_client(redis_server.info, redis_link)
    try:
        client.set("netproxy:k", "v")
        assert client.get("netproxy:k") == b"v"
    finally:
        client.delete("netproxy:k")
        client.close()


def test_cut_resets_every_connection_and_new_ones_work(connect: Callable[..., Any], link: LinkProxy) -> None:
    a, b = connect(), connect()
    link.cut()
    assert link.connections == 0  # already closed when cut() returns
    for conn in (a, b):
        with pytest.raises(CONNECTION_ERRORS):
            execute(conn, "SELECT 1")
    assert execute(connect(), "SELECT 2")[0][0] == 2


def test_cut_breaks_a_redis_call_in_flight(redis_server: Server, redis_link: LinkProxy) -> None:
    """(Between calls redis-py's pool replaces a reset idle connection unseen: a cut shows in flight.)"""
    client = redis_client(redis_server.info, redis_link, name="netproxy-cut")
    direct = redis.Redis(host=redis_server.info.host, port=redis_server.info.port,
                         password=redis_server.info.password or None)
    try:
        waiting = in_thread(lambda: client.blpop(["netproxy:cut"], timeout=0))
        wait_until(lambda: any(c["name"] == "netproxy-cut" and c["cmd"] == "blpop" for c in direct.client_list()),
                   10, "BLPOP to block in the server")
        redis_link.cut()
        with pytest.raises(redis.ConnectionError):
            waiting.result(timeout=RESULT_TIMEOUT)
        assert client.ping()  # a new connection through the same proxy
    finally:
        client.close()
        direct.close()


def test_a_partition_holds_a_statement_until_heal_then_it_runs_once(
        connect: Callable[..., Any], link: LinkProxy, database: Database) -> None:
    conn = connect()
    execute(conn, "CREATE TABLE held (n int)")
    link.partition()
    assert link.state == "partitioned" and not link.stalled  # nothing is waiting yet
    insert = in_thread(lambda: execute(conn, "INSERT INTO held VALUES (1)"))
    wait_until(lambda: link.stalled, 10, "the INSERT to be held by the partition")
    assert not insert.done()
    with database.connect(autocommit=True) as direct:
        assert execute(direct, "SELECT count(*) FROM held")[0][0] == 0  # not delivered
    link.heal()
    assert link.state == "ok" and not link.stalled
    insert.result(timeout=RESULT_TIMEOUT)
    assert execute(conn, "SELECT count(*) FROM held")[0][0] == 1  # delivered exactly once


def test_held_bytes_are_delivered_in_order(connect: Callable[..., Any], link: LinkProxy) -> None:
    """A 2 MB statement held in a partition crosses as many chunks; the server sees it byte-exact."""
    conn = connect()
    payload = "".join(f"{i:07d}," for i in range(250_000))
    link.partition()
    digest = in_thread(lambda: execute(conn, "SELECT md5(%s)", (payload,))[0][0])
    wait_until(lambda: link.stalled, 10, "the statement to be held")
    link.heal()
    assert digest.result(timeout=RESULT_TIMEOUT) == hashlib.md5(payload.encode()).hexdigest()


def test_a_partition_holds_server_to_client_traffic(redis_server: Server, redis_link: LinkProxy) -> None:
    """A message published (on a direct connection) to a partitioned subscriber waits in the proxy."""
    sub = redis_client(redis_server.info, redis_link).pubsub()
    direct = redis.Redis(host=redis_server.info.host, port=redis_server.info.port,
                         password=redis_server.info.password or None)
    try:
        sub.subscribe("netproxy:chan")
        confirmed = sub.get_message(timeout=RESULT_TIMEOUT)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        redis_link.partition()
        assert direct.publish("netproxy:chan", "hello") == 1
        wait_until(lambda: redis_link.stalled, 10, "the message to be held")
        assert sub.get_message(timeout=0) is None
        redis_link.heal()
        message = sub.get_message(timeout=RESULT_TIMEOUT)
        assert message is not None and (message["type"], message["data"]) == ("message", b"hello")
    finally:
        sub.close()
        direct.close()


def test_a_connect_during_a_partition_completes_after_heal(connect: Callable[..., Any], link: LinkProxy) -> None:
    link.partition()
    pending = in_thread(connect)
    wait_until(lambda: link.stalled, 10, "the connect to be held")
    assert not pending.done() and link.connections == 1
    link.heal()
    assert execute(pending.result(timeout=RESULT_TIMEOUT), "SELECT 3")[0][0] == 3


def test_delay_is_a_lower_bound_on_each_direction(connect: Callable[..., Any], link: LinkProxy) -> None:
    conn = connect()
    baseline = min(round_trip(conn) for _ in range(5))
    link.delay(50)
    assert link.delay_ms == 50
    delayed = round_trip(conn)
    assert delayed >= 0.100  # 50 ms each way
    assert delayed - baseline >= 0.050
    link.delay(0)
    assert execute(conn, "SELECT 4")[0][0] == 4


def test_down_refuses_new_connections_and_breaks_existing_ones(
        connect: Callable[..., Any], link: LinkProxy) -> None:
    conn, port = connect(), link.port
    link.down()
    assert link.state == "down" and link.connections == 0
    with pytest.raises(CONNECTION_ERRORS):
        execute(conn, "SELECT 1")
    with pytest.raises(CONNECTION_ERRORS, match="(?i)refused"):  # refused at once, not a timeout
        connect(connect_timeout=2)
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with taken, pytest.raises(OSError):
        taken.bind((link.host, port))  # the port stays reserved while down
    link.up()
    assert link.state == "ok" and link.port == port
    assert execute(connect(), "SELECT 5")[0][0] == 5


def test_down_refuses_redis_and_up_serves_it_again(redis_server: Server, redis_link: LinkProxy) -> None:
    client = redis_client(redis_server.info, redis_link)
    try:
        client.ping()
        redis_link.down()
        with pytest.raises(redis.ConnectionError, match="(?i)refused"):
            client.ping()  # the pool drops the reset connection; connecting anew is refused at once
        redis_link.up()
        assert client.ping()
    finally:
        client.close()


def test_reset_clears_every_fault_and_forwards_nothing_held(
        connect: Callable[..., Any], link: LinkProxy, database: Database) -> None:
    conn = connect()
    execute(conn, "CREATE TABLE held (n int)")
    link.delay(30)
    link.partition()
    insert = in_thread(lambda: execute(conn, "INSERT INTO held VALUES (1)"))
    wait_until(lambda: link.stalled, 10, "the INSERT to be held")
    link.down()
    link.reset()
    assert (link.state, link.delay_ms, link.connections, link.stalled) == ("ok", 0, 0, False)
    with pytest.raises(CONNECTION_ERRORS):
        insert.result(timeout=RESULT_TIMEOUT)
    assert execute(connect(), "SELECT count(*) FROM held")[0][0] == 0  # the held INSERT was dropped


def _open_sockets() -> set[str]:
    """This process's sockets and epoll instances, as "fd:target"."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the directory listing's own fd, closed by now
            continue
        if target.startswith(("socket:", "anon_inode:[eventpoll]")):
            found.add(f"{fd}:{target}")
    return found


def test_close_leaves_no_thread_and_no_socket(database: Database) -> None:
    before = _open_sockets()
    proxy = LinkProxy(database.info.host, database.info.port, name="closing").start()
    conn = database.dialect.connect(via(database.info, proxy), autocommit=True)
    proxy.partition()
    held = in_thread(lambda: execute(conn, "SELECT 1"))
    pending = in_thread(lambda: database.dialect.connect(via(database.info, proxy), autocommit=True))
    wait_until(lambda: proxy.stalled and proxy.connections == 2, 10, "a held statement and a held connect")
    proxy.close()
    proxy.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("netproxy-")]
    for call in (held, pending):
        with pytest.raises(CONNECTION_ERRORS):
            call.result(timeout=RESULT_TIMEOUT)
    conn.close()
    assert _open_sockets() <= before
    with pytest.raises(HarnessError):
        proxy.cut()
    assert (proxy.connections, proxy.stalled) == (0, False)


def test_a_proxy_that_never_started_closes_its_port() -> None:
    proxy = LinkProxy("127.0.0.1", 9, name="unused")
    assert proxy.port > 0 and proxy.connections == 0 and proxy.state == "ok"
    before = len(_open_sockets())
    proxy.close()
    assert len(_open_sockets()) == before - 1
