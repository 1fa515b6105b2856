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

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import pytest_spread
from .config import BACKENDS, Settings, load_settings
from .errors import HarnessError
from .pool import ServerPool
from .provision import Database, Server
from .provision.local import start_local
from .redact import mask_url, sanitize
from .signals import EXIT_SIGTERM, die_with_parent, handle_sigterm, terminated

if TYPE_CHECKING:
    from .explore.race import Race

POOL_KEY = pytest.StashKey[ServerPool]()
WORKERINPUT_KEY = "harness_servers"
CONTROLLER_PID_KEY = "harness_controller_pid"


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
    group.addoption("--harness-replay", dest="harness_replay", default=None, metavar="SCHEDULE",
                    help='replay this schedule (e.g. "A A B A") in race tests instead of exploring')
    group.addoption("--harness-report", dest="harness_report", default=None, metavar="DIR",
                    help="write the HTML report and JSON results of scenario items into DIR")
    group.addoption("--harness-shard", dest="harness_shard", default=None, metavar="K/N",
                    help="run shard K of N of every exploration (default: $HARNESS_SHARD)")
    pytest_spread.add_option(group)


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
        if config.getoption("harness_shard") or os.environ.get("HARNESS_SHARD"):  # a bad K/N: a usage error
            from .explore.shard import resolve_shard

            resolve_shard(config.getoption("harness_shard"))
    except HarnessError as exc:
        raise pytest.UsageError(sanitize(str(exc))) from None
    workerinput = getattr(config, "workerinput", None)
    handle_sigterm()  # SIGTERM unwinds like Ctrl-C: pytest_unconfigure stops the servers
    attached = json.loads(workerinput[WORKERINPUT_KEY]) if workerinput and WORKERINPUT_KEY in workerinput else {}
    pool = config.stash[POOL_KEY] = ServerPool(settings, attached)
    pytest_spread.configure(config)
    config.pluginmanager.register(pytest_spread, "harness-spread")  # its fixture and hooks for race tests
    if workerinput and CONTROLLER_PID_KEY in workerinput:  # a killed controller takes its workers along
        die_with_parent(int(workerinput[CONTROLLER_PID_KEY]), lambda: _orphan_cleanup(pool))
    report_dir = config.getoption("harness_report")
    if report_dir and workerinput is None:
        config.pluginmanager.register(_ReportWriter(config, Path(report_dir)), "harness-report-writer")
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(config), "harness-xdist-controller")


def _orphan_cleanup(pool: ServerPool) -> None:
    """A worker whose controller died: drop its databases, stop the servers it started (the pool's
    and private ones, whose finalizers run at exit), without waiting for pytest to unwind."""
    import atexit

    pool.close()
    atexit._run_exitfuncs()


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
        if threading.current_thread() is threading.main_thread():  # the thread that forked the worker
            node.workerinput[CONTROLLER_PID_KEY] = os.getpid()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if terminated():  # cleanup ran as for Ctrl-C; report SIGTERM's conventional status
        session.exitstatus = EXIT_SIGTERM


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    outcome = getattr(item, "outcome", None)
    race = getattr(item, "funcargs", {}).get("race")
    if call.when == "call" and outcome is None and race is not None and hasattr(race, "report_outcome"):
        outcome = race.report_outcome(test=item.nodeid, path=str(item.path), passed=report.get_result().passed)
    if call.when == "call" and outcome is not None and hasattr(outcome, "to_json"):
        # travels to the xdist controller with the report, so one process writes one report
        report.get_result().user_properties.append(("harness_outcome", json.dumps(outcome.to_json())))


class _ReportWriter:
    """Collects scenario outcomes from test reports and writes the HTML/JSON report at the end."""

    def __init__(self, config: pytest.Config, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.outcomes: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.outcomes.extend(str(v) for k, v in report.user_properties if k == "harness_outcome")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .report.html import write_report
        from .results import Outcome, RunResults
        from .results_merge import merge_results

        results = RunResults(outcomes=[Outcome.from_json(json.loads(v)) for v in self.outcomes],
                             command=mask_url("pytest " + " ".join(self.config.invocation_params.args)))
        results = merge_results([results])[0]  # --harness-spread: an exploration's shards as one
        results.servers = {b: o.trace.server for v in self.outcomes
                           for o in [Outcome.from_json(json.loads(v))] for b in [o.backend] if o.trace}
        path = write_report(results, self.folder)
        self.config.get_terminal_writer().line(f"harness report: {path}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else ""
        if "backend" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test parametrizes backend itself
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
        pytest.fail(sanitize(str(exc)), pytrace=False)


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
        pytest.fail(sanitize(str(exc)), pytrace=False)
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
    """Start private local servers (which a test may kill or restart); all stopped at teardown.

    ``server_factory("postgres", fsync=True, options={"synchronous_commit": "off"})``: crash tests
    want fsync on; ``options`` are extra server settings.
    """
    started: list[Server] = []

    def start(service: str, *, fsync: bool | None = None, options: dict[str, str] | None = None) -> Server:
        if service not in (*BACKENDS, "redis"):
            raise ValueError(f"unknown service {service!r}")
        settings = harness_settings if fsync is None else dataclasses.replace(harness_settings, fsync=fsync)
        try:
            server = start_local(service, settings, options=options)
        except HarnessError as exc:
            pytest.fail(sanitize(str(exc)), pytrace=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def race(request: pytest.FixtureRequest, database: Database, server_pool: ServerPool,
         harness_spread_shard: str | None) -> Iterator[Race]:
    """A :class:`harness.explore.Race` on a fresh database of the current backend.

    ``race.assert_no_race(N)`` explores N schedules and fails with the minimal schedule and the exact
    pytest command that replays it; ``--harness-replay "A A B"`` replays instead of exploring.
    """
    import shlex

    from .explore.race import Race

    nodeid, shard = pytest_spread.unsharded(request.node.nodeid, harness_spread_shard), harness_spread_shard
    r = Race(database, name=pytest_spread.unsharded(request.node.name, shard), redis=lambda: _get(server_pool, "redis").info,
             replay_hint=lambda sched: f"pytest {shlex.quote(nodeid)} --harness-replay {shlex.quote(sched)}",
             forced_schedule=request.config.getoption("harness_replay"),
             save_dir=request.config.rootpath / "reports" / "schedules")
    r.capture_drivers()  # the app may open (and pool) connections in the test body, before exploring
    r.shard, r.progress = shard or request.config.getoption("harness_shard"), pytest_spread.checker(request.node, shard)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def django_race(request: pytest.FixtureRequest, race: Race) -> Iterator[Race]:
    """The ``race`` fixture for Django code: Django's ``DATABASES["default"]`` (pytest-django's settings,
    or ``DJANGO_SETTINGS_MODULE``'s) points at the race database, migrated, for the test; pytest-django's
    database blocker is lifted for it (harness/django.py, docs/django.md)."""
    from contextlib import ExitStack

    from .django import configure

    with ExitStack() as stack:
        if request.config.pluginmanager.hasplugin("django"):
            blocker = request.getfixturevalue("django_db_blocker")
            if blocker is not None:
                stack.enter_context(blocker.unblock())
        stack.enter_context(configure(race)).migrate()
        yield race


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A ``--harness-replay`` schedule that cannot be followed is a usage error (exit 2, one paragraph
    naming the move), not a test failure with a traceback."""
    from .explore.scheduler import Divergence

    try:
        return (yield)
    except Divergence as exc:
        if item.config.getoption("harness_replay", None):
            pytest.exit(f"harness: error: {item.nodeid}: {exc}", returncode=2)
        raise


# -- scenario files as test items ----------------------------------------------------------------

def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    """``*.yaml`` files under a ``scenarios/`` folder become test items."""
    if file_path.suffix in (".yaml", ".yml") and "scenarios" in file_path.parts:
        from .pytest_scenarios import ScenarioFile

        return ScenarioFile.from_parent(parent, path=file_path)
    return None
