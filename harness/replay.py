"""Saved schedules (``reports/schedules/*.json``) and ``harness replay FILE``.

A saved schedule is data someone may hand you, so replaying it must not run what it says blindly:
its ``replay`` is an argv (the old string form is split with :mod:`shlex`, never given to a shell),
accepted only when it is exactly this harness's ``run``/``explore`` or a pytest race-test replay
with the options the harness itself writes, naming files inside the current project; it then runs
with this very interpreter (``sys.executable -m harness.cli`` / ``-m pytest``), no PATH lookup.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import HarnessError
from .redact import mask_all, sanitize

BACKEND_LIST = re.compile(r"(postgres|mysql)(,(postgres|mysql))*")
STRATEGIES = ("auto", "hypothesis", "exhaustive", "pct", "random")
SCENARIO_SUFFIXES = (".yaml", ".yml", ".spec")


@dataclass(frozen=True)
class _Program:
    """What one replayable program accepts: option -> value check (None: a flag), and positionals."""

    options: dict[str, Callable[[str], bool] | None]
    positional: Callable[[str, Path], str | None]  # returns why it is refused, or None
    module: str


def _text(value: str) -> bool:
    return bool(value) and not value.startswith(("-", "@")) and "\x00" not in value


def _integer(value: str) -> bool:
    return re.fullmatch(r"-?[0-9]{1,19}", value) is not None


def _inside(path_text: str, cwd: Path, suffixes: tuple[str, ...]) -> str | None:
    if not _text(path_text):
        return f"{path_text!r} is not a file name"
    path = (cwd / path_text).resolve()
    if not path.is_relative_to(cwd.resolve()):
        return f"{path_text!r} is outside the current directory {cwd}"
    if path.suffix not in suffixes or not path.is_file():
        return f"{path_text!r} is not an existing {'/'.join(suffixes)} file"
    return None


def _scenario_file(arg: str, cwd: Path) -> str | None:
    return _inside(arg, cwd, SCENARIO_SUFFIXES)


def _test_id(arg: str, cwd: Path) -> str | None:
    return _inside(arg.split("::", 1)[0], cwd, (".py", *SCENARIO_SUFFIXES))


def _BACKEND(v: str) -> bool:  # noqa: N802 (a validator in a table of them)
    return BACKEND_LIST.fullmatch(v) is not None


PROGRAMS: dict[tuple[str, ...], _Program] = {
    ("harness", "run"): _Program({"--backend": _BACKEND, "--interleaving": _text, "--schedule": _text,
                                  "-v": None, "--verbose": None}, _scenario_file, "harness.cli"),
    ("harness", "explore"): _Program({"--backend": _BACKEND, "--schedules": _integer, "--seed": _integer,
                                      "--strategy": lambda v: v in STRATEGIES, "-v": None, "--verbose": None},
                                     _scenario_file, "harness.cli"),
    ("pytest",): _Program({"--harness-replay": _text, "--backend": _BACKEND, "-q": None, "-v": None, "-x": None},
                          _test_id, "pytest"),
}


def validate(argv: list[str], cwd: Path) -> str | None:
    """Why ``argv`` is not a replay this harness wrote (None when it is)."""
    if not argv or not all(isinstance(a, str) for a in argv):
        return "its replay command is empty or not a list of strings"
    head = tuple(argv[:2]) if argv[0] == "harness" else tuple(argv[:1])
    program = PROGRAMS.get(head)
    if program is None:
        return f"it runs {shlex.join(argv[:2])!r}, not `harness run`, `harness explore` or `pytest`"
    rest, positionals = argv[len(head):], 0
    while rest:
        arg = rest.pop(0)
        name, eq, inline = arg.partition("=")
        if arg.startswith("-"):
            if name not in program.options:
                return f"option {arg!r} is not one a saved replay uses"
            check = program.options[name]
            if check is None:
                if eq:
                    return f"option {name} takes no value"
                continue
            value = inline if eq else (rest.pop(0) if rest else "")
            if not check(value):
                return f"{name} {value!r} is not a valid value"
        else:
            why = program.positional(arg, cwd)
            if why:
                return why
            positionals += 1
    return None if positionals else "it names no scenario file or test"


def replay_argv(saved: Path, cwd: Path | None = None) -> list[str]:
    """The validated replay of a saved schedule file, as the harness wrote it (``harness run ...``)."""
    cwd = cwd or Path.cwd()
    try:
        data = json.loads(Path(saved).read_text(encoding="utf-8"))
        replay = data["replay"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{saved}: not a saved schedule file ({sanitize(str(exc))}); those are written to "
                           "reports/schedules/ when an exploration or a race test fails.") from None
    try:
        argv = shlex.split(replay) if isinstance(replay, str) else replay
        why = validate(argv if isinstance(argv, list) else [], cwd)
    except ValueError as exc:  # an unbalanced quote in the old string form
        why = f"its replay command cannot be read ({exc})"
    if why:
        raise HarnessError(
            f"{saved}: refusing to replay it: {sanitize(why)}. A saved schedule may only run `harness run` or "
            "`harness explore` on a scenario file, or `pytest` on a test, inside the current directory and "
            "with the options the harness writes (--backend, --schedule, --interleaving, --harness-replay, ...); "
            "nothing was run. Re-create the file by running the failing scenario or test again, or replay by "
            "hand with the command printed when it failed."
        )
    return list(argv)


def command(argv: list[str]) -> list[str]:
    """The process to start for a validated replay: this interpreter, never a shell or a PATH lookup."""
    program = PROGRAMS[tuple(argv[:2]) if argv[0] == "harness" else tuple(argv[:1])]
    return [sys.executable, "-m", program.module, *argv[1:]]


def save_schedule(folder: Path, name: str, data: dict[str, Any], argv: list[str]) -> Path:
    """Write a found schedule for ``harness replay FILE`` (passwords masked, replay as an argv)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")
    path.write_text(json.dumps(mask_all({**data, "replay": list(argv)}), indent=1), encoding="utf-8")
    return path
