"""Clean exits: SIGTERM cleans up like Ctrl-C (exit 143), a SIGKILLed xdist controller takes its workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.provision.local import run_root

from .conftest import ROOT, pid_alive, wait_until


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the live children of ``pid``, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid and rest[0] != "Z":
            out.append((int(entry.name), name))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def rundirs_of(pid: int) -> list[Path]:
    return [p for p in run_root().glob(f"harness-run-*-{pid}-*")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_sigterm_stops_the_cli_servers_and_removes_temp_dirs(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text("backends: [postgres]\nsessions:\n  a:\n    steps: {a1: SELECT pg_sleep(120)}\n")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(scenario), "--backend", "postgres"],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the server runs, and a backend of it runs the step (its process title shows the SELECT)
        running: list[int] = []

        def step_runs() -> bool:
            running[:] = [s for s, name in children(proc.pid) if name == "postgres"
                          and any("SELECT" in cmdline(c) for c, _ in children(s))]
            return bool(running) or proc.poll() is not None

        wait_until(step_runs, timeout=90, what="the harness to start PostgreSQL and run the step")
        assert proc.poll() is None, proc.communicate()
        server = running[0]
        assert rundirs_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in err and "terminated (SIGTERM)" in err, err
    assert not pid_alive(server)
    assert rundirs_of(proc.pid) == []


_TINY_TESTS = textwrap.dedent("""
    import os, threading
    from pathlib import Path

    def _park(tag, *pids):
        Path(os.environ["MARKS"], tag).write_text(" ".join(str(p) for p in (os.getpid(), *pids)))
        threading.Event().wait(120)

    def test_shared_server(pg_server):
        _park("shared")

    def test_private_server(server_factory):
        _park("private", server_factory("redis").lifecycle.proc.pid)
""")


def _start_pytest(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "test_tiny.py").write_text(_TINY_TESTS)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--backend", "postgres",
                             "--rootdir", str(tmp_path), *extra, str(tmp_path / "test_tiny.py")],
                            cwd=tmp_path, env={**_env(), "MARKS": str(marks)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, marks


def test_sigterm_runs_the_pytest_plugin_cleanup(tmp_path: Path) -> None:
    proc, marks = _start_pytest(tmp_path, "-k", "shared")
    try:
        wait_until(lambda: (marks / "shared").exists() or proc.poll() is not None, timeout=60,
                   what="the test to start")
        assert proc.poll() is None, proc.communicate()
        servers = [pid for pid, name in children(proc.pid) if name in ("postgres", "redis-server")]
        assert servers and rundirs_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert not any(pid_alive(p) for p in servers)
    assert rundirs_of(proc.pid) == []


def test_sigkilled_xdist_controller_takes_its_workers_and_servers(tmp_path: Path) -> None:
    proc, marks = _start_pytest(tmp_path, "-n", "2")
    try:
        wait_until(lambda: len(list(marks.iterdir())) == 2 or proc.poll() is not None, timeout=90,
                   what="both workers to park in their tests")
        assert proc.poll() is None, proc.communicate()
        workers = [pid for pid, name in children(proc.pid) if name.startswith("python")]
        servers = [pid for pid, name in children(proc.pid) if name in ("postgres", "redis-server")]
        private = [int(p) for p in (marks / "private").read_text().split()[1:]]
        assert len(workers) == 2 and servers and private
        everything = workers + servers + private
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        gone: dict[int, float] = {}

        def all_gone() -> bool:
            gone.update({p: time.monotonic() - killed for p in everything if p not in gone and not pid_alive(p)})
            return len(gone) == len(everything)

        wait_until(all_gone, timeout=5, what=f"workers {workers} and servers {servers + private} to exit "
                                                f"after the controller (gone: {gone})")
        print(f"gone after the SIGKILL: workers {[round(gone[p], 2) for p in workers]}, servers "
              f"{[round(gone[p], 2) for p in servers]}, private {[round(gone[p], 2) for p in private]}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.backends("postgres")
def test_ctrl_c_during_an_exploration_prints_no_hypothesis_seed_hint(race, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C is not a test failure: no "You can reproduce this failure by adding @seed(...)" line."""
    calls = []

    def one(chooser: object) -> object:
        calls.append(chooser)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return race.run_schedule(chooser)  # type: ignore[arg-type]

    for name in ("A", "B"):
        race.actor(name, lambda ctx: [ctx.connect().execute("SELECT 1") for _ in range(3)])
    with pytest.raises(KeyboardInterrupt):
        race._explore_hypothesis(one, 50, "dev", tmp_path / "examples")
    out, err = capsys.readouterr()
    assert len(calls) == 3
    assert "@seed" not in out + err and "reproduce" not in out + err, out + err
