"""Existing servers given by URL: the harness creates uniquely named databases and drops only those."""

from __future__ import annotations

from ..dialect import ConnInfo
from ..errors import ProvisionError
from .base import AttachedLifecycle, Server

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


def attach_dsn(service: str, url: str) -> Server:
    info = parse_dsn(service, url)
    lifecycle = AttachedLifecycle(f"existing server {info.redacted()}")
    server = describe_server(service, info, "dsn", lifecycle)
    lifecycle._on_stop = server.drop_created  # stopping means: drop what we created, nothing else
    return server
