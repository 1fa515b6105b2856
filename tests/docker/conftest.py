"""Fixtures of the opt-in container tests (``HARNESS_DOCKER_TESTS=1``): an engine, the stand-in
images, and one container per service started by the Docker provisioner.

Without the opt-in every test here is skipped at collection (the default suite stays fast); with it,
a test skips only when no engine can be had (none answers and none can be started here).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Iterator

import pytest

from harness.config import Settings, load_settings
from harness.provision import Database, Server, start_server

from .engine import Engine, answering, start_private
from .images import ensure_images

OPT_IN = os.environ.get("HARNESS_DOCKER_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if OPT_IN:
        return
    skip = pytest.mark.skip(reason="container tests are opt-in: HARNESS_DOCKER_TESTS=1 (see README)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The engine that answers, or a private one started (and stopped) here; DOCKER_HOST points at it."""
    found = answering()
    why = ""
    if found is None:
        found, why = start_private()
    if found is None:
        pytest.skip(f"no Docker engine answers and none could be started: {why}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", found.host)
        try:
            yield found
        finally:
            found.stop()


@pytest.fixture(scope="session")
def docker_settings(engine: Engine) -> Settings:
    """Docker provisioning for every service, with the stand-in images (built or loaded from the cache)."""
    started = time.perf_counter()
    images = ensure_images(engine.client())
    print(f"\nstand-in images ready in {time.perf_counter() - started:.1f}s on Docker {engine.version}: {images}")
    settings = load_settings(cli={"provisioner": "docker"})
    return replace(settings, image={service: tag for service, tag in images.items() if tag})


@pytest.fixture(scope="session")
def containers(docker_settings: Settings) -> Iterator[dict[str, Server]]:
    """One container per service, shared by the tests that do not kill it."""
    servers: dict[str, Server] = {}
    try:
        for service in ("postgres", "mysql", "redis"):
            servers[service] = start_server(service, docker_settings)
            print(f"{service}: {servers[service].describe()}")
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(params=["postgres", "mysql"])
def container_db(request: pytest.FixtureRequest, containers: dict[str, Server]) -> Iterator[Database]:
    """A fresh database on a container of each SQL backend (the per-test database, as the plugin makes it)."""
    db = containers[request.param].create_database()
    try:
        yield db
    finally:
        db.drop()
