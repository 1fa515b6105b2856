"""Existing servers given by URL: the harness creates uniquely named databases and drops only those.

Databases of runs that died (SIGKILL) are named after their owner (:mod:`.owner`) and dropped by the
next attach from the same host, or by ``harness clean``.
"""

from __future__ import annotations

import sys

from ..dialect import ConnInfo
from ..errors import ProvisionError
from .base import AttachedLifecycle, Server
from .owner import DB_PREFIX, stale

_SCHEMES = {"postgres": ("postgresql", 5432), "mysql": ("mysql", 3306), "redis": ("redis", 6379)}
_OPTION = {"postgres": "--pg-dsn / HARNESS_PG_DSN", "mysql": "--mysql-dsn / HARNESS_MYSQL_DSN",
           "redis": "--redis-url / HARNESS_REDIS_URL"}


def parse_dsn(service: str, url: str) -> ConnInfo:
    scheme, port = _SCHEMES[service]
    try:
        return ConnInfo.parse(url, default_scheme=scheme, default_port=port)
    except ValueError as exc:
        raise ProvisionError(
            f"cannot read the {service} URL given with {_OPTION[service]} ({exc}); expected e.g. "
            f"{scheme}://user:password@127.0.0.1:{port}/{'0' if service == 'redis' else 'dbname'}."
        ) from None


def describe_server(service: str, info: ConnInfo, provisioner: str, lifecycle: AttachedLifecycle | object) -> Server:
    """Ask a reachable server what it is and wrap it in a handle (shared by dsn and docker)."""
    flavor, version = service, "?"
    if service == "redis":
        import redis

        client = redis.Redis(host=info.host, port=info.port, password=info.password or None,
                             socket_connect_timeout=5, socket_timeout=5)
        try:
            version = str(client.info("server").get("redis_version", "?"))
        except redis.RedisError as exc:
            raise ProvisionError(f"cannot reach Redis at {info.redacted()}: {exc}. Check that it is running "
                                 "and the URL is right.") from None
        finally:
            client.close()
        flavor = "redis"
    server = Server(service=service, flavor=flavor, version=version, info=info, provisioner=provisioner,
                    lifecycle=lifecycle)  # type: ignore[arg-type]
    if service != "redis":
        with server.admin() as admin:
            server.flavor, server.version = server.dialect.server_version(admin)
    return server


def attach_dsn(service: str, url: str, *, sweep: bool = True) -> Server:
    """A handle on an existing server; ``sweep``: first drop databases dead runs on this host left."""
    info = parse_dsn(service, url)
    lifecycle = AttachedLifecycle(f"existing server {info.redacted()}")
    server = describe_server(service, info, "dsn", lifecycle)
    lifecycle._on_stop = server.drop_created  # stopping means: drop what we created, nothing else
    if sweep and service != "redis":
        dropped = sweep_databases(server)
        if dropped:
            print(f"harness: dropped {len(dropped)} database(s) left on {info.redacted()} by harness runs that "
                  f"died on this host: {', '.join(dropped)}", file=sys.stderr)
    return server


def sweep_databases(server: Server, *, everything: bool = False) -> list[str]:
    """Drop the ``harness_*`` databases whose owner (encoded in the name) ran on this host and is gone;
    with ``everything``, every ``harness_*`` database whoever made it.  Nothing else is touched."""
    names = server._with_admin(lambda admin: server.dialect.list_databases(admin, DB_PREFIX))
    targets = sorted(n for n in names if n.startswith(DB_PREFIX)) if everything else stale(names)
    for name in targets:
        server._with_admin(lambda admin, name=name: server.dialect.drop_database(admin, name))
    return targets
