"""Servers in containers through testcontainers, used when chosen or when ``auto`` finds no binaries.

Two networkings (``HARNESS_DOCKER_NETWORK``, :func:`network_mode`):

* ``bridge``: the server listens on its usual port in the container, published on a free host port
  (on 127.0.0.1 when the engine is local);
* ``host``: for engines that cannot publish ports (started without a bridge, some Docker-in-Docker CI
  runners): the container shares the machine's network, so the server is told a free port of its own
  and binds 127.0.0.1 only -- exactly like a local server.

``auto`` picks ``host`` when the engine has no ``bridge`` network.  Either way the address is chosen
before the container starts and never changes, so a crash fault's restart (:class:`ContainerLifecycle`,
``docker start`` on the killed container) keeps both the data and the address.  With a local engine
(and as root) the data directory is a bind mount from the machine's tmpfs (:func:`_host_data_dir`), as
fast as a local server's; otherwise it is in the container's own filesystem.  Containers carry an owner
label; those of runs that died without stopping them are removed by the next start on this host
(:func:`sweep_stale_containers`), as local run dirs are.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..dialect import ConnInfo, dialect_for
from ..errors import ProvisionError
from .auth import new_password
from .base import Server
from .dsn import describe_server
from .local import free_port, process_alive, redis_ping, run_root, sweep_stale_rundirs

START_TIMEOUT = 120.0  # a first start initialises the data directory inside the container
STOP_TIMEOUT = 15
OWNER_LABEL = "race-harness.owner"  # "<hostname>:<pid>" of the process that started the container
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _client(timeout: float = 30.0) -> Any:
    import docker

    return docker.from_env(timeout=int(timeout))


def docker_available(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether a Docker engine answers a ping (and which), without starting anything."""
    try:
        client = _client(timeout)
        client.ping()
        version = client.version().get("Version", "?")
        client.close()
        return True, f"Docker engine {version}"
    except Exception as exc:  # no socket, permission, no engine: all mean "not available"
        return False, f"no Docker engine answered ({type(exc).__name__}: {str(exc)[:120]})"


def engine_is_local(client: Any) -> bool:
    """Whether the engine runs on this machine (a unix socket or a loopback address)."""
    from urllib.parse import urlparse

    url = urlparse(client.api.base_url)
    return "unix" in url.scheme or "npipe" in url.scheme or (url.hostname or "localhost") in _LOCAL_HOSTS


def network_mode(client: Any, chosen: str) -> str:
    """``host`` or ``bridge``: as chosen, or for ``auto`` whether the engine has a bridge to publish from."""
    if chosen in ("host", "bridge"):
        return chosen
    return "bridge" if client.networks.list(names=["bridge"]) else "host"


# --------------------------------------------------------------------------------------------- services

@dataclass(frozen=True)
class Service:
    """What differs between the PostgreSQL, MySQL-family and Redis containers."""

    port: int  # the server's usual port (inside the container, bridge networking)
    conninfo: Callable[[str, int, str], ConnInfo]  # (host, port, password)
    env: Callable[[str], dict[str, str]]  # the official images' variables for this password
    #: (port the server listens on, loopback only?, settings) -> the container's command
    command: Callable[[int, bool, Settings], list[str]]
    ready: Callable[[ConnInfo], None]  # raises until the server answers
    bind_error: tuple[str, ...]
    data_dir: str | None = None  # where the image keeps its data (bind-mounted from tmpfs, see _host_data_dir)
    config_file: Callable[[str], tuple[bytes, str] | None] = lambda _pw: None  # (content, path) copied in


def _pg_command(port: int, loopback: bool, s: Settings) -> list[str]:
    sync = "on" if s.fsync else "off"
    conf = {"port": str(port), "max_prepared_transactions": "10", "max_connections": "300",
            "fsync": sync, "full_page_writes": sync, "synchronous_commit": "on",
            "deadlock_timeout": f"{s.deadlock_timeout_ms}ms", "lc_messages": "C"}
    if loopback:
        conf["listen_addresses"] = "127.0.0.1"
    return ["postgres"] + [a for k, v in conf.items() for a in ("-c", f"{k}={v}")]


def _mysql_command(port: int, loopback: bool, s: Settings) -> list[str]:
    args = [f"--port={port}", "--skip-name-resolve", "--performance-schema=ON",
            "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON", "--innodb-status-output-locks=ON",
            f"--innodb-lock-wait-timeout={s.lock_wait_timeout}", "--max-connections=300",
            f"--innodb-flush-log-at-trx-commit={1 if s.fsync else 2}", "--skip-log-bin"]
    return args + (["--bind-address=127.0.0.1"] if loopback else [])


def _redis_command(port: int, loopback: bool, s: Settings) -> list[str]:
    return ["redis-server", _REDIS_CONF, "--port", str(port), "--save", "", "--appendonly", "no",
            *(["--bind", "127.0.0.1"] if loopback else ["--protected-mode", "no"])]


_REDIS_CONF = "/etc/race-harness-redis.conf"  # the password, copied in: not on a command line


def _sql_ready(service: str) -> Callable[[ConnInfo], None]:
    return lambda info: dialect_for(service).connect(info, connect_timeout=2).close()


def _redis_ready(info: ConnInfo) -> None:
    redis_ping(info)


SERVICES: dict[str, Service] = {
    "postgres": Service(
        5432, lambda host, port, pw: ConnInfo("postgresql", host, port, "postgres", pw, "postgres"),
        lambda pw: {"POSTGRES_PASSWORD": pw, "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"},
        _pg_command, _sql_ready("postgres"), ("could not bind", "Address already in use"),
        "/var/lib/postgresql/data",
    ),
    "mysql": Service(
        3306, lambda host, port, pw: ConnInfo("mysql", host, port, "root", pw, ""),
        lambda pw: {"MARIADB_ROOT_PASSWORD": pw, "MYSQL_ROOT_PASSWORD": pw},
        _mysql_command, _sql_ready("mysql"), ("Address already in use", "Can't start server: Bind"),
        "/var/lib/mysql",
    ),
    "redis": Service(
        6379, lambda host, port, pw: ConnInfo("redis", host, port, "", pw, "0"), lambda pw: {},
        _redis_command, _redis_ready, ("Address already in use",),
        config_file=lambda pw: (f'requirepass "{pw}"\n'.encode(), _REDIS_CONF),
    ),
}


# ------------------------------------------------------------------------------------------ lifecycle

def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_stale_containers(client: Any) -> list[str]:
    """Remove containers started by harness processes on this host that are gone (SIGKILLed runs)."""
    removed = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        who, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
        if who == host and pid.isdigit() and not process_alive(int(pid)):
            container.remove(force=True, v=True)
            removed.append(container.short_id)
    return removed


def _remove(container: Any, data: Path | None = None) -> None:
    """Remove a container and its data dir (also at interpreter exit, if nobody stopped it)."""
    try:
        container.stop()
    except Exception:  # already gone, or the engine went away first: nothing left to do
        pass
    if data is not None:
        shutil.rmtree(data, ignore_errors=True)


def _host_data_dir(client: Any, service: Service) -> Path | None:
    """A fresh dir on the machine's tmpfs for the server's data, when the engine is local and we are root.

    In the container's own filesystem (overlay on disk) every file create costs about a millisecond,
    which made a per-test database 0.5 s instead of tens of ms; a bind mount from tmpfs is as fast as
    a local server, and unlike a ``--tmpfs`` mount it survives the container's restart (a crash fault
    must find the data again).  Only as root: the files belong to the container's users and must be
    removable by us afterwards.  Named like local run dirs, so a dead run's dir is swept the same way.
    """
    if service.data_dir is None or os.geteuid() != 0 or not engine_is_local(client):
        return None
    return Path(tempfile.mkdtemp(prefix=f"harness-run-docker-{os.getpid()}-", dir=run_root()))


class ContainerLifecycle:
    """A server container we started: stop (remove it), kill (SIGKILL), restart (same data, same address)."""

    def __init__(self, container: Any, service: Service, info: ConnInfo, network: str, data: Path | None) -> None:
        self.container, self.service, self.info = container, service, info
        where = f"data in {data}" if data else "data in the container"
        self.description = f"container {container.image}, {network} networking, {where}"
        self._finalizer = weakref.finalize(self, _remove, container, data)

    @property
    def wrapped(self) -> Any:
        return self.container.get_wrapped_container()

    def stop(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        self.wrapped.kill()
        self.wrapped.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        wrapped = self.wrapped
        wrapped.reload()
        if wrapped.status == "running":
            wrapped.stop(timeout=STOP_TIMEOUT)
        wrapped.start()
        outcome = wait_ready(wrapped, self.service, self.info, time.monotonic() + START_TIMEOUT)
        if outcome != "ready":
            raise ProvisionError(f"the restarted container {wrapped.short_id} {outcome}: {_log_tail(wrapped)}")


def _log_tail(wrapped: Any, lines: int = 12) -> str:
    try:
        text = wrapped.logs(tail=lines).decode(errors="replace")
    except Exception as exc:  # the engine may have removed it already
        return f"(no logs: {exc})"
    return " | ".join(line for line in text.strip().splitlines()) or "(empty log)"


def wait_ready(wrapped: Any, service: Service, info: ConnInfo, deadline: float) -> str:
    """``ready``, ``exited`` or ``did not answer in time``: bounded back-off polling of the server."""
    delay = 0.01
    while time.monotonic() < deadline:
        try:
            service.ready(info)
            return "ready"
        except Exception:  # not accepting connections yet
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                return "exited"
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
    return f"did not answer within {START_TIMEOUT:.0f}s"


# ---------------------------------------------------------------------------------------------- start

def _container(image: str, service: Service, password: str, port: int, network: str, publish_on: str,
               settings: Settings, data: Path | None) -> Any:
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image)
    if data is not None and service.data_dir is not None:
        container.with_volume_mapping(str(data), service.data_dir, "rw")
    container.with_envs(**service.env(password))
    kwargs: dict[str, Any] = {"labels": {OWNER_LABEL: _owner()}, "shm_size": "256m"}
    if network == "host":
        kwargs["network"] = "host"
        container.with_command(service.command(port, True, settings))
    else:
        container.with_bind_ports(service.port, (publish_on, port))  # type: ignore[arg-type]
        container.with_command(service.command(service.port, False, settings))
    container.with_kwargs(**kwargs)
    config = service.config_file(password)
    if config is not None:
        container.with_copy_into_container(config[0], config[1], 0o644)
    return container


def _disable_ryuk_without_image(client: Any) -> None:
    """testcontainers' reaper container would be pulled from a registry; without its image at hand we
    reap our own containers (finalizer + :func:`sweep_stale_containers`) and do not ask for it."""
    from testcontainers.core.config import testcontainers_config

    if testcontainers_config.ryuk_disabled:
        return
    if not client.images.list(name=testcontainers_config.ryuk_image):
        testcontainers_config.ryuk_disabled = True


def start_docker(service_name: str, settings: Settings) -> Server:
    ok, why = docker_available()
    if not ok:
        raise ProvisionError(f"--provisioner=docker was chosen for {service_name} but {why}. Start Docker, or "
                             "use --provisioner=local with installed server binaries.")
    client = _client()
    sweep_stale_containers(client)
    sweep_stale_rundirs()  # their data dirs, now that their containers are gone
    _disable_ryuk_without_image(client)
    network = network_mode(client, settings.docker_network)
    image = settings.image[service_name]
    service = SERVICES[service_name]
    password = new_password()  # per container, like local servers: no well-known password on a port
    publish_on = "127.0.0.1" if engine_is_local(client) else "0.0.0.0"  # a remote engine's ports: not ours
    deadline = time.monotonic() + START_TIMEOUT
    for _attempt in range(4):
        port = free_port()
        data = _host_data_dir(client, service)
        container = _container(image, service, password, port, network, publish_on, settings, data)
        try:
            container.start()
        except Exception as exc:
            _remove(container, data)
            if "already allocated" in str(exc) or "address already in use" in str(exc):
                continue  # the free port was taken meanwhile
            raise ProvisionError(f"the {image} container did not start: {exc}. Is the image available to "
                                 f"this engine (docker images {image})?") from exc
        host = "127.0.0.1" if network == "host" else container.get_container_host_ip()
        if host in _LOCAL_HOSTS:
            host = "127.0.0.1"
        info = service.conninfo(host, port, password)
        wrapped = container.get_wrapped_container()
        outcome = wait_ready(wrapped, service, info, deadline)
        if outcome == "ready":
            lifecycle = ContainerLifecycle(container, service, info, network, data)
            try:
                return describe_server(service_name, info, "docker", lifecycle)
            except BaseException:
                lifecycle.stop()
                raise
        log = _log_tail(wrapped).replace(password, "***")
        _remove(container, data)
        if outcome == "exited" and any(m in log for m in service.bind_error):
            continue
        raise ProvisionError(f"the {image} container ({network} networking) {outcome}. Its last log lines: {log}")
    raise ProvisionError(f"could not find a free port for the {image} container after 4 tries.")
