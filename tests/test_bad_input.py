"""Bad scenario and spec files: each a one-paragraph ScenarioError naming the file, exit 2, bounded cost.

The hand-written cases are the ones docs/bad-input.md lists; the property tests mutate the real
scenarios and specs (tags, numbers, aliases, structure) and allow only two results: a scenario, or a
ScenarioError whose message starts with the file's name.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.scenario.yaml_loader import load_file, load_yaml

from .conftest import ROOT

BASE = "sessions:\n  a:\n    steps: {a1: SELECT 1}\n"
ACTORS = "actors:\n  A: {call: 'm:f', args: {n: 1}}\nexplore: {schedules: 5}\n"
BOMB = "".join([BASE, "checks:\n  c:\n    sql: SELECT 1\n    expect:\n      equals:\n",
                "        - &a0 [x, x, x, x, x, x, x, x, x]\n",
                *(f"        - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))])


def _write(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "bad.yaml"
        path.write_text(text)
        return path
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.yaml"
    os.mkfifo(path)
    return path


def _symlink(target: str, name: str = "zero.yaml") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.symlink_to(target)
        return path
    return make


def _big(folder: Path) -> Path:
    path = folder / "big.yaml"
    path.write_text(BASE + "description: |\n" + "  padding padding padding padding\n" * 40_000)
    return path


#: (id, file maker, line or None, fragment of the message)
BAD_FILES: list[tuple[str, Callable[[Path], Path], int | None, str]] = [
    ("python-object-apply-in-args", _write(BASE.replace("SELECT 1", "{action: point, args: "
                                           "!!python/object/apply:os.system [\"echo pwned\"]}")), 3,
     "tag !!python/object/apply:os.system is not allowed"),
    ("python-object-apply-in-equals", _write(BASE + "checks:\n  c: {sql: SELECT 1, expect: {equals: "
                                             "!!python/object/apply:os.getpid []}}\n"), 5, "is not allowed"),
    ("int-tag-on-text", _write(BASE.replace("SELECT 1", "{action: point, args: {label: !!int 'abc'}}")), 3,
     "'abc' is not a valid !!int"),
    ("timestamp-tag-on-text", _write(BASE + "checks:\n  c: {sql: SELECT 1, expect: {equals: !!timestamp 'x'}}\n"),
     5, "'x' is not a valid !!timestamp"),
    ("null-tag-on-mapping", _write(BASE + "checks:\n  c: {sql: SELECT 1, expect: {equals: !!null {a: 1}}}\n"),
     5, "!!null is on a mapping"),
    ("empty-expect", _write(BASE + "expect: {}\n"), 4, "expect is an empty mapping"),
    ("nan-max-interleavings", _write(BASE + "max_interleavings: nan\n"), 4, "finite number"),
    ("huge-max-interleavings", _write(BASE + "max_interleavings: 1e999\n"), 4, "finite number"),
    ("nan-schedules", _write(ACTORS.replace("schedules: 5", "schedules: nan")), 3, "finite number"),
    ("inf-schedules", _write(ACTORS.replace("schedules: 5", "schedules: .inf")), 3, "is not finite"),
    ("nan-step-timeout", _write(BASE + "timeouts: {step: nan}\n"), 4, "timeouts step must be a finite number"),
    ("inf-step-timeout", _write(BASE + "timeouts: {step: .inf}\n"), 4, "is not finite"),
    ("string-inf-step-timeout", _write(BASE + "timeouts: {step: inf}\n"), 4, "finite number"),
    ("fractional-max-interleavings", _write(BASE + "max_interleavings: 2.5\n"), 4, "whole number"),
    ("alias-bomb", _write(BOMB), None, "YAML values through its aliases"),
    ("many-aliases", _write(BASE + "description: &d x\ndummy: [" + ", ".join(["*d"] * 101) + "]\n"), 5,
     "more than 100 YAML aliases"),
    ("symlink-to-dev-zero", _symlink("/dev/zero"), None, "is a character device, not a regular file"),
    ("fifo", _fifo, None, "is a FIFO (named pipe), not a regular file"),
    ("spec-fifo", lambda d: (os.mkfifo(d / "p.spec"), d / "p.spec")[1], None, "FIFO"),
    ("spec-symlink-to-dev-zero", _symlink("/dev/zero", "zero.spec"), None, "character device"),
    ("too-big", _big, None, "larger than 1,000,000 bytes"),
]


@pytest.mark.parametrize("make,line,fragment", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_one_paragraph_scenario_error(tmp_path: Path, make: Callable[[Path], Path], line: int | None,
                                                  fragment: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    message = str(info.value)
    where = f"{path}:{line}: " if line is not None else f"{path}"
    assert message.startswith(where), message
    assert fragment in message, message
    assert "\n" not in message.strip()


def _run_cli(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(path)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_exits_2_with_one_paragraph_for_every_bad_file(tmp_path: Path) -> None:
    """All cases at once (each its own process, run concurrently): exit 2, one line, no traceback."""
    runs = []
    for name, make, _, fragment in BAD_FILES:
        folder = tmp_path / name
        folder.mkdir()
        runs.append((name, fragment, _run_cli(make(folder))))
    for name, fragment, proc in runs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (name, proc.returncode, err)
        assert "Traceback" not in err, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("harness: error: ") and fragment in lines[0], (name, err)


def test_the_size_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _big(tmp_path)
    monkeypatch.setenv("HARNESS_MAX_SCENARIO_BYTES", str(2_000_000))
    assert load_file(path).description.startswith("padding")
    monkeypatch.setenv("HARNESS_MAX_SCENARIO_BYTES", "1000")
    with pytest.raises(ScenarioError, match="larger than 1,000 bytes"):
        load_file(path)


def test_a_fifo_swapped_in_after_stat_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The open is O_NONBLOCK and the opened descriptor is checked: a stat that said "regular file"
    (a file replaced by a FIFO between stat and open) still cannot block the reader."""
    from harness.scenario import safe_yaml

    regular = tmp_path / "regular.yaml"
    regular.write_text(BASE)
    fifo = _fifo(tmp_path)
    real_stat = os.stat
    monkeypatch.setattr(safe_yaml.os, "stat", lambda p, *a, **k: real_stat(regular) if str(p) == str(fifo)
                        else real_stat(p, *a, **k))
    result: list[BaseException] = []
    reader = threading.Thread(target=lambda: result.append(pytest.raises(ScenarioError, load_file, fifo).value),
                              daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so the test process can end, then fail
        with open(fifo, "w"):
            pass
        raise AssertionError("reading a FIFO blocked")
    assert "FIFO" in str(result[0])


# -- property-based: mutations of the real scenarios and specs ---------------------------------------

SCENARIO_FILES = sorted([*ROOT.glob("scenarios/**/*.yaml"), *ROOT.glob("tests/report_scenarios/*.yaml")])
SPEC_FILES = sorted(ROOT.glob("tests/specs/*.spec"))
TAGS = ["!!python/object/apply:os.system [\"true\"]", "!!python/name:os.system", "!!int 'abc'", "!!timestamp 'x'",
        "!!null {a: 1}", "!!binary xyz", "!!set {a, b}", "!!omap [a: 1]", "!!float 'x'", "!!bool maybe", "!foo bar",
        "!!str", "!!int", "!!map {}", "!!seq []", "&anchor", "*anchor", "<<: *anchor", "? complex\n: key"]
NUMBERS = ["nan", ".nan", ".inf", "-.inf", "inf", "1e999", "-1e999", "-1", "0", "0.0", "1e-999", "2.5",
           "99999999999999999999", "0x1F", "0o17", "1_000", "-0", "1e6", "1e7", "{}", "[]", "~", "''", "true"]


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for kind, pos, piece in edits:
        i = pos % (len(text) + 1)
        if kind == 0:  # insert a tag, anchor or number after a colon or at any place
            colon = text.find(": ", i)
            at = colon + 2 if colon >= 0 else i
            text = text[:at] + piece + " " + text[at:]
        elif kind == 1:  # replace the value after the next colon with a number-like scalar
            colon = text.find(": ", i)
            if colon >= 0:
                end = text.find("\n", colon)
                text = text[:colon + 2] + piece + (text[end:] if end >= 0 else "")
        elif kind == 2:  # delete a few characters
            text = text[:i] + text[i + 1 + pos % 7:]
        else:  # duplicate a line
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            line = text[start:end if end >= 0 else len(text)]
            text = text[:start] + line + "\n" + text[start:]
    return text


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.sampled_from(TAGS + NUMBERS)),
                 min_size=1, max_size=4)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SCENARIO_FILES), EDITS)
def test_mutated_scenarios_load_or_raise_a_scenario_error_naming_the_file(source: Path,
                                                                        edits: list[tuple[int, int, str]]) -> None:
    text = _mutate(source.read_text(), edits)
    try:
        scenario = load_yaml(text, str(source))  # same folder: its {file: …} SQL files resolve
    except ScenarioError as exc:
        assert str(exc).startswith(str(source)), str(exc)
        return
    assert math.isfinite(scenario.timeouts.step) and 0.1 <= scenario.timeouts.step <= 86_400
    assert 1 <= scenario.max_interleavings <= 1_000_000
    assert scenario.explore is None or 1 <= scenario.explore.schedules <= 1_000_000


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPEC_FILES), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6),
                                                       st.sampled_from(["{", "}", "(", ")", "*", "\x00", "\xff",
                                                                        "notices 1e999", "step", "#", '"'] + TAGS)),
                                             min_size=1, max_size=4))
def test_mutated_spec_files_load_or_raise_a_scenario_error_naming_the_file(
        source: Path, edits: list[tuple[int, int, str]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / source.name
        path.write_bytes(_mutate(source.read_text(), edits).encode("utf-8", "surrogateescape"))
        try:
            load_file(path)
        except ScenarioError as exc:
            assert str(exc).startswith(str(path)), str(exc)


@settings(max_examples=200, deadline=2000)
@given(st.sampled_from(["max_interleavings: {}", "timeouts: {{step: {}}}", "explore_schedules"]),
       st.one_of(st.sampled_from(NUMBERS), st.floats().map(repr), st.integers(-10**30, 10**30).map(str)))
def test_numbers_are_finite_and_in_range_or_refused(template: str, number: str) -> None:
    text = ACTORS.replace("schedules: 5", f"schedules: {number}") if template == "explore_schedules" \
        else BASE + template.format(number) + "\n"
    try:
        scenario = load_yaml(text, "n.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("n.yaml:"), str(exc)
        return
    assert math.isfinite(scenario.timeouts.step) and 0.1 <= scenario.timeouts.step <= 86_400
    assert 1 <= scenario.max_interleavings <= 1_000_000
    assert scenario.explore is None or 1 <= scenario.explore.schedules <= 1_000_000
