"""pytest plugin: real servers as fixtures, thin over :mod:`harness.pool` and :mod:`harness.provision`.

Fixtures: ``harness_settings``, ``server_pool``, ``pg_server``, ``mysql_server``, ``redis_server``
(session), ``backend`` + ``database`` (a fresh database per test, parametrized over the selected
backends), ``pg_database``, ``mysql_database``, ``server_factory`` (private servers one may kill).

Under pytest-xdist the controller starts each server once and hands the connection info to the
workers (``workerinput``); it stops them after the last worker is done.  Measured on the 2-core CI
machine: one shared PostgreSQL + MariaDB costs ~0.45 s of warm starts once, while one per worker
costs that per worker and doubles the idle memory; per-test databases keep tests isolated either way.
A selected backend that cannot start is a test *error*, never a skip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .config import BACKENDS, Settings, load_settings
from .errors import HarnessError
from .pool import ServerPool
from .provision import Database, Server
from .provision.local import start_local

POOL_KEY = pytest.StashKey[ServerPool]()
WORKERINPUT_KEY = "harness_servers"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "race-harness (real database servers)")
    group.addoption("--backend", dest="harness_backends", default=None,
                    help="comma-separated backends to run against: postgres,mysql (default from "
                         "HARNESS_BACKENDS or [tool.harness], else both)")
    group.addoption("--provisioner", dest="harness_provisioner", default=None,
                    help="auto|local|docker|dsn, or per service e.g. postgres=local,mysql=dsn")
    group.addoption("--pg-dsn", dest="harness_pg_dsn", default=None, help="use this existing PostgreSQL server")
    group.addoption("--mysql-dsn", dest="harness_mysql_dsn", default=None, help="use this existing MySQL/MariaDB server")
    group.addoption("--redis-url", dest="harness_redis_url", default=None, help="use this existing Redis server")


def _settings(config: pytest.Config) -> Settings:
    return load_settings(
        cli={
            "backends": config.getoption("harness_backends"),
            "provisioner": config.getoption("harness_provisioner"),
            "pg_dsn": config.getoption("harness_pg_dsn"),
            "mysql_dsn": config.getoption("harness_mysql_dsn"),
            "redis_url": config.getoption("harness_redis_url"),
        },
        project_dir=config.rootpath,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run this test only on these backends")
    try:
        settings = _settings(config)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = getattr(config, "workerinput", None)
    attached = json.loads(workerinput[WORKERINPUT_KEY]) if workerinput and WORKERINPUT_KEY in workerinput else {}
    config.stash[POOL_KEY] = ServerPool(settings, attached)
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(config), "harness-xdist-controller")


class _XdistController:
    """Starts the servers once, in the controller, for all workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.exported: str | None = None

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        if self.exported is None:
            pool = self.config.stash[POOL_KEY]
            self.exported = json.dumps(pool.export([*pool.settings.backends, "redis"]))
        node.workerinput[WORKERINPUT_KEY] = self.exported


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    pool = metafunc.config.stash[POOL_KEY]
    selected = list(pool.settings.backends)
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        selected = [b for b in selected if b in marker.args]
    metafunc.parametrize("backend", selected, ids=selected)


def _get(pool: ServerPool, service: str) -> Server:
    try:
        return pool.get(service)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def server_pool(request: pytest.FixtureRequest) -> ServerPool:
    return request.config.stash[POOL_KEY]


@pytest.fixture(scope="session")
def harness_settings(server_pool: ServerPool) -> Settings:
    return server_pool.settings


@pytest.fixture(scope="session")
def pg_server(server_pool: ServerPool) -> Server:
    return _get(server_pool, "postgres")


@pytest.fixture(scope="session")
def mysql_server(server_pool: ServerPool) -> Server:
    return _get(server_pool, "mysql")


@pytest.fixture(scope="session")
def redis_server(server_pool: ServerPool) -> Server:
    return _get(server_pool, "redis")


def _fresh(server: Server) -> Iterator[Database]:
    try:
        db = server.create_database()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture
def database(server_pool: ServerPool, backend: str) -> Iterator[Database]:
    """A fresh, empty database on the current ``backend`` (parametrized over the selected ones)."""
    yield from _fresh(_get(server_pool, backend))


@pytest.fixture
def pg_database(pg_server: Server) -> Iterator[Database]:
    yield from _fresh(pg_server)


@pytest.fixture
def mysql_database(mysql_server: Server) -> Iterator[Database]:
    yield from _fresh(mysql_server)


@pytest.fixture
def server_factory(harness_settings: Settings) -> Iterator[Callable[[str], Server]]:
    """Start private local servers (which a test may kill or restart); all stopped at teardown."""
    started: list[Server] = []

    def start(service: str) -> Server:
        if service not in (*BACKENDS, "redis"):
            raise ValueError(f"unknown service {service!r}")
        try:
            server = start_local(service, harness_settings)
        except HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
