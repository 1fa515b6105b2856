"""Data a user is handed never becomes code or markup: results files, specs, YAML tags, terminal text.

(A scenario file naming Python callables with ``call:`` *is* code, trusted like a test file; that is
documented, not tested here.)
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.report.text import print_outcomes
from harness.results import RunResults
from harness.scenario.yaml_loader import load_file

from .conftest import ROOT, run_harness
from .test_report import _open, browser  # noqa: F401  (the real-Chromium fixture)

MARK = "MARK"
HOSTILE = [
    "</script><script>document.title='pwned';open('MARK')</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "{{ 7*7 }}{% if true %}jinja{% endif %}",
    "\"'><svg onload=alert(1)>",
    "\x1b[2J\x1b]0;retitled\x07\x9b31m",
    "__import__('evil').boom() evil:boom",
]


def _h(i: int) -> str:
    return HOSTILE[i % len(HOSTILE)] + f" #{i}"


def hostile_results() -> dict[str, Any]:
    """A results file with a hostile string in every text field the report or terminal shows."""
    names = [_h(i) for i in range(6)]
    events = [
        {"t": 0.0, "kind": "launch", "session": names[0], "step": names[1]},
        {"t": 0.001, "kind": "blocked", "session": names[0], "step": names[1], "sql": _h(7),
         "waits": [{"waiter": names[0], "holder": names[2], "lock": _h(8), "detail": _h(9)}],
         "detail": {"held_by_step": _h(10)}},
        {"t": 0.002, "kind": "complete", "session": names[2], "step": names[3], "sql": _h(11),
         "result": {"results": [{"columns": [_h(12)], "rows": [[_h(13), None]], "command": _h(14)}]}},
        {"t": 0.003, "kind": "complete", "session": names[0], "step": names[1], "sql": _h(15),
         "result": {"error": {"code": _h(16), "message": _h(17), "detail": _h(18)}}, "detail": {"after_wait": True}},
        {"t": 0.004, "kind": "notice", "session": names[2], "detail": {"severity": _h(19), "message": _h(20)}},
        {"t": 0.005, "kind": "op", "session": names[2], "detail": {"op": _h(21), "value": _h(22), "status": "unknown"}},
        {"t": 0.006, "kind": "fault", "session": names[2], "step": _h(23), "detail": {"fault": _h(24)}},
        {"t": 0.007, "kind": "check", "step": names[4], "detail": {"ok": False, "expected": _h(25), "actual": _h(26)}},
    ]
    trace = {"scenario": names[5], "backend": "postgres", "interleaving": [names[1], names[3]], "server": _h(27),
             "sessions": [names[0], names[2]], "hung": False, "events": events}
    outcome = {"scenario": names[5], "path": _h(28), "backend": "postgres", "label": _h(29),
               "schedule": [names[1], names[3]], "passed": False, "expected": _h(30), "violated": [names[4]],
               "problems": [_h(31)], "duration": 0.01, "error": _h(32), "kind": "interleaving", "trace": trace}
    passing = {**outcome, "passed": True, "label": _h(33), "kind": "exploration", "schedules_run": 3}
    return {"schema": 1, "started": _h(34), "duration": 1.0, "harness_version": _h(35),
            "servers": {"postgres": _h(36)}, "command": _h(37), "passed": False, "outcomes": [outcome, passing]}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "evil.py").write_text(f"open({MARK!r}, 'w').close()\ndef boom():\n    open({MARK!r}, 'w').close()\n")
    (tmp_path / "results.json").write_text(json.dumps(hostile_results()))
    return tmp_path


def test_report_of_a_hostile_results_file_is_text_only(project: Path) -> None:
    done = run_harness("report", "results.json", "-o", "out.html", env={"PYTHONPATH": str(ROOT)}, cwd=project)
    assert done.returncode == 0, done.stderr
    assert not (project / MARK).exists()  # nothing in the file was imported or evaluated
    html = (project / "out.html").read_text()
    parsed = _Elements()
    parsed.feed(html)
    assert [t for t, _ in parsed.tags].count("script") == 1 and "img" not in [t for t, _ in parsed.tags]
    handlers = [(t, a) for t, attrs in parsed.tags for a, _ in attrs if a.startswith("on")]
    assert handlers == [], handlers
    text = "".join(parsed.text)
    for marker in ("document.title='pwned'", "<img src=x onerror=", "{{ 7*7 }}{% if true %}", "<svg onload=alert(1)>"):
        assert marker in text  # shown, as text


def test_hostile_report_in_a_real_browser(project: Path, browser: Any) -> None:  # noqa: F811
    run_harness("report", "results.json", "-o", "out.html", env={"PYTHONPATH": str(ROOT)}, cwd=project)
    requests: list[str] = []
    page = _open(browser, project / "out.html", requests)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.wait_for_load_state("load")
    assert "pwned" not in page.title() and dialogs == []
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onload]').length") == 0
    assert "document.title='pwned'" in page.inner_text("body")
    page.context.close()


def test_terminal_report_neutralises_control_characters() -> None:
    results = RunResults.from_json(hostile_results())
    out = io.StringIO()
    print_outcomes(results.outcomes, out, verbose=True)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\x1b[2J" in text  # shown, not obeyed


def test_cli_errors_are_printed_sanitised(tmp_path: Path) -> None:
    done = run_harness("run", "\x1b[2Jmissing\x07.yaml", env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert done.returncode == 2 and "\x1b" not in done.stderr and "\\x1b[2Jmissing\\x07.yaml" in done.stderr


def test_yaml_tags_never_construct_objects(tmp_path: Path) -> None:
    marker = tmp_path / MARK
    path = tmp_path / "tagged.yaml"
    path.write_text(f"name: !!python/object/apply:os.system [\"touch {marker}\"]\n"
                    f"setup: !!python/object/apply:subprocess.call [[\"touch\", \"{marker}\"]]\n"
                    "sessions: {a: {steps: {a1: SELECT 1}}}\n")
    try:
        load_file(path)
    except HarnessError:
        pass  # refusing the file is fine; running anything is not
    assert not marker.exists()


def test_a_spec_is_parsed_never_run(tmp_path: Path) -> None:
    marker = tmp_path / MARK
    spec = tmp_path / "x.spec"
    spec.write_text(f'setup {{ SELECT 1 }}\nsession s1\nstep s1a {{ SELECT \'$(touch {marker})\'; }}\n'
                    f'# `touch {marker}`\npermutation s1a\n')
    scenario = load_file(spec)
    assert scenario.source == "spec" and not marker.exists()
