"""A Docker engine for the opt-in container tests: the one that answers, or a private one started here.

The private engine changes nothing in the machine's network: no iptables chains, no IP forwarding, no
bridge (so containers cannot publish ports and run with host networking), its data, state and socket in
a temp dir, stopped by its pid when the tests are done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class Engine:
    """An engine that answers; ``proc`` and ``root`` only when this process started it."""

    host: str  # DOCKER_HOST for it
    version: str
    proc: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    clients: list[Any] = field(default_factory=list)

    def client(self) -> Any:
        import docker

        made = docker.DockerClient(base_url=self.host, timeout=600)
        self.clients.append(made)
        return made

    def stop(self) -> None:
        """Stop the engine if we started it (SIGTERM to its pid; SIGKILL if it does not exit in time)."""
        for made in self.clients:
            made.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        if self.root is not None:
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Unmount what the stopped engine left mounted in its dir (it keeps a reference to its network
    namespace at exec/netns/default); deepest first.  Only mounts inside our own temp dir."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def _ping(host: str) -> str | None:
    """The engine's version if one answers at ``host``, else None."""
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=3)
    except Exception:  # no socket, refused, permission: no engine there
        return None
    try:
        return str(client.version().get("Version", "?"))
    except Exception:
        return None
    finally:
        client.close()


def answering() -> Engine | None:
    """The engine DOCKER_HOST (or the default socket) points at, if it answers."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    version = _ping(host)
    return Engine(host, version) if version else None


def start_private() -> tuple[Engine | None, str]:
    """Start ``dockerd`` with no networking of its own in a temp dir; (engine, "") or (None, why not)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return None, "dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return None, "starting dockerd needs root"
    root = Path(tempfile.mkdtemp(prefix="harness-dockerd-"))
    sock = root / "docker.sock"
    argv = [dockerd, "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none",
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "-H", f"unix://{sock}",
            "--pidfile", str(root / "dockerd.pid")]
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    engine = Engine(f"unix://{sock}", "?", proc, root)
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.05
    while time.monotonic() < deadline and proc.poll() is None:
        version = _ping(engine.host) if sock.exists() else None
        if version:
            engine.version = version
            return engine, ""
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    tail = (root / "dockerd.log").read_text(errors="replace")[-600:]
    engine.stop()
    return None, f"dockerd did not answer within {START_TIMEOUT:.0f}s: {tail}"
