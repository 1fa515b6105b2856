"""Servers in containers through testcontainers, used when chosen or when ``auto`` finds no binaries.

Only the container start lives here; once a container answers, the handle is the same as for any
server reached by URL (see :func:`describe_server`).
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..dialect import ConnInfo
from ..errors import ProvisionError
from .auth import new_password
from .base import Server
from .dsn import describe_server


def docker_available(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether a Docker engine answers a ping (and which), without starting anything."""
    try:
        import docker

        client = docker.from_env(timeout=int(timeout))
        client.ping()
        version = client.version().get("Version", "?")
        client.close()
        return True, f"Docker engine {version}"
    except Exception as exc:  # no socket, permission, no engine: all mean "not available"
        return False, f"no Docker engine answered ({type(exc).__name__}: {str(exc)[:120]})"


class ContainerLifecycle:
    def __init__(self, container: Any) -> None:
        self.container = container
        self.description = f"container {container.image}"

    def stop(self) -> None:
        self.container.stop()

    def kill(self) -> None:
        self.container.get_wrapped_container().kill()

    def restart(self) -> None:
        self.container.get_wrapped_container().restart()


def start_docker(service: str, settings: Settings) -> Server:
    ok, why = docker_available()
    if not ok:
        raise ProvisionError(f"--provisioner=docker was chosen for {service} but {why}. Start Docker, or use "
                             "--provisioner=local with installed server binaries.")
    image = settings.image[service]
    password = new_password()  # per container, like local servers: no well-known password on a published port
    if service == "postgres":
        from testcontainers.postgres import PostgresContainer

        container: Any = PostgresContainer(image, username="postgres", password=password, dbname="postgres")
        container.with_command(f"postgres -c max_prepared_transactions=10 -c fsync={'on' if settings.fsync else 'off'}"
                               f" -c deadlock_timeout={settings.deadlock_timeout_ms}ms")
        port, scheme, user, db = 5432, "postgresql", "postgres", "postgres"
    elif service == "mysql":
        from testcontainers.mysql import MySqlContainer

        container = MySqlContainer(image, root_password=password, password=password)  # its "test" user too
        container.with_command("--performance-schema=ON --performance-schema-instrument=wait/lock/metadata/sql/mdl=ON"
                               " --innodb-status-output-locks=ON"
                               f" --innodb-lock-wait-timeout={settings.lock_wait_timeout}")
        port, scheme, user, db = 3306, "mysql", "root", ""
    else:
        from testcontainers.redis import RedisContainer

        container = RedisContainer(image, password=password)
        port, scheme, user, db = 6379, "redis", "", "0"
    try:
        container.start()
    except Exception as exc:
        raise ProvisionError(f"the {image} container did not start: {exc}") from exc
    info = ConnInfo(scheme, container.get_container_host_ip(), int(container.get_exposed_port(port)), user, password, db)
    return describe_server(service, info, "docker", ContainerLifecycle(container))
