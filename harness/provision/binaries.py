"""Finding server binaries, and the install hint when they are missing."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProvisionError

INSTALL_HINT = {
    "postgres": ("postgresql", "postgresql-server", "postgresql@16"),
    "mysql": ("mariadb-server", "mariadb-server", "mariadb"),
    "redis": ("redis-server", "redis", "redis"),
}


def install_hint(service: str) -> str:
    deb, fedora, brew = INSTALL_HINT[service]
    return (
        f"Install it (Debian/Ubuntu: `apt-get install -y {deb}`; Fedora: `dnf install -y {fedora}`; "
        f"macOS: `brew install {brew}`), or `harness setup` to install all servers as root with apt, "
        f"or use Docker with --provisioner=docker, or an existing server with "
        f"{ {'postgres': '--pg-dsn', 'mysql': '--mysql-dsn', 'redis': '--redis-url'}[service] }."
    )


@dataclass(frozen=True)
class Binaries:
    """The programs a local server of one flavor needs, and what they say their version is."""

    flavor: str
    version: str
    server: Path
    init: Path | None = None  # initdb / mariadb-install-db / (mysqld --initialize-insecure: None)

    @property
    def key(self) -> str:
        return f"{self.flavor}-{self.version}-{self.server}"


def _version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"{binary} could not be run to ask its version ({exc}).") from exc
    return out.strip()


def _candidates(env_dir: str | None, names: tuple[str, ...], extra_globs: tuple[str, ...]) -> list[Path]:
    """Directories to look in, most specific first."""
    dirs: list[str] = []
    if env_dir:
        return [Path(env_dir)]
    dirs.extend(os.environ.get("PATH", "").split(os.pathsep))
    for pattern in extra_globs:
        # newest version first for versioned layouts such as /usr/lib/postgresql/15/bin
        dirs.extend(sorted(glob.glob(pattern), key=_natural_key, reverse=True))
    seen: list[Path] = []
    for d in dirs:
        if d and Path(d) not in seen:
            seen.append(Path(d))
    return seen


def _natural_key(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _find(dirs: list[Path], name: str) -> Path | None:
    for d in dirs:
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def find_postgres(bindir: str | None = None) -> Binaries:
    dirs = _candidates(bindir, ("postgres",), ())
    if not bindir:
        pg_config = shutil.which("pg_config")
        if pg_config:
            try:
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
                if out:
                    dirs.insert(0, Path(out))
            except (OSError, subprocess.TimeoutExpired):
                pass
        dirs += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_natural_key, reverse=True)]
        dirs += [Path(p) for p in ("/usr/local/pgsql/bin", "/usr/pgsql-16/bin", "/usr/pgsql-15/bin")]
        dirs += [Path(p) for p in sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin")
                                        + glob.glob("/usr/local/opt/postgresql@*/bin"), key=_natural_key, reverse=True)]
    # initdb and postgres must come from the same directory (a client-only pg_config bindir has neither)
    for d in dirs:
        server, init = d / "postgres", d / "initdb"
        if server.is_file() and init.is_file() and os.access(server, os.X_OK):
            match = re.search(r"(\d+(?:\.\d+)?)", _version(server))
            return Binaries("postgres", match.group(1) if match else "?", server, init)
    where = f"in {bindir} (HARNESS_PG_BINDIR)" if bindir else "on PATH, in `pg_config --bindir` or /usr/lib/postgresql/*/bin"
    raise ProvisionError(f"PostgreSQL server binaries (postgres and initdb) were not found {where}. "
                         + install_hint("postgres"))


def find_mysql(bindir: str | None = None) -> Binaries:
    dirs = _candidates(bindir, (), ())
    if not bindir:
        dirs += [Path(p) for p in ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin",
                                   "/opt/homebrew/opt/mariadb/bin", "/usr/local/opt/mariadb/bin",
                                   "/opt/homebrew/opt/mysql/bin", "/usr/local/opt/mysql/bin")]
    bin_dirs = dirs + ([Path(bindir).parent / "bin", Path(bindir).parent / "scripts"] if bindir else [])
    server = _find(dirs, "mariadbd") or _find(dirs, "mysqld")
    if server is not None:
        text = _version(server)
        match = re.search(r"Ver (\d+\.\d+\.\d+)", text)
        version = match.group(1) if match else "?"
        if "mariadb" in text.lower():
            init = _find([server.parent, *bin_dirs], "mariadb-install-db") or _find(
                [server.parent, *bin_dirs], "mysql_install_db")
            if init is None:
                raise ProvisionError(f"found {server} (MariaDB) but not mariadb-install-db beside it or on PATH. "
                                     + install_hint("mysql"))
            return Binaries("mariadb", version, server, init)
        return Binaries("mysql", version, server, None)
    where = f"in {bindir} (HARNESS_MYSQL_BINDIR)" if bindir else "on PATH or in /usr/sbin, /usr/libexec"
    raise ProvisionError(f"No MySQL-family server binary (mariadbd or mysqld) was found {where}. "
                         + install_hint("mysql"))


def find_redis(bindir: str | None = None) -> Binaries:
    dirs = _candidates(bindir, (), ())
    if not bindir:
        dirs += [Path(p) for p in ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")]
    server = _find(dirs, "redis-server")
    if server is None:
        where = f"in {bindir} (HARNESS_REDIS_BINDIR)" if bindir else "on PATH"
        raise ProvisionError(f"redis-server was not found {where}. " + install_hint("redis"))
    match = re.search(r"v=(\d+\.\d+\.\d+)", _version(server))
    return Binaries("redis", match.group(1) if match else "?", server, None)


FINDERS = {"postgres": find_postgres, "mysql": find_mysql, "redis": find_redis}
