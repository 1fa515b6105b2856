"""The processes behind local servers: the unprivileged account they run as, a spawner thread that forks
them with PR_SET_PDEATHSIG (so they die with the harness, even on SIGKILL), ports, run dirs and the sweep
of dead runs' leftovers (see :mod:`.local`)."""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..errors import ProvisionError

_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------------------------------------- users

@dataclass(frozen=True)
class RunAs:
    """The unprivileged account servers run under when the harness runs as root."""

    name: str
    uid: int
    gid: int


def run_as(settings: Settings) -> RunAs | None:
    if os.geteuid() != 0:
        return None
    name = settings.server_user or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ProvisionError(
            f"running as root, the harness starts servers as the unprivileged user {name!r}, which does not "
            "exist. Create it or name another with HARNESS_SERVER_USER (initdb and mariadbd refuse to run as root)."
        ) from None
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def _chown_tree(path: Path, who: RunAs | None) -> None:
    if who is None:
        return
    os.chown(path, who.uid, who.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), who.uid, who.gid)


# -------------------------------------------------------------------------------------------- process

def _pdeathsig_preexec(parent: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:  # runs in the child after setuid (which would clear the signal)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return setup


class _Spawner:
    """Forks every server from one long-lived thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process: a server
    started from a short-lived thread (an actor, a worker) would die with it.  This thread lives as
    long as the process, so servers die exactly when the process does.  It is the one piece of
    process-wide state here, because the kernel ties the signal to a thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]]] | None = None

    def run(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._loop, args=(self._jobs,), daemon=True,
                                 name="harness-server-spawner").start()
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._jobs.put((fn, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]]]) -> None:
        while True:
            fn, reply = jobs.get()
            try:
                reply.put((True, fn()))
            except BaseException as exc:  # handed back to the caller's thread
                reply.put((False, exc))


_SPAWNER = _Spawner()


def _spawn(cmd: list[str], who: RunAs | None, log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = _SPAWNER.run(lambda: _popen(cmd, who, log, cwd, env))
    return proc


def _popen(cmd: list[str], who: RunAs | None, log: Path, cwd: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            user=who.uid if who else None, group=who.gid if who else None, extra_groups=[] if who else None,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops servers in order
            preexec_fn=_pdeathsig_preexec(os.getpid()), env=env,
        )


def _run(cmd: list[str], who: RunAs | None, log: Path, cwd: Path, what: str, timeout: float = 120) -> None:
    with open(log, "ab") as out:
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                  user=who.uid if who else None, group=who.gid if who else None,
                                  extra_groups=[] if who else None, timeout=timeout,
                                  env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"{what} did not finish within {timeout:.0f}s; its output is in {log}.") from None
    if done.returncode != 0:
        raise ProvisionError(f"{what} failed (exit {done.returncode}): {_tail(log)}")


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the start retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether a process runs (a zombie -- exited, not yet reaped -- does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) said it exists


def run_root() -> Path:
    """Where run dirs (data included) go: tmpfs when there is one.

    Throwaway servers need no durability across machine crashes, and on a VM disk every file create
    costs about 1 ms (measured: 300 small files 315 ms on ext4 vs 4.5 ms on /dev/shm), which made
    PostgreSQL's per-test CREATE DATABASE ~270 ms instead of a few ms.
    """
    chosen = os.environ.get("HARNESS_RUN_DIR")
    if chosen:
        return Path(chosen)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def sweep_stale_rundirs() -> int:
    """Remove temp dirs left by harness processes that were SIGKILLed (their servers died with them)."""
    removed = 0
    if not sys.platform.startswith("linux"):
        return removed
    for path in glob.glob(os.path.join(run_root(), "harness-run-*-*-*")):
        try:
            owner = int(Path(path).name.split("-")[3])
        except (IndexError, ValueError):
            continue
        if not process_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
