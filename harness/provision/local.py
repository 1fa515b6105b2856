"""Local servers from the machine's own binaries: the default provisioner.

Each server is a direct child process in a fresh temp dir, on a random loopback port, running as an
unprivileged user when we are root (initdb and mariadbd refuse root).  It gets PR_SET_PDEATHSIG so
it dies with the process that started it, even on SIGKILL; stale temp dirs of dead owners are swept
on the next start.  Initialised data directories are cached (keyed by binary version and init
arguments) so a warm start is a copy plus a boot instead of initdb.

PDEATHSIG fires when the *thread* that forked the server exits, so every server is forked from one
long-lived spawner thread (:class:`_Spawner`), whichever thread asked for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

from ..config import Settings
from ..dialect import ConnInfo, dialect_for
from ..errors import ProvisionError
from . import auth
from .base import Server
from .binaries import FINDERS, Binaries
from .processes import (
    RunAs,
    _chown_tree,
    _run,
    _spawn,
    _tail,
    free_port,
    process_alive,
    run_as,
    run_root,
    sweep_stale_rundirs,
)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# ------------------------------------------------------------------------------------------ flavors

@dataclass(frozen=True)
class Flavor:
    """What differs between local PostgreSQL, MariaDB/MySQL and Redis processes."""

    service: str
    stop_signal: int
    init: Callable[[Binaries, Path, RunAs | None, Path], None] | None
    command: Callable[[Binaries, Path, Path, int, Settings], list[str]]
    option: Callable[[str, str], list[str]]  # one extra server setting as command-line arguments
    conninfo: Callable[[int, str], ConnInfo]  # (port, this run's password)
    ready: Callable[[ConnInfo, Path], None]  # (info, run dir): raises until the server answers
    bind_error: tuple[str, ...]
    init_args: tuple[str, ...] = ()
    #: writes this run's credentials into the private run dir before the first start (see auth.py)
    secure: Callable[[Binaries, Path, str, tuple[int, int] | None], object] | None = None
    #: sets this run's password once the server answers (PostgreSQL: no init file to do it earlier)
    set_password: Callable[[Path, ConnInfo], None] | None = None


_PG_INIT_ARGS = ("-U", "postgres", *auth.PG_AUTH_ARGS, "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")


def _pg_init(b: Binaries, data: Path, who: RunAs | None, log: Path) -> None:
    _run([str(b.init), "-D", str(data), *_PG_INIT_ARGS], who, log, data.parent, "initdb")


def _pg_command(b: Binaries, data: Path, run: Path, port: int, s: Settings) -> list[str]:
    sync = "on" if s.fsync else "off"
    # fsync off still survives a *process* crash (what kill() does): commits reach the OS before they
    # are acknowledged.  synchronous_commit must stay on, or a SIGKILL loses acknowledged commits.
    conf = {
        "listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(run),
        "fsync": sync, "full_page_writes": sync, "synchronous_commit": "on",
        "max_prepared_transactions": "10", "max_connections": "300",
        "deadlock_timeout": f"{s.deadlock_timeout_ms}ms", "lc_messages": "C", "log_min_messages": "warning",
        "shared_buffers": "64MB",
        # initdb copies the machine's zone (Etc/UTC here); apps check for plain UTC (Kinto warns otherwise)
        "timezone": "UTC", "log_timezone": "UTC",
        # segments in the data dir, not /dev/shm: a SIGKILLed server (crash fault) leaves none behind
        "dynamic_shared_memory_type": "mmap",
    }
    return [str(b.server), "-D", str(data)] + [a for k, v in conf.items() for a in ("-c", f"{k}={v}")]


def _pg_ready(info: ConnInfo, run: Path) -> None:
    auth.pg_ready(run, info.port, info.user)


_MARIADB_INIT_ARGS = ("--innodb-log-file-size=8M", "--innodb-data-file-path=ibdata1:4M:autoextend")


def _mysql_init(b: Binaries, data: Path, who: RunAs | None, log: Path) -> None:
    if b.flavor == "mariadb":
        cmd = [str(b.init), "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
               "--skip-test-db", "--skip-name-resolve", *_MARIADB_INIT_ARGS]
    else:  # Oracle MySQL: the server initialises itself
        cmd = [str(b.server), "--no-defaults", "--initialize-insecure", f"--datadir={data}"]
    _run(cmd, who, log, data.parent, f"{b.init or b.server} (initialising {b.flavor})")


def _mysql_command(b: Binaries, data: Path, run: Path, port: int, s: Settings) -> list[str]:
    args = [
        str(b.server), "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
        f"--socket={run / 'mysqld.sock'}", f"--pid-file={run / 'mysqld.pid'}", f"--tmpdir={run}",
        "--skip-name-resolve", "--performance-schema=ON", "--innodb-status-output-locks=ON",
        "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON",
        f"--innodb-lock-wait-timeout={s.lock_wait_timeout}", "--max-connections=300",
        # 2 = write the redo log to the OS at each commit (survives a process crash) without fsync
        f"--innodb-flush-log-at-trx-commit={1 if s.fsync else 2}", f"--sync-binlog={1 if s.fsync else 0}",
        f"--innodb-doublewrite={1 if s.fsync else 0}", "--innodb-buffer-pool-size=64M",
        "--character-set-server=utf8mb4", "--skip-log-bin", "--loose-mysqlx=OFF",
    ]
    if b.flavor == "mariadb":
        args += list(_MARIADB_INIT_ARGS)
    if (run / "auth.sql").exists():
        args.append(f"--init-file={run / 'auth.sql'}")
    return args


def _mysql_ready(info: ConnInfo, run: Path) -> None:
    dialect_for("mysql").connect(info, connect_timeout=2).close()


def _redis_command(b: Binaries, data: Path, run: Path, port: int, s: Settings) -> list[str]:
    conf = [str(run / "redis.conf")] if (run / "redis.conf").exists() else []  # must come first
    return [str(b.server), *conf, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(run), "--unixsocket", str(run / "redis.sock"), "--daemonize", "no"]


def _redis_ready(info: ConnInfo, run: Path) -> None:
    redis_ping(info)


def redis_ping(info: ConnInfo) -> None:
    """Raises until the Redis server at ``info`` answers (the local and Docker provisioners' readiness)."""
    import redis

    client = redis.Redis(host=info.host, port=info.port, password=info.password or None,
                         socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


FLAVORS: dict[str, Flavor] = {
    "postgres": Flavor(
        "postgres", signal.SIGINT, _pg_init, _pg_command, lambda k, v: ["-c", f"{k}={v}"],
        lambda port, pw: ConnInfo("postgresql", "127.0.0.1", port, "postgres", pw, "postgres"),
        _pg_ready, ("could not bind", "Address already in use"), _PG_INIT_ARGS,
        set_password=lambda run, info: auth.pg_set_password(run, info.port, info.user, info.password),
    ),
    "mysql": Flavor(
        "mysql", signal.SIGTERM, _mysql_init, _mysql_command, lambda k, v: [f"--{k.replace('_', '-')}={v}"],
        lambda port, pw: ConnInfo("mysql", "127.0.0.1", port, "root", pw, ""),
        _mysql_ready, ("Address already in use", "Can't start server: Bind"), _MARIADB_INIT_ARGS,
        secure=lambda b, run, pw, owner: auth.mysql_init_file(run, pw, b.flavor, owner),
    ),
    "redis": Flavor(
        "redis", signal.SIGTERM, None, _redis_command, lambda k, v: [f"--{k}", v],
        lambda port, pw: ConnInfo("redis", "127.0.0.1", port, "", pw, "0"),
        _redis_ready, ("Address already in use",),
        secure=lambda b, run, pw, owner: auth.redis_config(run, pw, owner),
    ),
}


# ---------------------------------------------------------------------------------------- data cache

def cache_root(settings: Settings) -> Path:
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "race-harness"


def _cached_datadir(flavor: Flavor, b: Binaries, settings: Settings, who: RunAs | None) -> Path:
    """The initialised data directory for these binaries, made once (under a file lock) and reused."""
    key = hashlib.sha256(json.dumps([b.key, flavor.init_args, who.name if who else None]).encode()).hexdigest()[:16]
    root = cache_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    entry = root / f"{b.flavor}-{b.version}-{key}"
    if (entry / "ready").exists():
        return entry / "data"
    with FileLock(str(entry) + ".lock", timeout=300):
        if (entry / "ready").exists():
            return entry / "data"
        shutil.rmtree(entry, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"harness-run-init-{os.getpid()}-", dir=run_root()))
        try:
            _chown_tree(work, who)
            assert flavor.init is not None
            flavor.init(b, work / "data", who, work / "init.log")
            staging = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=root))
            shutil.copytree(work / "data", staging / "data", symlinks=True)
            (staging / "ready").write_text(json.dumps({"binary": str(b.server), "version": b.version}))
            os.rename(staging, entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return entry / "data"


# ------------------------------------------------------------------------------------------ lifecycle

class LocalProcess:
    """A server process we started: stop (clean), kill (SIGKILL the whole process group), restart."""

    def __init__(self, flavor: Flavor, binaries: Binaries, settings: Settings, who: RunAs | None,
                 rundir: Path, datadir: Path, options: dict[str, str] | None = None) -> None:
        self.flavor, self.binaries, self.settings, self.who = flavor, binaries, settings, who
        self.options = dict(options or {})
        self.rundir, self.datadir = rundir, datadir
        self.port = free_port()
        self.password = auth.new_password()  # this run's; in the private run dir only (auth.py)
        self._password_set = flavor.set_password is None
        if flavor.secure is not None:
            flavor.secure(binaries, rundir, self.password, (who.uid, who.gid) if who else None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = rundir / "server.log"
        self.description = f"local {binaries.server}, data in {datadir}"
        self._finalizer = weakref.finalize(self, _cleanup, self.rundir, [None], flavor.stop_signal)

    @property
    def info(self) -> ConnInfo:
        return self.flavor.conninfo(self.port, self.password)

    def start(self, *, new_port_on_conflict: bool = True) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for attempt in range(4):
            command = self.flavor.command(self.binaries, self.datadir, self.rundir, self.port, self.settings)
            command += [a for k, v in self.options.items() for a in self.flavor.option(k, str(v))]
            self.proc = _spawn(command, self.who, self.log, self.rundir)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _cleanup, self.rundir, [self.proc], self.flavor.stop_signal)
            outcome = self._wait_ready(deadline)
            if outcome == "ready":
                if not self._password_set and self.flavor.set_password is not None:
                    self.flavor.set_password(self.rundir, self.info)
                    self._password_set = True
                return
            log = _tail(self.log, 12).replace(self.password, "***")  # a failed init file may echo it
            if outcome == "exited" and any(m in log for m in self.flavor.bind_error) and new_port_on_conflict:
                self.port = free_port()
                continue
            if outcome == "exited" and "shared memory" in log and attempt < 3:
                continue  # a crashed postmaster's children are still detaching; try again
            self._terminate(signal.SIGKILL)
            reason = "exited" if outcome == "exited" else f"did not accept connections within {START_TIMEOUT:.0f}s"
            raise ProvisionError(
                f"the local {self.binaries.flavor} server ({self.binaries.server}) {reason}. Last log lines: {log} "
                f"(full log: {self.log})."
            )
        raise ProvisionError(f"could not find a free port for {self.binaries.flavor} after 4 tries.")

    def _wait_ready(self, deadline: float) -> str:
        delay = 0.005
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return "exited"
            try:
                self.flavor.ready(self.info, self.rundir)
                return "ready"
            except Exception:  # not accepting connections yet; bounded back-off polling
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
        return "timeout"

    def _terminate(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        self._terminate(self.flavor.stop_signal)
        self._finalizer()  # removes the run dir (data included)

    def kill(self) -> None:
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        self._terminate(self.flavor.stop_signal)
        self.start(new_port_on_conflict=False)


def _cleanup(rundir: Path, procs: list[subprocess.Popen[bytes] | None], sig: int) -> None:
    """Stop a still-running server and remove its temp dir (also runs at interpreter exit)."""
    proc = procs[0]
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=STOP_TIMEOUT)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    shutil.rmtree(rundir, ignore_errors=True)


def start_local(service: str, settings: Settings, *, use_cache: bool = True,
                options: dict[str, str] | None = None) -> Server:
    """Start a throwaway local server of one service (``postgres``, ``mysql`` or ``redis``).

    ``options``: extra server settings, e.g. ``{"synchronous_commit": "off"}`` (PostgreSQL ``-c``) or
    ``{"innodb_flush_log_at_trx_commit": "0"}`` (MariaDB ``--innodb-flush-log-at-trx-commit``).
    """
    binaries = FINDERS[service](settings.bindir.get(service))
    flavor = FLAVORS[service]
    who = run_as(settings)
    sweep_stale_rundirs()
    rundir = Path(tempfile.mkdtemp(prefix=f"harness-run-{service}-{os.getpid()}-", dir=run_root()))
    try:
        _chown_tree(rundir, who)
        datadir = rundir / "data"
        if flavor.init is not None:
            if use_cache:
                shutil.copytree(_cached_datadir(flavor, binaries, settings, who), datadir, symlinks=True)
            else:
                flavor.init(binaries, datadir, who, rundir / "init.log")
            _chown_tree(datadir, who)
        else:
            datadir.mkdir()
            _chown_tree(datadir, who)
        process = LocalProcess(flavor, binaries, settings, who, rundir, datadir, options)
        process.start()
    except BaseException:
        shutil.rmtree(rundir, ignore_errors=True)
        raise
    info = process.info
    flavor_name, version = binaries.flavor, binaries.version
    if service != "redis":
        with dialect_for(service).connect(info) as conn:
            flavor_name, version = dialect_for(service).server_version(conn)
    return Server(service=service, flavor=flavor_name, version=version, info=info, provisioner="local",
                  lifecycle=process)


def local_available(service: str, settings: Settings) -> tuple[bool, str]:
    """Whether local binaries exist for a service, and the binary path or the reason."""
    try:
        b = FINDERS[service](settings.bindir.get(service))
    except ProvisionError as exc:
        return False, str(exc)
    return True, f"{b.server} ({b.flavor} {b.version})"


__all__ = ["LocalProcess", "free_port", "local_available", "process_alive", "redis_ping", "run_root", "start_local",
           "sweep_stale_rundirs"]
