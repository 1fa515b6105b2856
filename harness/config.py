"""Where the harness gets its settings: CLI flags > environment > ``[tool.harness]`` > defaults.

Kept as plain data (:class:`Settings`) so the CLI, the pytest plugin and library users build one the
same way and pass it down; nothing here is global.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

BACKENDS = ("postgres", "mysql")
SERVICES = BACKENDS + ("redis",)
PROVISIONERS = ("auto", "local", "docker", "dsn")

#: environment variables, documented in the README
ENV_BACKENDS = "HARNESS_BACKENDS"
ENV_PROVISIONER = "HARNESS_PROVISIONER"
ENV_DSN = {"postgres": "HARNESS_PG_DSN", "mysql": "HARNESS_MYSQL_DSN", "redis": "HARNESS_REDIS_URL"}
ENV_BINDIR = {"postgres": "HARNESS_PG_BINDIR", "mysql": "HARNESS_MYSQL_BINDIR", "redis": "HARNESS_REDIS_BINDIR"}
ENV_IMAGE = {"postgres": "HARNESS_PG_IMAGE", "mysql": "HARNESS_MYSQL_IMAGE", "redis": "HARNESS_REDIS_IMAGE"}
ENV_PROFILE = "HARNESS_PROFILE"
#: how containers are networked: bridge (published ports), host (shared loopback), auto (host when the
#: engine has no bridge network to publish ports from)
ENV_DOCKER_NETWORK = "HARNESS_DOCKER_NETWORK"
DOCKER_NETWORKS = ("auto", "bridge", "host")
#: the keys [tool.harness] may hold; anything else is a typo, reported with the closest key
TABLE_KEYS = ("backends", "provisioner", "pg_dsn", "mysql_dsn", "redis_url", "fsync", "lock_wait_timeout",
              "deadlock_timeout_ms", "server_user")
_DSN_KEYS = {"pg_dsn": "postgres", "mysql_dsn": "mysql", "redis_url": "redis"}
#: scheme and default port of each service's URL (also what the DSN provisioner accepts)
URL_SCHEMES = {"postgres": ("postgresql", 5432), "mysql": ("mysql", 3306), "redis": ("redis", 6379)}


@dataclass(frozen=True)
class Settings:
    """Everything provisioning needs to know, per service (postgres, mysql, redis)."""

    backends: tuple[str, ...] = BACKENDS
    provisioner: Mapping[str, str] = field(default_factory=lambda: {s: "auto" for s in SERVICES})
    dsn: Mapping[str, str] = field(default_factory=dict)
    bindir: Mapping[str, str] = field(default_factory=dict)
    image: Mapping[str, str] = field(
        default_factory=lambda: {"postgres": "postgres:16", "mysql": "mariadb:11", "redis": "redis:7"}
    )
    fsync: bool = False  # off: durable across a server process crash, not a machine crash
    lock_wait_timeout: int = 50
    deadlock_timeout_ms: int = 1000
    cache_dir: Path | None = None
    server_user: str | None = None
    docker_network: str = "auto"

    def provisioner_for(self, service: str) -> str:
        """The provisioner for one service; a DSN given for it implies ``dsn``."""
        chosen = self.provisioner.get(service, "auto")
        if chosen == "auto" and service in self.dsn:
            return "dsn"
        return chosen


def parse_backends(text: str, source: str) -> tuple[str, ...]:
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(
                f"{source}: unknown backend {name!r}; expected a comma-separated list of {', '.join(BACKENDS)}"
                " (use 'mysql' for the whole MySQL family, MariaDB included)."
            )
    if not names:
        raise ConfigError(f"{source}: no backend given; expected e.g. 'postgres,mysql'.")
    return names


def parse_provisioner(text: str, source: str) -> dict[str, str]:
    """``local`` for all services, or ``postgres=local,mysql=dsn`` per service."""
    result: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        service, sep, value = part.partition("=")
        targets = [service] if sep else list(SERVICES)
        value = value if sep else part
        if value not in PROVISIONERS or any(t not in SERVICES for t in targets):
            raise ConfigError(
                f"{source}: cannot read provisioner {part!r}; expected one of {', '.join(PROVISIONERS)},"
                f" optionally per service as SERVICE=PROVISIONER with SERVICE in {', '.join(SERVICES)}."
            )
        for t in targets:
            result[t] = value
    return result


def _pyproject_table(start: Path) -> tuple[dict[str, Any], Path | None]:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{candidate}: not valid TOML ({exc}); fix the file or remove [tool.harness].") from None
            except OSError as exc:
                raise ConfigError(f"{candidate}: cannot be read ({exc.strerror or exc}).") from None
            tool = data.get("tool", {})
            table = tool.get("harness", {}) if isinstance(tool, dict) else {}
            if not isinstance(table, dict):
                raise ConfigError(f"{candidate}: tool.harness must be a table ([tool.harness]), not "
                                  f"{type(table).__name__}.")
            return table, candidate
    return {}, None


def _check_table(table: Mapping[str, Any], src: str) -> None:
    """Reject unknown keys and values of the wrong type before anything starts."""
    import difflib

    for key, value in table.items():
        if key not in TABLE_KEYS:
            close = difflib.get_close_matches(key, TABLE_KEYS, n=1)
            raise ConfigError(f"{src}: unknown key {key!r}"
                              + (f"; did you mean {close[0]!r}?" if close else f"; keys are: {', '.join(TABLE_KEYS)}."))
        if key == "backends":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            wanted = 'a list of backend names, e.g. ["postgres", "mysql"]'
        elif key == "fsync":
            ok, wanted = isinstance(value, bool), "true or false"
        elif key in ("lock_wait_timeout", "deadlock_timeout_ms"):
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            wanted = "a positive integer"
        else:
            ok, wanted = isinstance(value, str) and value.strip() != "", "a non-empty string"
        if not ok:
            raise ConfigError(f"{src}: {key} must be {wanted}, not {value!r}.")


def check_url(service: str, url: str, source: str) -> None:
    """Fail early, naming where it came from, on a server URL that cannot be parsed."""
    from .dialect.base import ConnInfo

    scheme, port = URL_SCHEMES[service]
    try:
        ConnInfo.parse(url, default_scheme=scheme, default_port=port)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: cannot read the {service} URL ({exc}); expected e.g. "
            f"{scheme}://user:password@127.0.0.1:{port}/{'0' if service == 'redis' else 'dbname'}."
        ) from None


def check_profile(environ: Mapping[str, str]) -> None:
    """HARNESS_PROFILE names one of the exploration profiles (checked before any server starts)."""
    value = environ.get(ENV_PROFILE)
    if value is None:
        return
    from .explore.race import PROFILES

    if value not in PROFILES:
        raise ConfigError(f"{ENV_PROFILE}: unknown exploration profile {value!r}; use one of {', '.join(PROFILES)}.")


def load_settings(
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    project_dir: Path | None = None,
) -> Settings:
    """Merge pyproject, environment and CLI values (later wins) into :class:`Settings`."""
    environ = os.environ if environ is None else environ
    cli = cli or {}
    table, where = _pyproject_table(project_dir or Path.cwd())
    src = f"{where} [tool.harness]"
    _check_table(table, src)
    settings = Settings()
    prov = dict(settings.provisioner)
    dsn: dict[str, str] = {}
    bindir: dict[str, str] = {}
    image = dict(settings.image)
    backends = settings.backends
    extra: dict[str, Any] = {}

    if "backends" in table:
        value = table["backends"]
        backends = parse_backends(",".join(value) if isinstance(value, list) else str(value), src)
    if "provisioner" in table:
        prov.update(parse_provisioner(str(table["provisioner"]), src))
    for key, service in _DSN_KEYS.items():
        if key in table:
            check_url(service, table[key], f"{src} {key}")
            dsn[service] = table[key]
    for key in ("fsync", "lock_wait_timeout", "deadlock_timeout_ms", "server_user"):
        if key in table:
            extra[key] = table[key]

    if environ.get(ENV_BACKENDS):
        backends = parse_backends(environ[ENV_BACKENDS], ENV_BACKENDS)
    if environ.get(ENV_PROVISIONER):
        prov.update(parse_provisioner(environ[ENV_PROVISIONER], ENV_PROVISIONER))
    for service in SERVICES:
        if environ.get(ENV_DSN[service]):
            check_url(service, environ[ENV_DSN[service]], ENV_DSN[service])
            dsn[service] = environ[ENV_DSN[service]]
        if environ.get(ENV_BINDIR[service]):
            bindir[service] = environ[ENV_BINDIR[service]]
        if environ.get(ENV_IMAGE[service]):
            image[service] = environ[ENV_IMAGE[service]]
    if environ.get("HARNESS_CACHE_DIR"):
        extra["cache_dir"] = Path(environ["HARNESS_CACHE_DIR"])
    if environ.get("HARNESS_SERVER_USER"):
        extra["server_user"] = environ["HARNESS_SERVER_USER"]
    if environ.get(ENV_DOCKER_NETWORK):
        if environ[ENV_DOCKER_NETWORK] not in DOCKER_NETWORKS:
            raise ConfigError(f"{ENV_DOCKER_NETWORK}: {environ[ENV_DOCKER_NETWORK]!r} is not one of "
                              f"{', '.join(DOCKER_NETWORKS)} (host: containers share the machine's network and "
                              "bind 127.0.0.1; bridge: published ports; auto: host when the engine cannot publish).")
        extra["docker_network"] = environ[ENV_DOCKER_NETWORK]
    check_profile(environ)

    if cli.get("backends") is not None:
        backends = parse_backends(cli["backends"], "--backend")
    if cli.get("provisioner") is not None:
        prov.update(parse_provisioner(cli["provisioner"], "--provisioner"))
    for key, service in _DSN_KEYS.items():
        if cli.get(key) is not None:
            check_url(service, cli[key], "--" + key.replace("_", "-"))
            dsn[service] = cli[key]
            prov[service] = "dsn"

    return replace(settings, backends=backends, provisioner=prov, dsn=dsn, bindir=bindir, image=image, **extra)
