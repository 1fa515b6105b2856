"""The server handle every provisioner returns, and the database handle tests get.

Only *how a server process comes and goes* differs between provisioners (a local child process, a
container, somebody else's server); that is the :class:`Lifecycle`.  Creating and dropping databases,
the template, and the rule "drop only what we created" are shared here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..dialect import ConnInfo, Dialect, dialect_for
from ..errors import ProvisionError
from .owner import DB_PREFIX, database_name


class Lifecycle(Protocol):
    """How a server process is stopped, killed and restarted (provisioner-specific)."""

    description: str

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...


@dataclass
class Database:
    """A fresh database on a server, owned by one test (or one scenario run)."""

    server: "Server"
    name: str

    @property
    def info(self) -> ConnInfo:
        return self.server.info.with_db(self.name)

    @property
    def dsn(self) -> str:
        return self.info.dsn

    @property
    def backend(self) -> str:
        return self.server.service

    @property
    def dialect(self) -> Dialect:
        return self.server.dialect

    def connect(self, **kwargs: Any) -> Any:
        return self.server.dialect.connect(self.info, **kwargs)

    def drop(self) -> None:
        self.server.drop_database(self.name)


@dataclass
class Server:
    """A running server: flavor, version, connection info, databases, lifecycle.

    ``service`` is ``postgres``, ``mysql`` (any of the MySQL family) or ``redis``; ``flavor`` is what
    actually answers (``postgres``, ``mariadb``, ``mysql``, ``redis``).
    """

    service: str
    flavor: str
    version: str
    info: ConnInfo
    provisioner: str
    lifecycle: Lifecycle
    template: str | None = None
    owns_template: bool = False
    _created: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: bool = False
    _template_ready: bool = False
    _admin: Any = None

    @property
    def dialect(self) -> Dialect:
        if self.service == "redis":
            raise ProvisionError("Redis has no SQL dialect; use server.info / redis_client() instead.")
        return dialect_for(self.service)

    @property
    def dsn(self) -> str:
        return self.info.dsn

    def describe(self) -> str:
        return f"{self.flavor} {self.version} at {self.info.host}:{self.info.port} ({self.lifecycle.description})"

    def admin(self) -> Any:
        """A fresh autocommit connection to the server's admin database."""
        try:
            return self.dialect.connect(self.info, autocommit=True, connect_timeout=10)
        except Exception as exc:  # driver errors differ per backend; all mean "cannot reach"
            raise ProvisionError(
                f"cannot connect to the {self.flavor} server at {self.info.redacted()}: {exc}. Check that it is "
                "running and that the URL, user and password are right."
            ) from exc

    def _with_admin(self, work: Any) -> Any:
        """Run ``work(admin_conn)`` on one kept admin connection (reconnecting once if it broke).

        A kept connection makes per-test database create+drop a few ms instead of paying a connect.
        """
        with self._lock:
            for attempt in (1, 2):
                if self._admin is None:
                    self._admin = self.admin()
                try:
                    return work(self._admin)
                except Exception:
                    if attempt == 2 or not self.dialect.is_closed(self._admin):
                        raise
                    self._close_admin()

    def _close_admin(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:
                pass
            self._admin = None

    def prepare_template(self) -> None:
        """Create the template new databases are copied from (PostgreSQL); idempotent."""
        if self._template_ready or self.template is not None or self.service == "redis":
            return
        self._template_ready = True
        name = database_name("template")
        self.template = self._with_admin(lambda admin: self.dialect.template_database(admin, name))
        if self.template is not None:
            self.owns_template = True
            self._created.add(self.template)

    def create_database(self, name: str | None = None) -> Database:
        """A new, empty database named ``harness_<random>_<owner>`` (see :mod:`.owner`) unless a name is given."""
        if self.service == "redis":
            raise ProvisionError("Redis has no databases to create; isolate tests with key prefixes.")
        name = name or database_name()
        if not name.startswith(DB_PREFIX):
            raise ProvisionError(f"refusing to create database {name!r}: harness databases must start with {DB_PREFIX!r}.")
        self.prepare_template()
        self._with_admin(lambda admin: self.dialect.create_database(admin, name, self.template))
        self._created.add(name)
        return Database(self, name)

    def drop_database(self, name: str) -> None:
        """Drop a database this handle created; anything else is refused."""
        if name not in self.created:
            raise ProvisionError(
                f"refusing to drop database {name!r}: this harness did not create it "
                f"(it only drops the databases it created, all named {DB_PREFIX}*)."
            )
        self._with_admin(lambda admin: self.dialect.drop_database(admin, name))
        self._created.discard(name)

    @property
    def created(self) -> frozenset[str]:
        return frozenset(self._created)

    def drop_created(self) -> None:
        """Drop what this handle created, template last; used by stop() on servers we do not own."""
        if self.service == "redis":
            return
        for name in sorted(self.created, key=lambda n: n == self.template):
            try:
                self.drop_database(name)
            except ProvisionError:
                pass

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.lifecycle.stop()
        with self._lock:
            self._close_admin()

    def kill(self) -> None:
        """SIGKILL the server (crash); :meth:`restart` brings it back on the same data."""
        self.lifecycle.kill()
        with self._lock:
            self._close_admin()

    def restart(self) -> None:
        self.lifecycle.restart()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def to_json(self) -> dict[str, Any]:
        """What a second process needs to attach to this server (xdist workers)."""
        return {"service": self.service, "flavor": self.flavor, "version": self.version,
                "info": self.info.to_json(), "provisioner": self.provisioner, "template": self.template}



class AttachedLifecycle:
    """A server started by someone else (another process, or a user's DSN): we never stop or kill it."""

    def __init__(self, description: str, on_stop: Any = None) -> None:
        self.description = description
        self._on_stop = on_stop

    def stop(self) -> None:
        if self._on_stop is not None:
            self._on_stop()

    def kill(self) -> None:
        raise ProvisionError(
            f"cannot kill a server the harness did not start ({self.description}); crash faults need a "
            "local server (use the server_factory fixture or --provisioner=local)."
        )

    restart = kill


def attach(data: dict[str, Any]) -> Server:
    """Rebuild a handle from :meth:`Server.to_json` in another process (it will not stop the server)."""
    return Server(
        service=data["service"], flavor=data["flavor"], version=data["version"],
        info=ConnInfo.from_json(data["info"]), provisioner=data["provisioner"],
        lifecycle=AttachedLifecycle(f"shared {data['provisioner']} server"), template=data.get("template"),
    )
