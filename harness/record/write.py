"""A scenario draft → YAML text, with PyYAML doing every scalar's quoting.

Comments (where a statement came from, statements that cannot be replayed as text) are the only
text written by hand; each is one line, control characters escaped, so no value can end a comment
and become YAML.  The result is loaded back with the scenario loader before it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import HarnessError, ScenarioError
from ..scenario.yaml_loader import load_yaml
from .build import Draft


class _Dumper(yaml.SafeDumper):
    """Multi-line SQL as a ``|`` block where YAML allows it (PyYAML falls back to quoting otherwise)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)


def _comment(text: str, indent: int) -> str:
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))
    return " " * indent + "# " + safe + "\n"


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.splitlines())


def render(draft: Draft) -> str:
    out = [_comment(h, 0) for h in draft.header]
    top: dict[str, Any] = {"name": draft.name, "description": draft.description, "backends": [draft.backend]}
    if draft.setup is not None:
        top["setup"] = draft.setup
    top["teardown"] = draft.teardown
    out.append(dump(top))
    out.append("sessions:\n")
    for s in draft.sessions:
        out.append(_comment(f"client connection {s.origin}", 2))
        out.append(f"  {s.name}:\n    steps:\n")
        if not s.steps:
            out.append("      {}\n")  # pragma: no cover - build() keeps only sessions with steps
        for item in s.items:
            if isinstance(item, str):
                out.append(_comment(item, 6))
                continue
            value: Any = item.sql if item.error is None else {"sql": item.sql, "expect": {"error": item.error}}
            out.append(_indent(dump({item.name: value}), 6))
    rest: dict[str, Any] = {}
    if draft.checks:
        rest["checks"] = draft.checks
    rest["interleavings"] = [{"name": "recorded", "steps": " ".join(draft.order)}]
    if len(draft.sessions) > 1:
        rest["explore"] = {"schedules": draft.schedules, "expect": draft.expect}
    rest["expect"] = draft.expect
    out.append(dump(rest))
    return "".join(out)


def write(draft: Draft, path: Path) -> str:
    """Render, check with the scenario loader, write; returns the text."""
    if not draft.order:
        raise HarnessError(f"nothing to write to {path}: no client statements were recorded (did the command "
                           "connect to the database in DATABASE_URL / HARNESS_RECORD_DSN?).")
    text = render(draft)
    try:
        load_yaml(text, str(path))
    except ScenarioError as exc:  # e.g. a --checks file with a bad check: no broken file is written
        raise HarnessError(f"the recorded scenario would not load, so it was not written: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
