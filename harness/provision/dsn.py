"""Existing servers given by URL: the harness creates uniquely named databases and drops only those.

Databases of runs that died (SIGKILL) are named after their owner (:mod:`.owner`) and dropped by the
next attach from the same host, or by ``harness clean``.
"""

from __future__ import annotations

import sys

from ..dialect import ConnInfo, execute
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
    if service == "mysql":
        check_lock_instrumentation(server)
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


_MDL = "wait/lock/metadata/sql/mdl"


def check_lock_instrumentation(server: Server) -> None:
    """Refuse a MySQL-family server that cannot say who holds the lock a session waits for.

    The harness reads row-lock holders from SHOW ENGINE INNODB STATUS (MariaDB, needs
    innodb_status_output_locks) or performance_schema.data_lock_waits (MySQL 8), and metadata/user
    lock holders from performance_schema.metadata_locks (needs the MDL instrument).  Without them
    every wait's holder is "unknown" and scenarios fail for no visible reason, so say what to enable.
    """
    with server.admin() as admin:
        (pfs,), = execute(admin, "SELECT @@performance_schema")
        mdl = execute(admin, "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = %s",
                      (_MDL,)) if int(pfs) else []
        locks = execute(admin, "SELECT @@innodb_status_output_locks")[0][0] if server.flavor == "mariadb" else 1
    missing = []
    if not int(pfs):
        missing.append("performance_schema is OFF (set performance_schema=ON under [mysqld], or start the server "
                       "with --performance-schema=ON; it needs a restart)")
    elif not mdl or str(mdl[0][0]).upper() != "YES":
        missing.append(f"the instrument {_MDL} is disabled (UPDATE performance_schema.setup_instruments SET "
                       f"ENABLED='YES', TIMED='YES' WHERE NAME='{_MDL}', or performance-schema-instrument="
                       f"'{_MDL}=ON' under [mysqld])")
    if not int(locks):
        missing.append("innodb_status_output_locks is OFF (SET GLOBAL innodb_status_output_locks=ON, or "
                       "innodb_status_output_locks=ON under [mysqld])")
    if missing:
        raise ProvisionError(
            f"the {server.flavor} server at {server.info.redacted()} lacks the lock instrumentation the harness "
            f"reads to see which session blocks which: {'; '.join(missing)}. Without it every lock wait's holder "
            "is unknown and scenarios fail without saying why. Enable it (the harness does not change settings of "
            "a server it did not start), or let the harness start its own server (drop --mysql-dsn)."
        )
