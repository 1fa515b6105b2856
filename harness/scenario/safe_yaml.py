"""Bounded reading of scenario and spec files, and a YAML node tree that holds only plain values.

A scenario file is user input: it may be a FIFO, a symlink to ``/dev/zero``, 50 MB, an alias bomb or
carry tags PyYAML cannot construct.  Everything here turns such input into a one-paragraph
:class:`ScenarioError` naming the file (and line) before any of it reaches the loaders, so later
code can build Python values from the node tree without a traceback or an unbounded cost.
The limits are documented in ``docs/bad-input.md``.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor

from ..errors import ScenarioError

#: default largest scenario/spec file read (bytes); HARNESS_MAX_SCENARIO_BYTES overrides it
MAX_FILE_BYTES = 1_000_000
#: most YAML aliases (``*name``) a scenario may use
MAX_ALIASES = 100
#: most nodes the tree may have once every alias is expanded (the real scenarios have < 1000)
MAX_EXPANDED_NODES = 100_000

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_TAG_KIND = {_YAML + "map": yaml.MappingNode, _YAML + "seq": yaml.SequenceNode, _YAML + "merge": yaml.ScalarNode}


@dataclass(frozen=True)
class Limits:
    """What a scenario file may cost to read."""

    max_bytes: int = MAX_FILE_BYTES
    max_aliases: int = MAX_ALIASES
    max_nodes: int = MAX_EXPANDED_NODES

    @classmethod
    def from_env(cls) -> "Limits":
        raw = os.environ.get("HARNESS_MAX_SCENARIO_BYTES", "")
        try:
            return cls(max_bytes=int(raw)) if raw.strip() else cls()
        except ValueError:
            return cls()


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_text(path: str, limits: Limits | None = None) -> str:
    """The UTF-8 text of a regular file of at most ``limits.max_bytes`` bytes.

    The file is checked with ``stat`` before opening, opened with ``O_NONBLOCK`` (so a FIFO swapped in
    meanwhile cannot block the open) and checked again with ``fstat`` on the opened descriptor.
    """
    limits = limits or Limits.from_env()

    def refuse(mode: int) -> ScenarioError:
        return ScenarioError(f"is {_kind_of(mode)}, not a regular file; name a scenario (.yaml/.yml) or isolation "
                             "spec (.spec) file.", path=path)

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(st.st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ScenarioError("no such file.", path=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot be read: {exc.strerror}.", path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(st.st_mode)
        if st.st_size > limits.max_bytes:
            raise _too_big(path, limits)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > limits.max_bytes:  # grew while we read it
                raise _too_big(path, limits)
            chunks.append(chunk)
    except OSError as exc:
        raise ScenarioError(f"cannot be read: {exc.strerror}.", path=path) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text ({exc.reason} at byte {exc.start}).", path=path) from None


def _too_big(path: str, limits: Limits) -> ScenarioError:
    return ScenarioError(f"is larger than {limits.max_bytes:,} bytes, the limit for a scenario file; split it, or "
                         "raise the limit with HARNESS_MAX_SCENARIO_BYTES.", path=path)


class _CountingLoader(yaml.SafeLoader):
    """A SafeLoader that refuses more than ``max_aliases`` aliases while composing."""

    max_aliases = MAX_ALIASES

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > self.max_aliases:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ScenarioError(f"uses more than {self.max_aliases} YAML aliases (*name); scenarios need few "
                                    "or none (an alias bomb?).", path=self.name, line=mark.line + 1)
        return super().compose_node(parent, index)  # type: ignore[arg-type]


def compose(text: str, path: str, limits: Limits | None = None) -> yaml.Node | None:
    """The YAML node tree of ``text`` (None when empty), holding only plain, constructible values."""
    limits = limits or Limits.from_env()
    loader: _CountingLoader | None = None
    try:
        loader = _CountingLoader(text)  # reads the first chunk: may raise already
        loader.name = path
        loader.max_aliases = limits.max_aliases
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ScenarioError(f"not valid YAML: {exc.problem or exc.context}.", path=path,
                            line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}.", path=path) from None
    except (ValueError, RecursionError) as exc:  # e.g. control characters PyYAML rejects late
        raise ScenarioError(f"not valid YAML: {exc}.", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is not None:
        _check_tree(root, path, limits)
    return root


def _check_tree(root: yaml.Node, path: str, limits: Limits) -> None:
    """Every tag is a plain one that fits its node, every scalar constructs, the expansion is bounded.

    Iterative (no recursion limit), visiting each distinct node once; ``expanded`` counts what
    building Python values would produce, with aliased subtrees counted at every use.
    """
    constructor = SafeConstructor()
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if done:
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > limits.max_nodes:
                raise ScenarioError(f"expands to more than {limits.max_nodes:,} YAML values through its aliases "
                                    "(*name); write the values out, or use fewer aliases.", path=path,
                                    line=node.start_mark.line + 1)
            continue
        _check_node(node, path, constructor)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _check_node(node: yaml.Node, path: str, constructor: SafeConstructor) -> None:
    line = node.start_mark.line + 1
    tag = node.tag
    plain = "scenarios hold plain YAML values only: strings, numbers, booleans, lists and mappings"
    if tag in _TAG_KIND:
        if not isinstance(node, _TAG_KIND[tag]):
            raise ScenarioError(f"the tag !!{tag[len(_YAML):]} does not fit the value it is on; {plain}.",
                                path=path, line=line)
        return
    if tag not in _SCALAR_TAGS:
        shown = "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag
        raise ScenarioError(f"the YAML tag {shown} is not allowed; {plain}.", path=path, line=line)
    if not isinstance(node, yaml.ScalarNode):
        shape = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
        raise ScenarioError(f"the tag !!{tag[len(_YAML):]} is on {shape} but belongs on a single value; {plain}.",
                            path=path, line=line)
    try:
        value = constructor.construct_object(node, deep=True)
    except Exception as exc:  # PyYAML raises ValueError, AttributeError, ... for unconstructible scalars
        raise ScenarioError(f"the value {node.value!r} is not a valid !!{tag[len(_YAML):]} ({type(exc).__name__}); "
                            f"remove the tag, or quote the value to keep it as a string.", path=path, line=line) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(f"the number {node.value} is not finite; scenarios take finite numbers only (quote it "
                            "to keep it as a string).", path=path, line=line)
