"""What every benchmark shares: the :class:`Figure` it returns, servers shared by one run, the run's
metadata (commit, date, machine) and the JSON file.

Benchmarks measure only through public API (``harness.explore.Race``, ``harness.provision``, trace
events and results objects), so that a refactoring of the harness's internals cannot silently break
them; ``tests/test_benchmarks.py`` runs them all in quick mode so that a real break fails the suite.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured number; ``baseline`` is the comparison point measured in the same run (or None)."""

    benchmark: str
    name: str
    unit: str
    value: float
    baseline: float | None = None
    baseline_name: str = ""  # what the baseline is ("plain threads", "isolationtester", ...)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline, when both are finite and the baseline is not zero."""
        if self.baseline is None or not self.baseline or not math.isfinite(self.baseline) \
                or not math.isfinite(self.value):
            return None
        return self.value / self.baseline

    def to_json(self) -> dict[str, Any]:
        """NaN (not measurable in this run) is written as null: JSON has no NaN."""
        d = asdict(self) | {"ratio": self.ratio}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Figure":
        value = math.nan if d["value"] is None else float(d["value"])
        return cls(d["benchmark"], d["name"], d["unit"], value, d.get("baseline"),
                   d.get("baseline_name", ""), d.get("note", ""))


@dataclass
class RunInfo:
    """Where and on what a set of figures was measured (written next to them in the JSON file)."""

    commit: str
    date: str
    machine: dict[str, Any]
    command: str
    quick: bool
    figures: list[Figure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "date": self.date, "machine": self.machine, "command": self.command,
                "quick": self.quick, "figures": [f.to_json() for f in self.figures]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunInfo":
        return cls(d.get("commit", "?"), d.get("date", "?"), dict(d.get("machine", {})), d.get("command", ""),
                   bool(d.get("quick", False)), [Figure.from_json(f) for f in d.get("figures", [])])

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> "RunInfo":
        return cls.from_json(json.loads(path.read_text()))


def median(xs: Iterable[float]) -> float:
    """The median, or NaN for no data (a figure that could not be measured stays visible)."""
    data = list(xs)
    return statistics.median(data) if data else math.nan


# -- servers shared by the benchmarks of one run ------------------------------------------------------

_servers: dict[str, Any] = {}


def server(service: str) -> Any:
    """A running local server for ``service``, started on first use and shared by one run."""
    if service not in _servers:
        from harness import load_settings, start_server

        _servers[service] = start_server(service, load_settings())
    return _servers[service]


def stop_servers() -> None:
    while _servers:
        _, srv = _servers.popitem()
        try:
            srv.stop()
        except Exception:  # stopping is best effort: the servers die with this process anyway
            pass


# -- run metadata --------------------------------------------------------------------------------------

def _version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return found.group(1) if found else "unknown"


def _binary(names: list[str], extra_globs: list[str]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    for pattern in extra_globs:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    return None


def machine() -> dict[str, Any]:
    """Cores, Python and server versions (from the binaries the local provisioner would use)."""
    pg = _binary(["postgres"], ["/usr/lib/postgresql/*/bin/postgres"])
    my = _binary(["mariadbd", "mysqld"], ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"])
    rd = _binary(["redis-server"], [])
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "postgres": _version_of([pg, "--version"]) if pg else "absent",
            "mariadb": _version_of([my, "--version"]) if my else "absent",
            "redis": _version_of([rd, "--version"]) if rd else "absent",
            "load_1min_at_start": round(load, 2)}


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        head = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+uncommitted" if dirty else "")


def run_info(quick: bool) -> RunInfo:
    """Taken when the run starts: the code measured is the commit checked out then, and the load is
    the load the benchmarks found (not their own)."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return RunInfo(commit(), now, machine(), " ".join(["python -m benchmarks", *sys.argv[1:]]), quick)


def fmt(x: float | None) -> str:
    """A number for tables: 3 significant digits, '-' for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"
