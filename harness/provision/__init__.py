"""Provisioning: get a real server for a service, by one of three provisioners.

``start_server("postgres", settings)`` returns a :class:`Server`; the choice between ``local``,
``docker`` and ``dsn`` (or ``auto``: local binaries, else Docker) comes from :class:`Settings`.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import ProvisionError
from .base import Database, Server, attach
from .docker import docker_available, start_docker
from .dsn import attach_dsn
from .local import local_available, start_local
from .owner import DB_PREFIX


def start_server(service: str, settings: Settings) -> Server:
    """A running server for ``service`` (postgres, mysql, redis), chosen as the settings say."""
    choice = settings.provisioner_for(service)
    if choice == "dsn":
        if service not in settings.dsn:
            raise ProvisionError(f"--provisioner=dsn was chosen for {service} but no URL was given; pass "
                                 f"{ {'postgres': '--pg-dsn', 'mysql': '--mysql-dsn', 'redis': '--redis-url'}[service] }.")
        return attach_dsn(service, settings.dsn[service])
    if choice == "local":
        return start_local(service, settings)
    if choice == "docker":
        return start_docker(service, settings)
    ok, why = local_available(service, settings)
    if ok:
        return start_local(service, settings)
    engine, engine_why = docker_available()
    if engine:
        return start_docker(service, settings)
    raise ProvisionError(f"{why} (--provisioner=auto also tried Docker: {engine_why}.)")


__all__ = ["DB_PREFIX", "Database", "Server", "attach", "start_server", "local_available", "docker_available"]
