"""`harness replay FILE` runs a harness or pytest replay and nothing else, never through a shell.

Every crafted file below would create MARK if its command (or a plugin it names) ran; the marker is
never created and each is refused with one paragraph and exit 2.  The honest replays next to them
do run (their own marker appears), so the refusals are not an accident of a broken runner.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.replay import replay_argv

from .conftest import ROOT, run_harness

ENV = {"PYTHONPATH": str(ROOT)}

CRAFTED: list[Any] = [
    "harness run scenarios/x.yaml; touch MARK",
    "harness run scenarios/x.yaml && touch MARK",
    "harness run $(touch MARK)",
    "harness run `touch MARK`",
    "harness run scenarios/x.yaml --schedule 'A' | sh -c 'touch MARK'",
    ["sh", "-c", "touch MARK"],
    ["python", "-c", "open('MARK', 'w')"],
    ["harness", "report", "results.json", "-o", "MARK"],
    ["harness", "run", "scenarios/x.yaml", "--json", "MARK"],
    ["harness", "run", "--", "-p", "evil", "scenarios/x.yaml"],
    ["harness", "run", "../outside.yaml"],
    ["harness", "run", "/etc/passwd"],
    ["pytest", "-p", "evil", "test_ok.py"],
    ["pytest", "-pevil", "test_ok.py"],
    ["pytest", "test_ok.py", "-p", "evil"],
    ["pytest", "test_ok.py", "--", "-p", "evil"],
    ["pytest", "test_ok.py", "--harness-replay", "-p", "evil"],
    ["pytest", "test_ok.py", "--harness-replay=A", "-o", "addopts=-p evil"],
    ["pytest", "@args.txt"],
    ["pytest", "test_ok.py", "--rootdir", "..", "-c", "evil.ini"],
    ["pytest", "evil.py"],  # outside nothing, but a .py that is no test of this project? see below
    [],
    "",
    "harness run 'unbalanced",
    {"argv": ["sh"]},
    ["harness", "run", 7],
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project dir with a scenario, a test, and an 'evil' plugin that makes MARK when imported."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "x.yaml").write_text("name: x\n")
    (tmp_path / "evil.py").write_text("open('MARK', 'w').close()\n")
    (tmp_path / "args.txt").write_text("-p\nevil\ntest_ok.py\n")
    (tmp_path / "test_ok.py").write_text(
        "def test_ok(request):\n"
        "    open('RAN-' + str(request.config.getoption('harness_replay')), 'w').close()\n")
    (tmp_path.parent / "outside.yaml").write_text("name: outside\n")
    return tmp_path


@pytest.mark.parametrize("replay", CRAFTED, ids=[f"crafted{i}" for i in range(len(CRAFTED))])
def test_crafted_saved_schedules_run_nothing(project: Path, replay: Any) -> None:
    if replay == ["pytest", "evil.py"]:
        (project / "evil.py").rename(project / "evil.txt")  # a .py inside the project is a test file: trusted
        replay = ["pytest", "evil.txt"]
    saved = project / "reports" / "schedules" / "crafted.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"kind": "race", "replay": replay}))
    done = run_harness("replay", str(saved), env=ENV, cwd=project, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "refusing to replay" in done.stderr or "not a saved schedule" in done.stderr, done.stderr
    assert not (project / "MARK").exists()
    assert not list(project.glob("RAN-*"))


@pytest.mark.parametrize("form", ["argv", "old string"])
def test_a_pytest_replay_runs_with_this_interpreter(project: Path, form: str) -> None:
    argv = ["pytest", "test_ok.py::test_ok", "--harness-replay", "A B; touch MARK"]
    saved = project / "saved.json"
    saved.write_text(json.dumps({"kind": "race", "replay": argv if form == "argv" else shlex.join(argv)}))
    done = run_harness("replay", str(saved), env={**ENV, "PATH": "/nonexistent"}, cwd=project, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project / "RAN-A B; touch MARK").exists()  # the schedule reached pytest as one argument
    assert not (project / "MARK").exists()


def test_validation_reads_only_files_inside_the_current_directory(project: Path) -> None:
    saved = project / "saved.json"
    scenario = str(project / "scenarios" / "x.yaml")
    saved.write_text(json.dumps({"replay": ["harness", "run", scenario, "--backend", "postgres", "--schedule", "A B"]}))
    assert replay_argv(saved, project)[:3] == ["harness", "run", scenario]
    (project / "elsewhere").mkdir()
    with pytest.raises(HarnessError, match="outside the current directory"):
        replay_argv(saved, project / "elsewhere")
