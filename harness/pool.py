"""The servers of one test run, started lazily once and shared (the pytest plugin and CLI use it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .config import Settings
from .errors import ProvisionError
from .provision import Server, attach, start_server
from .provision.local import start_local


@dataclass
class ServerPool:
    """At most one server per service, started on first use, or attached from another process.

    ``attached`` holds what the xdist controller started: either a server's :meth:`Server.to_json`
    or ``{"error": message}`` if it could not start (then every use fails with that message).
    """

    settings: Settings
    attached: dict[str, dict[str, Any]] = field(default_factory=dict)
    _servers: dict[str, Server] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)

    def get(self, service: str) -> Server:
        if service in self._servers:
            return self._servers[service]
        if service in self._errors:
            raise ProvisionError(self._errors[service])
        data = self.attached.get(service)
        try:
            if data is not None:
                if "error" in data:
                    raise ProvisionError(data["error"])
                server = attach(data)
            else:
                server = start_server(service, self.settings)
                server.prepare_template()
        except ProvisionError as exc:
            self._errors[service] = str(exc)
            raise
        self._servers[service] = server
        return server

    def private(self, service: str) -> Server:
        """A local server of the caller's own (it stops it), fsync on: for faults that crash servers."""
        return start_local(service, replace(self.settings, fsync=True))

    def export(self, services: list[str]) -> dict[str, dict[str, Any]]:
        """Start ``services`` now and describe them for other processes (errors included)."""
        out: dict[str, dict[str, Any]] = {}
        for service in services:
            try:
                out[service] = self.get(service).to_json()
            except ProvisionError as exc:
                out[service] = {"error": str(exc)}
        return out

    def close(self) -> None:
        """Stop servers we started; on attached ones drop the databases we created."""
        for server in self._servers.values():
            if server.provisioner != "dsn" and server.service in self.attached:
                server.drop_created()
            server.stop()
        self._servers.clear()
