"""`harness doctor` and `harness setup`: what servers this machine can give, and installing them."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
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
    if _can_apt() and not dry_run:
        _apt_install(debs)
        return "installed " + " ".join(debs)
    fedora = " ".join(INSTALL_HINT[s][1] for s in missing)
    brew = " ".join(INSTALL_HINT[s][2] for s in missing)
    raise ProvisionError(
        f"missing server binaries for {', '.join(missing)}. Install them — Debian/Ubuntu: "
        f"`sudo apt-get install -y {' '.join(debs)}`; Fedora: `sudo dnf install -y {fedora}`; macOS: "
        f"`brew install {brew}` — or run with Docker (--provisioner=docker), or point at existing servers "
        "with --pg-dsn/--mysql-dsn/--redis-url."
    )


#: the browser the report tests drive with Playwright: Debian's, so no browser download is needed
CHROMIUM = Path("/usr/bin/chromium")


def install_test_tools(*, dry_run: bool = False, chromium: Path = CHROMIUM,
                       have_playwright: bool | None = None) -> str:
    """Install what the ``test`` extra needs beyond pip (Debian's chromium), so ``pytest`` passes after setup.

    Only when the extra is installed (Playwright importable): a plain user install needs no browser.
    Installs with apt as root; otherwise the message is the exact command to run.
    """
    if have_playwright is None:
        have_playwright = importlib.util.find_spec("playwright") is not None
    if not have_playwright:
        return "test tools: none needed (the test extra is not installed)"
    if chromium.exists():
        return f"test tools: chromium is installed ({chromium})"
    if _can_apt() and not dry_run:
        _apt_install(["chromium"])
        return f"installed chromium ({chromium}, for the report tests)"
    return (f"test tools: {chromium} is missing and the report tests need it; install it with "
            "`sudo apt-get install -y chromium` (Debian/Ubuntu)")


def _can_apt() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


@functools.cache
def _apt_update() -> None:
    _apt(["apt-get", "update", "-qq"])


def _apt_install(debs: list[str]) -> None:
    _apt_update()
    _apt(["apt-get", "install", "-y", "-qq", *debs])


def _apt(cmd: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ProvisionError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")
