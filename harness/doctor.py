"""`harness doctor` and `harness setup`: what servers this machine can give, and installing them."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from .config import SERVICES, Settings
from .errors import ProvisionError
from .provision import docker_available, local_available, start_server
from .provision.binaries import INSTALL_HINT
from .provision.local import start_local
from .redact import mask_url, sanitize


@dataclass
class ServiceReport:
    service: str
    local: tuple[bool, str]
    docker: tuple[bool, str]
    dsn: str | None
    chosen: str
    works: bool = False
    detail: str = ""
    cold_s: float | None = None
    warm_s: float | None = None


def _timed(start: Callable[[], object]) -> float:
    t = time.perf_counter()
    server = start()
    elapsed = time.perf_counter() - t
    server.stop()  # type: ignore[attr-defined]
    return elapsed


def diagnose(settings: Settings, *, measure: bool = True, warm_runs: int = 3) -> list[ServiceReport]:
    docker = docker_available()
    reports = []
    for service in SERVICES:
        rep = ServiceReport(service, local_available(service, settings), docker, settings.dsn.get(service),
                            settings.provisioner_for(service))
        try:
            if measure and rep.chosen in ("auto", "local") and rep.local[0]:
                if service != "redis":
                    rep.cold_s = _timed(lambda: start_local(service, settings, use_cache=False))
                start_local(service, settings).stop()  # make sure the cache is filled
                rep.warm_s = statistics.median(_timed(lambda: start_local(service, settings)) for _ in range(warm_runs))
            server = start_server(service, settings)
            rep.detail = server.describe()
            server.stop()
            rep.works = True
        except ProvisionError as exc:
            rep.detail = str(exc)
        reports.append(rep)
    return reports


def format_report(reports: list[ServiceReport], settings: Settings) -> tuple[str, bool]:
    lines = []
    needed = set(settings.backends)
    ok = True
    for rep in reports:
        mark = "ok " if rep.works else "-- "
        lines.append(f"{mark}{rep.service}  (provisioner: {rep.chosen})")
        lines.append(f"     local : {'yes, ' if rep.local[0] else 'no: '}{rep.local[1]}")
        lines.append(f"     docker: {'yes, ' if rep.docker[0] else 'no: '}{rep.docker[1]}")
        lines.append(f"     dsn   : {mask_url(rep.dsn) if rep.dsn else 'none given'}")
        if rep.cold_s is not None or rep.warm_s is not None:
            cold = f"cold {rep.cold_s:.2f}s, " if rep.cold_s is not None else ""
            lines.append(f"     start : {cold}warm {rep.warm_s:.2f}s (median)")
        lines.append(f"     {'running: ' if rep.works else 'problem: '}{sanitize(rep.detail)}")
        if rep.service in needed and not rep.works:
            ok = False
    lines.append("")
    lines.append(f"default backends ({', '.join(settings.backends)}): " + ("all work" if ok else "NOT all work"))
    return "\n".join(lines), ok


def install_missing(settings: Settings, *, dry_run: bool = False) -> str:
    """Install missing server packages with apt when we are root; otherwise say what to install."""
    missing = [s for s in SERVICES if settings.provisioner_for(s) in ("auto", "local")
               and not local_available(s, settings)[0]]
    if not missing:
        return "all server binaries are installed"
    debs = [INSTALL_HINT[s][0] for s in missing]
    if shutil.which("apt-get") and os.geteuid() == 0 and not dry_run:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *debs]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise ProvisionError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
                                     f"{done.stderr.strip()[-400:]}")
        return "installed " + " ".join(debs)
    fedora = " ".join(INSTALL_HINT[s][1] for s in missing)
    brew = " ".join(INSTALL_HINT[s][2] for s in missing)
    raise ProvisionError(
        f"missing server binaries for {', '.join(missing)}. Install them — Debian/Ubuntu: "
        f"`sudo apt-get install -y {' '.join(debs)}`; Fedora: `sudo dnf install -y {fedora}`; macOS: "
        f"`brew install {brew}` — or run with Docker (--provisioner=docker), or point at existing servers "
        "with --pg-dsn/--mysql-dsn/--redis-url."
    )
