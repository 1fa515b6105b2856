"""Expectations and checks of a YAML scenario: ``holds`` / ``violates: CHECK``, per-step expectations
(error, ok, blocks, rows, completes_after) and SQL checks, read from the node tree with file:line errors
(split from :mod:`.yaml_loader`)."""

from __future__ import annotations

from typing import Any

import yaml

from .model import Check, Expectation, StepExpect
from .yaml_nodes import NodeReader as _Reader
from .yaml_nodes import closest as _closest

CHECK_KEYS = ("sql", "expect")
STEP_EXPECT_KEYS = ("ok", "error", "blocks", "rows", "completes_after")


def _expectation(r: _Reader, node: yaml.Node, what: str) -> Expectation:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        items = r.mapping(node, what, ("violates",))
        if not items:
            raise r.fail(node, f"{what} is an empty mapping; write 'holds' or 'violates: <check name>'.")
        return Expectation(violates=r.text(items[0][2], f"{what} violates"), line=line)
    raw = r.scalar(node, what).strip()
    if raw == "holds":
        return Expectation(None, line)
    head, sep, rest = raw.partition(":")
    if head.strip() == "violates" and sep and rest.strip():
        return Expectation(rest.strip(), line)
    raise r.fail(node, f"{what} must be 'holds' or 'violates: <check name>', not {raw!r}."
                       + _closest(head.strip(), ("holds", "violates")))


def _step_expect(r: _Reader, node: yaml.Node, what: str) -> StepExpect:
    if not isinstance(node, yaml.MappingNode):
        raw = r.scalar(node, what).strip()
        if raw == "ok":
            return StepExpect(ok=True)
        if raw == "blocks":
            return StepExpect(blocks=True)
        raise r.fail(node, f"{what} must be 'ok', 'blocks', or a mapping with {', '.join(STEP_EXPECT_KEYS)}, "
                           f"not {raw!r}.{_closest(raw, ('ok', 'blocks', 'error'))}")
    out: dict[str, Any] = {}
    for key, key_node, value in r.mapping(node, what, STEP_EXPECT_KEYS):
        if key == "error":
            out["error"] = r.text(value, f"{what} error").strip()
        elif key == "completes_after":
            out["completes_after"] = r.text(value, f"{what} completes_after").strip()
        elif key == "rows":
            rows = [r.sequence(row, f"{what} rows item") for row in r.sequence(value, f"{what} rows")]
            out["rows"] = tuple(tuple(r.value(cell) for cell in row) for row in rows)
        else:
            raw = r.scalar(value, f"{what} {key}").strip().lower()
            if raw not in ("true", "false"):
                raise r.fail(value, f"{what} {key} must be true or false, not {raw!r}.")
            out[key] = raw == "true"
    if out.get("ok") and out.get("error"):
        raise r.fail(node, f"{what} cannot expect both ok and an error.")
    if out.get("rows") is not None and out.get("error"):
        raise r.fail(node, f"{what} cannot expect both rows and an error.")
    return StepExpect(**out)


def _check_step_refs(r: _Reader, node: yaml.Node, what: str, expects: dict[str, StepExpect],
                     step_names: dict[str, int]) -> None:
    """``completes_after`` must name a step of the scenario."""
    for exp in expects.values():
        if exp.completes_after is not None and exp.completes_after not in step_names:
            raise r.fail(node, f"{what} completes_after names step {exp.completes_after!r}, which no session "
                               f"defines.{_closest(exp.completes_after, step_names)}")


def _check(r: _Reader, name: str, node: yaml.Node) -> Check:
    what = f"check {name!r}"
    items = dict((k, v) for k, _, v in r.mapping(node, what, CHECK_KEYS))
    if "sql" not in items:
        raise r.fail(node, f"{what} needs `sql:` (a query) and `expect:` (empty, nonempty or {{equals: value}}).")
    sql = r.sql(items["sql"], f"{what} sql")
    expect = items.get("expect")
    if expect is None:
        return Check(name, sql, "empty", None, node.start_mark.line + 1)
    if isinstance(expect, yaml.MappingNode):
        entries = r.mapping(expect, f"{what} expect", ("equals", "durable"))
        if len(entries) != 1:
            raise r.fail(expect, f"{what} expect mapping needs one entry: {{equals: value}} or {{durable: rows_per_op}}.")
        kind, value = entries[0][0], r.value(entries[0][2])
        if kind == "durable" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise r.fail(entries[0][2], f"{what}: durable takes the number of rows each operation writes "
                                        f"(a positive integer), not {value!r}.")
        return Check(name, sql, kind, value, node.start_mark.line + 1)
    kind = r.scalar(expect, f"{what} expect").strip()
    if kind == "durable":
        return Check(name, sql, "durable", 1, node.start_mark.line + 1)
    if kind not in ("empty", "nonempty"):
        raise r.fail(expect, f"{what} expect must be empty, nonempty, durable or {{equals: value}}, not {kind!r}."
                             + _closest(kind, ("empty", "nonempty", "equals", "durable")))
    return Check(name, sql, kind, None, node.start_mark.line + 1)
