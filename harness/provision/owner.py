"""Who made a harness database: owner pid, host and start time, encoded in the database's name.

On somebody else's server (DSN mode) a run killed by SIGKILL or SIGTERM cannot drop what it created.
The name says who made it -- ``harness_<random>_p<pid>h<host>t<start>`` -- so the next run on the same
host can tell a dead owner from a live one and drop only the dead one's databases, and ``harness
clean`` can list them.  The name is the only record: nothing else is written to the user's server.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

#: every database the harness creates starts with this; nothing else is ever dropped
DB_PREFIX = "harness_"
_OWNER = re.compile(r"_p(\d{1,10})h([0-9a-f]{8})t(\d{1,12})$")


def host_tag() -> str:
    """8 hex digits naming this machine (hostname and machine-id, so two containers differ)."""
    machine = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine = Path(path).read_text().strip()
            break
        except OSError:
            continue
    return hashlib.sha256(f"{socket.gethostname()}/{machine}".encode()).hexdigest()[:8]


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (unix seconds), from /proc; None when unknown (no /proc, gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Owner:
    """The process that created a database."""

    pid: int
    host: str
    started: int

    @classmethod
    def me(cls) -> "Owner":
        pid = os.getpid()
        return cls(pid, host_tag(), start_time(pid) or 0)

    @property
    def tag(self) -> str:
        return f"p{self.pid}h{self.host}t{self.started}"

    def alive(self) -> bool:
        """Whether the owner still runs: on this host, its pid runs and started when it did (a reused
        pid has another start time).  Owners on other hosts count as alive: we cannot tell."""
        from .local import process_alive  # local imports base, which imports this

        if self.host != host_tag():
            return True
        if not process_alive(self.pid):
            return False
        now = start_time(self.pid)
        return now is None or abs(now - self.started) <= 1


def database_name(kind: str = "") -> str:
    """A new database name for this process: ``harness_[<kind>_]<random>_<owner tag>``."""
    middle = f"{kind}_" if kind else ""
    return f"{DB_PREFIX}{middle}{secrets.token_hex(4)}_{Owner.me().tag}"


def owner_of(name: str) -> Owner | None:
    """The owner encoded in a harness database's name; None for other names and older harness names."""
    match = _OWNER.search(name) if name.startswith(DB_PREFIX) else None
    return Owner(int(match[1]), match[2], int(match[3])) if match else None


def stale(names: list[str]) -> list[str]:
    """Of these database names, the harness's whose owner ran on this host and is gone."""
    out = []
    for name in names:
        owner = owner_of(name)
        if owner is not None and not owner.alive():
            out.append(name)
    return out
