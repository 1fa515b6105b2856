"""Reading a scenario's YAML node tree: every problem becomes a ScenarioError naming ``file:line``.

Split from :mod:`yaml_loader` (which knows the scenario keys): this knows the shapes values take --
mappings, single values, bounded numbers, SQL text, per-backend values -- and how to say what is wrong.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import BACKENDS
from ..errors import ScenarioError
from .model import ANY_BACKEND, SqlText


def closest(word: str, options: Any) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def _show(x: float) -> str:
    return f"{int(x):,}" if x == int(x) else f"{x:g}"


class NodeReader:
    """Walks the YAML node tree with the file's name, turning every problem into a ScenarioError."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, message: str) -> ScenarioError:
        line = node.start_mark.line + 1 if node is not None else None
        return ScenarioError(message, path=self.path, line=line)

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None = None
                ) -> list[tuple[str, yaml.ScalarNode, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value lines), not {self._kind(node)}.")
        out: list[tuple[str, yaml.ScalarNode, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"keys in {what} must be plain names.")
            key = str(key_node.value)
            if key in seen:
                raise self.fail(key_node, f"key {key!r} appears twice in {what}.")
            seen.add(key)
            if allowed is not None and key not in allowed:
                raise self.fail(key_node, f"unknown key {key!r} in {what}; expected one of: "
                                          f"{', '.join(allowed)}.{closest(key, allowed)}")
            out.append((key, key_node, value))
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.fail(node, f"{what} must be a single value, not {self._kind(node)}.")
        return str(node.value)

    def text(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if not value.strip():
            raise self.fail(node, f"{what} is empty.")
        return value

    def number(self, node: yaml.Node, what: str, minimum: float, maximum: float) -> float:
        """A finite number in [minimum, maximum] (``nan``, ``inf`` and ``1e999`` are refused)."""
        raw = self.scalar(node, what)
        try:
            value = float(raw)
        except ValueError:
            raise self.fail(node, f"{what} must be a number, not {raw!r}.") from None
        if not math.isfinite(value):
            raise self.fail(node, f"{what} must be a finite number from {_show(minimum)} to {_show(maximum)}, "
                                  f"not {raw}.")
        if value < minimum:
            raise self.fail(node, f"{what} must be at least {_show(minimum)}, not {raw}.")
        if value > maximum:
            raise self.fail(node, f"{what} must be at most {_show(maximum)}, not {raw}.")
        return value

    def count(self, node: yaml.Node, what: str, maximum: int) -> int:
        """A whole number from 1 to ``maximum``."""
        value = self.number(node, what, 1, maximum)
        if value != int(value):
            raise self.fail(node, f"{what} must be a whole number, not {self.scalar(node, what)}.")
        return int(value)

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list (lines starting with '- '), not {self._kind(node)}.")
        return list(node.value)

    def value(self, node: yaml.Node) -> Any:
        """A plain Python value (for action args and check values), built from the node itself with the
        safe constructor (a serialize/parse round trip could fail on what the node holds)."""
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.fail(node, f"cannot read this value: {problem}.") from None
        finally:
            loader.dispose()

    @staticmethod
    def _kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        if node.tag.endswith(":null"):
            return "empty"
        return f"the value {node.value!r}"

    # -- shared shapes ---------------------------------------------------------------------------
    def sql(self, node: yaml.Node, what: str) -> SqlText:
        """``SQL``, ``{file: x.sql}``, or ``{postgres: SQL-or-file, mysql: SQL-or-file}``."""
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and [str(k.value) for k, _ in node.value] == ["file"]:
            return SqlText({ANY_BACKEND: self.file_text(node.value[0][1], what)}, line)
        if isinstance(node, yaml.MappingNode):
            by: dict[str, str] = {}
            for key, key_node, value in self.mapping(node, what, BACKENDS):
                if isinstance(value, yaml.MappingNode):
                    (name, _, file_node), = self.mapping(value, f"{what} for {key}", ("file",)) or [("", None, value)]  # type: ignore[list-item]
                    by[key] = self.file_text(file_node, f"{what} for {key}")
                else:
                    by[key] = self.text(value, f"{what} for {key}")
            if not by:
                raise self.fail(node, f"{what} has no SQL.")
            return SqlText(by, line)
        return SqlText({ANY_BACKEND: self.text(node, what)}, line)

    def file_text(self, node: yaml.Node, what: str) -> str:
        """The contents of an SQL file named relative to the scenario file."""
        name = self.text(node, f"{what} file").strip()
        target = Path(self.path).parent / name
        try:
            return target.read_text(encoding="utf-8")
        except OSError as exc:
            raise self.fail(node, f"{what}: cannot read SQL file {str(target)!r} ({exc.strerror}).") from None
        except UnicodeDecodeError:
            raise self.fail(node, f"{what}: SQL file {str(target)!r} is not UTF-8 text.") from None

    def sql_blocks(self, node: yaml.Node, what: str, calls: bool = False) -> tuple[SqlText, ...]:
        """One SQL text, a per-backend mapping, or a list of either (run as separate blocks); with
        ``calls``, an item may also be Python: ``{call: "module:function", args: {...}}``."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        what_item = f"{what} item" if isinstance(node, yaml.SequenceNode) else what
        return tuple(self.hook(item, what_item, calls) if self._is_call(item) else self.sql(item, what_item)
                     for item in items)

    @staticmethod
    def _is_call(node: yaml.Node) -> bool:
        return isinstance(node, yaml.MappingNode) and any(str(k.value) == "call" for k, _ in node.value)

    def hook(self, node: yaml.Node, what: str, allowed: bool) -> SqlText:
        """``{call: "module:function", args: {...}}``: Python setup/teardown (harness/scenario/hooks.py)."""
        if not allowed:
            raise self.fail(node, f"{what}: a session's setup runs SQL on that session; put Python "
                                  "({call: ...}) in the scenario's own setup/teardown.")
        entries = {key: value for key, _, value in self.mapping(node, what, ("call", "args"))}
        call = self.text(entries["call"], f"{what} call").strip()
        module, _, function = call.partition(":")
        if not module or not function.isidentifier():
            raise self.fail(entries["call"], f"{what}: call {call!r} must name module:function, e.g. "
                                             "\"myapp.db:create_schema\".")
        args = self.value(entries["args"]) if "args" in entries else {}
        if not isinstance(args, dict):
            raise self.fail(entries["args"], f"{what}: args must be a mapping of keyword arguments.")
        return SqlText({}, node.start_mark.line + 1, call=call, args=args)

    def per_backend(self, node: yaml.Node, what: str, parse: Callable[[yaml.Node, str], Any],
                    inner_keys: tuple[str, ...] = ()) -> dict[str, Any]:
        """A value for all backends, or ``{postgres: value, mysql: value}``."""
        if isinstance(node, yaml.MappingNode):
            keys = [str(k.value) for k, _ in node.value]
            if keys and all(k in BACKENDS for k in keys):
                return {k: parse(v, f"{what} for {k}") for k, _, v in self.mapping(node, what, BACKENDS)}
            if inner_keys and not any(k in inner_keys for k in keys) and any(k in BACKENDS for k in keys):
                self.mapping(node, what, BACKENDS)  # raises on the non-backend key, with a suggestion
        return {ANY_BACKEND: parse(node, what)}
