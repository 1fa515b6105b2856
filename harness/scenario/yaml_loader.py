"""Load and validate YAML scenario files into the :mod:`harness.scenario.model`.

The YAML is read as a node tree so every error can name ``file:line``, the key, what was expected
and, for misspelt keys or names, the closest valid one.  Nothing but :class:`ScenarioError` escapes.
The format is documented in ``docs/scenario-format.md``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..config import BACKENDS
from ..errors import ScenarioError
from . import safe_yaml
from .yaml_nodes import NodeReader as _Reader
from .yaml_nodes import closest as _closest
from .yaml_checks import STEP_EXPECT_KEYS, _check, _check_step_refs, _expectation, _step_expect
from .model import (ANY_BACKEND, FAULT_ACTIONS, FAULT_KINDS, ActorSpec, Check, ExploreSpec, FaultSpec, Interleaving,
                    Scenario, Session, Step, StepExpect, StepRef, Timeouts)

SCENARIO_KEYS = ("name", "description", "backends", "setup", "teardown", "sessions", "checks",
                 "interleavings", "expect", "max_interleavings", "timeouts", "actors", "explore", "faults",
                 "allowed_errors")
SESSION_KEYS = ("isolation", "setup", "teardown", "steps")
STEP_KEYS = ("sql", "action", "args", "expect")
INTERLEAVING_KEYS = ("steps", "name", "expect", "step_expect")
ACTOR_KEYS = ("call", "args")
EXPLORE_KEYS = ("schedules", "strategy", "expect")
#: faults that hit no particular actor (written ``<kind>: true``), and those that take ``ms:``
GLOBAL_FAULTS = tuple(k for k, kind in FAULT_KINDS.items() if not kind.aimed)
TIMED_FAULTS = tuple(k for k, kind in FAULT_KINDS.items() if kind.ms)
STRATEGIES = ("auto", "hypothesis", "exhaustive", "pct", "random")
LOCK_WAIT = ("report", "server")
#: upper bounds of the numbers a scenario gives (finite, and far above any useful value)
MAX_SCHEDULES = 1_000_000
MAX_INTERLEAVINGS = 1_000_000
MAX_STEP_TIMEOUT = 86_400.0
MAX_FAULT_MS = 86_400_000
ISOLATION_LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")
#: harness actions a YAML step may use (harness/actions.py implements them)
KNOWN_ACTIONS = ("lock", "unlock", "clock", "expire_lease", "point") + tuple(FAULT_ACTIONS)
#: what an injected error's code looks like on each backend
ERROR_CODE_SHAPES = (("postgres", re.compile(r"[0-9A-Z]{5}"), 'a SQLSTATE (five characters, e.g. "40001")'),
                     ("mysql", re.compile(r"[0-9]{1,5}"), "an error number (e.g. 1213)"))


def _fault_args(r: _Reader, action: str, what: str, node: yaml.Node, args_node: yaml.Node | None,
                sessions: tuple[str, ...], backends: tuple[str, ...]) -> dict[str, Any]:
    """A fault step's args, checked against the scenario's sessions and backends; codes and messages
    are kept as written (``01000`` is a SQLSTATE, not the octal number 512)."""
    names = ", ".join(sessions)
    if args_node is None:
        raise r.fail(node, f"{what}: {action} needs args: {{session: <name>}}, naming one of the sessions: {names}.")
    items = dict((k, v) for k, _, v in r.mapping(args_node, f"{what} args", FAULT_ACTIONS[action]))
    if "session" not in items:
        raise r.fail(args_node, f"{what}: {action} needs `session:` in its args, naming one of the sessions: {names}.")
    victim = r.text(items["session"], f"{what} session").strip()
    if victim not in sessions:
        raise r.fail(items["session"], f"{what}: {action} names session {victim!r}, which is not one of the "
                                       f"sessions: {names}.{_closest(victim, sessions)}")
    out: dict[str, Any] = {"session": victim}
    if action != "inject_error":
        return out
    if "code" not in items:
        raise r.fail(args_node, f"{what}: inject_error needs `code:`, the error its victim sees: a SQLSTATE on "
                                f'PostgreSQL, an error number on the MySQL family, e.g. code: {{postgres: "40001", '
                                f"mysql: 1213}}.")
    codes = r.per_backend(items["code"], f"{what} code", lambda n, w: r.text(n, w).strip())
    for backend in backends:
        code = codes.get(backend, codes.get(ANY_BACKEND))
        if code is None:
            raise r.fail(items["code"], f"{what} code has no value for {backend}; add `{backend}: <code>` (or "
                                        f"leave {backend} out of `backends:`).")
        shape, described = next((sh, d) for b, sh, d in ERROR_CODE_SHAPES if b == backend)
        if not shape.fullmatch(code):
            raise r.fail(items["code"], f"{what} code {code!r} is not {described}, as {backend} needs; give one "
                                        f'per backend: code: {{postgres: "40001", mysql: 1213}} (quote SQLSTATEs).')
    out["code"] = codes.get(ANY_BACKEND, {k: v for k, v in codes.items() if k != ANY_BACKEND})
    if "message" in items:
        messages = r.per_backend(items["message"], f"{what} message", lambda n, w: r.text(n, w))
        out["message"] = messages.get(ANY_BACKEND, messages)
    return out


def _step(r: _Reader, session: str, name: str, node: yaml.Node, sessions: tuple[str, ...] = (),
          backends: tuple[str, ...] = BACKENDS) -> Step:
    what = f"step {name!r}"
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode) or (
            all(str(k.value) in BACKENDS for k, _ in node.value) and node.value):
        return Step(name, session, sql=r.sql(node, f"{what} sql"), line=line)
    items = dict((k, v) for k, _, v in r.mapping(node, what, STEP_KEYS))
    if ("sql" in items) == ("action" in items):
        raise r.fail(node, f"{what} needs exactly one of `sql:` or `action:`.")
    expect = r.per_backend(items["expect"], f"{what} expect", lambda n, w: _step_expect(r, n, w),
                           STEP_EXPECT_KEYS) if "expect" in items else {}
    if "sql" in items:
        if "args" in items:
            raise r.fail(items["args"], f"{what}: `args:` belongs to action steps only.")
        return Step(name, session, sql=r.sql(items["sql"], f"{what} sql"), expect=expect, line=line)
    action = r.text(items["action"], f"{what} action").strip()
    if action not in KNOWN_ACTIONS:
        raise r.fail(items["action"], f"{what} uses unknown action {action!r}; known actions: "
                                      f"{', '.join(KNOWN_ACTIONS)}.{_closest(action, KNOWN_ACTIONS)}")
    if action in FAULT_ACTIONS:
        args = _fault_args(r, action, what, node, items.get("args"), sessions, backends)
        return Step(name, session, action=action, args=args, expect=expect, line=line)
    args = r.value(items["args"]) if "args" in items else {}
    if not isinstance(args, dict):
        raise r.fail(items["args"], f"{what} args must be a mapping.")
    return Step(name, session, action=action, args=args, expect=expect, line=line)


def _actor(r: _Reader, name: str, node: yaml.Node) -> ActorSpec:
    what = f"actor {name!r}"
    args: dict[str, Any]
    if isinstance(node, yaml.ScalarNode):
        call, args = r.text(node, what).strip(), {}
    else:
        items = dict((k, v) for k, _, v in r.mapping(node, what, ACTOR_KEYS))
        if "call" not in items:
            raise r.fail(node, f"{what} needs `call: package.module:function`.")
        call = r.text(items["call"], f"{what} call").strip()
        args = r.value(items["args"]) if "args" in items else {}
        if not isinstance(args, dict):
            raise r.fail(items["args"], f"{what} args must be a mapping of keyword arguments.")
    module, sep, function = call.partition(":")
    if not sep or not module or not function.isidentifier():
        raise r.fail(node, f"{what} call must look like package.module:function, not {call!r}.")
    return ActorSpec(name, call, args, node.start_mark.line + 1)


def _session(r: _Reader, name: str, node: yaml.Node, step_names: dict[str, int], sessions: tuple[str, ...] = (),
             backends: tuple[str, ...] = BACKENDS) -> Session:
    what = f"session {name!r}"
    items = {k: (kn, v) for k, kn, v in r.mapping(node, what, SESSION_KEYS)}
    if "steps" not in items:
        raise r.fail(node, f"{what} has no `steps:`; give it a mapping of step names to SQL.")
    steps = []
    for step_name, key_node, value in r.mapping(items["steps"][1], f"{what} steps"):
        if step_name in step_names:
            raise r.fail(key_node, f"step name {step_name!r} is already used at line {step_names[step_name]}; "
                                   "step names must be unique across sessions.")
        step_names[step_name] = key_node.start_mark.line + 1
        steps.append(_step(r, name, step_name, value, sessions, backends))
    if not steps:
        raise r.fail(items["steps"][1], f"{what} has no steps.")
    isolation = None
    if "isolation" in items:
        isolation = r.text(items["isolation"][1], f"{what} isolation").strip().lower()
        if isolation not in ISOLATION_LEVELS:
            raise r.fail(items["isolation"][1], f"{what} isolation must be one of {', '.join(ISOLATION_LEVELS)}, "
                                                f"not {isolation!r}.{_closest(isolation, ISOLATION_LEVELS)}")
    return Session(
        name, tuple(steps),
        setup=r.sql_blocks(items["setup"][1], f"{what} setup") if "setup" in items else (),
        teardown=r.sql_blocks(items["teardown"][1], f"{what} teardown") if "teardown" in items else (),
        isolation=isolation, line=node.start_mark.line + 1,
    )


def _interleaving(r: _Reader, node: yaml.Node, index: int, step_names: dict[str, int]) -> Interleaving:
    what = f"interleaving #{index + 1}"
    name, expect = None, {}
    steps_node = node
    if isinstance(node, yaml.MappingNode):
        items = dict((k, v) for k, _, v in r.mapping(node, what, INTERLEAVING_KEYS))
        if "steps" not in items:
            raise r.fail(node, f"{what} needs `steps:` (step names separated by spaces).")
        steps_node = items["steps"]
        name = r.text(items["name"], f"{what} name").strip() if "name" in items else None
        if "expect" in items:
            expect = r.per_backend(items["expect"], f"{what} expect", lambda n, w: _expectation(r, n, w))
    step_expect: dict[str, dict[str, StepExpect]] = {}
    if isinstance(node, yaml.MappingNode) and "step_expect" in items:
        for step, key_node, value in r.mapping(items["step_expect"], f"{what} step_expect"):
            table = r.per_backend(value, f"{what} step_expect {step}", lambda n, w: _step_expect(r, n, w),
                                  STEP_EXPECT_KEYS)
            _check_step_refs(r, value, f"{what} step_expect {step}", table, step_names)
            step_expect[step] = table
    if isinstance(steps_node, yaml.SequenceNode):
        names = [r.text(s, f"{what} step") .strip() for s in steps_node.value]
    else:
        names = r.text(steps_node, f"{what} steps").split()
    for step in names:
        if step not in step_names:
            raise r.fail(steps_node, f"{what} names step {step!r}, which no session defines."
                                     + _closest(step, step_names))
    for step in step_expect:
        if step not in names:
            raise r.fail(items["step_expect"], f"{what} step_expect names step {step!r}, which this interleaving "
                                               f"does not run.{_closest(step, names)}")
    return Interleaving(tuple(StepRef(s) for s in names), name, expect, node.start_mark.line + 1, step_expect)


def load_yaml(text: str, path: str) -> Scenario:
    """Parse and validate one scenario; raises ScenarioError naming path:line on any problem."""
    r = _Reader(path)
    root = safe_yaml.compose(text, path)  # plain values only, aliases bounded
    if root is None:
        raise ScenarioError("the file is empty; a scenario needs at least `sessions:`.", path=path, line=1)
    items = {k: (kn, v) for k, kn, v in r.mapping(root, "the scenario", SCENARIO_KEYS)}
    if "sessions" not in items and "actors" not in items:
        raise r.fail(root, "the scenario has no `sessions:`; give it a mapping of session names to steps "
                           "(or `actors:` naming Python functions, with `explore:`).")

    backends: tuple[str, ...] = BACKENDS
    if "backends" in items:
        node = items["backends"][1]
        listed = [r.text(n, "backends item").strip() for n in r.sequence(node, "backends")] \
            if isinstance(node, yaml.SequenceNode) else r.text(node, "backends").replace(",", " ").split()
        for b in listed:
            if b not in BACKENDS:
                raise r.fail(node, f"unknown backend {b!r}; expected {', '.join(BACKENDS)}.{_closest(b, BACKENDS)}")
        backends = tuple(listed)

    step_names: dict[str, int] = {}
    sessions: tuple[Session, ...] = ()
    if "sessions" in items:
        listed_sessions = r.mapping(items["sessions"][1], "sessions")
        names = tuple(name for name, _, _ in listed_sessions)  # fault steps may name a later session
        sessions = tuple(_session(r, name, value, step_names, names, backends) for name, _, value in listed_sessions)
        if not sessions:
            raise r.fail(items["sessions"][1], "the scenario has no sessions.")
    for session in sessions:
        for step in session.steps:
            for wanted in step.expect.values():
                if wanted.completes_after is not None and wanted.completes_after not in step_names:
                    raise ScenarioError(f"step {step.name!r} expect completes_after names step "
                                        f"{wanted.completes_after!r}, which no session defines."
                                        f"{_closest(wanted.completes_after, step_names)}", path=path, line=step.line)
    actors = tuple(_actor(r, name, value) for name, _, value in r.mapping(items["actors"][1], "actors")) \
        if "actors" in items else ()
    if "actors" in items and not actors:
        raise r.fail(items["actors"][1], "the scenario has no actors.")
    if actors and sessions:
        raise r.fail(items["actors"][0], "a scenario has either `sessions:` (SQL steps) or `actors:` (Python "
                                         "functions), not both.")
    if actors and "explore" not in items:
        raise r.fail(items["actors"][0], "Python actors are explored, not listed: add `explore: {schedules: N}`.")

    checks: tuple[Check, ...] = ()
    if "checks" in items:
        checks = tuple(_check(r, name, value) for name, _, value in r.mapping(items["checks"][1], "checks"))
    check_names = {c.name for c in checks}
    for check in checks:
        if check.kind == "durable" and not actors:
            raise ScenarioError(f"check {check.name!r} expects `durable`, which compares the database with the "
                                "operations Python actors mark with ctx.op(); it needs `actors:`.",
                                path=r.path, line=check.line)

    interleavings: tuple[Interleaving, ...] = ()
    if "interleavings" in items:
        interleavings = tuple(_interleaving(r, n, i, step_names)
                              for i, n in enumerate(r.sequence(items["interleavings"][1], "interleavings")))
    expect = r.per_backend(items["expect"][1], "expect", lambda n, w: _expectation(r, n, w)) \
        if "expect" in items else {}

    faults: list[FaultSpec] = []
    if "faults" in items:
        if not actors:
            raise r.fail(items["faults"][0], "faults are placed by the explorer among Python `actors:`.")
        for name, key_node, node in r.mapping(items["faults"][1], "faults"):
            f = dict((k, v) for k, _, v in r.mapping(node, f"fault {name!r}", tuple(FAULT_KINDS) + ("code", "ms")))
            kinds = [k for k in FAULT_KINDS if k in f]
            if len(kinds) != 1:
                raise r.fail(node, f"fault {name!r} needs exactly one of {', '.join(FAULT_KINDS)}: <actor> "
                                   f"({', '.join(GLOBAL_FAULTS)}: true).")
            victim = r.text(f[kinds[0]], f"fault {name!r} {kinds[0]}").strip()
            if kinds[0] in GLOBAL_FAULTS:
                if victim.lower() != "true":
                    raise r.fail(f[kinds[0]], f"fault {name!r}: write `{kinds[0]}: true` (it hits no one actor).")
                victim = ""
            elif victim not in {a.name for a in actors}:
                raise r.fail(f[kinds[0]], f"fault {name!r} names actor {victim!r}, which is not one of "
                                          f"{', '.join(a.name for a in actors)}.")
            code = r.text(f["code"], f"fault {name!r} code").strip() if "code" in f else None
            if FAULT_KINDS[kinds[0]].code != (code is not None):
                raise r.fail(node, f"fault {name!r}: `code:` (SQLSTATE or MySQL error number) goes with "
                                   f"{' and '.join(k for k, v in FAULT_KINDS.items() if v.code)} only, and they need it.")
            ms = r.value(f["ms"]) if "ms" in f else None
            if (kinds[0] in TIMED_FAULTS) != (ms is not None) or (ms is not None and (
                    isinstance(ms, bool) or not isinstance(ms, (int, float)))):
                raise r.fail(node, f"fault {name!r}: `ms:` (a number of milliseconds) goes with "
                                   f"{' and '.join(TIMED_FAULTS)} only, and they need it.")
            if ms is not None and not (math.isfinite(ms) and abs(ms) <= MAX_FAULT_MS):
                raise r.fail(f["ms"], f"fault {name!r}: `ms:` must be a finite number of milliseconds from "
                                      f"-{MAX_FAULT_MS} to {MAX_FAULT_MS}, not {ms}.")
            faults.append(FaultSpec(name, kinds[0], victim, code, key_node.start_mark.line + 1, ms))

    explore = None
    if "explore" in items:
        node = items["explore"][1]
        e = dict((k, v) for k, _, v in r.mapping(node, "explore", EXPLORE_KEYS))
        strategy = r.text(e["strategy"], "explore strategy").strip() if "strategy" in e else "auto"
        if strategy not in STRATEGIES:
            raise r.fail(e["strategy"], f"explore strategy must be one of {', '.join(STRATEGIES)}, not "
                                        f"{strategy!r}.{_closest(strategy, STRATEGIES)}")
        explore = ExploreSpec(
            schedules=r.count(e["schedules"], "explore schedules", MAX_SCHEDULES) if "schedules" in e else 100,
            strategy=strategy,
            expect=r.per_backend(e["expect"], "explore expect", lambda n, w: _expectation(r, n, w))
            if "expect" in e else {},
            line=node.start_mark.line + 1)

    for exp_owner, table in [(None, expect), (None, explore.expect if explore else {})] + \
            [(il, il.expect) for il in interleavings]:
        for exp in table.values():
            if exp.violates and exp.violates not in check_names:
                raise ScenarioError(f"expectation 'violates: {exp.violates}' names no check; checks are: "
                                    f"{', '.join(sorted(check_names)) or 'none'}.{_closest(exp.violates, check_names)}",
                                    path=path, line=exp.line)

    timeouts = Timeouts()
    if "timeouts" in items:
        t = dict((k, v) for k, _, v in r.mapping(items["timeouts"][1], "timeouts", ("step", "lock_wait")))
        lock_wait = r.text(t["lock_wait"], "timeouts lock_wait").strip() if "lock_wait" in t else "report"
        if lock_wait not in LOCK_WAIT:
            raise r.fail(t["lock_wait"], f"timeouts lock_wait must be report (a step asked of a session that "
                                         f"waits for an idle holder is reported at once) or server (the "
                                         f"server's own lock-wait timeout ends the wait), not {lock_wait!r}."
                                         + _closest(lock_wait, LOCK_WAIT))
        timeouts = Timeouts(step=r.number(t["step"], "timeouts step", 0.1, MAX_STEP_TIMEOUT) if "step" in t
                            else Timeouts.step, lock_wait=lock_wait)

    allowed: dict[str, tuple[str, ...]] = {}
    if "allowed_errors" in items:
        def codes(n: yaml.Node, w: str) -> tuple[str, ...]:
            if isinstance(n, yaml.MappingNode):  # not all keys are backends (else per_backend took it)
                r.mapping(n, w, BACKENDS)  # raises on the stray key, with the closest backend
            listed = r.sequence(n, w) if isinstance(n, yaml.SequenceNode) else [n]
            return tuple(r.text(c, f"{w} item").strip() for c in listed)
        allowed = r.per_backend(items["allowed_errors"][1], "allowed_errors", codes)

    name = Path(path).stem
    if "name" in items:
        name = r.text(items["name"][1], "name").strip()
    return Scenario(
        name=name, path=path, sessions=sessions,
        setup=r.sql_blocks(items["setup"][1], "setup", calls=True) if "setup" in items else (),
        teardown=r.sql_blocks(items["teardown"][1], "teardown", calls=True) if "teardown" in items else (),
        interleavings=interleavings, checks=checks, expect=expect, backends=backends,
        description=r.scalar(items["description"][1], "description").strip() if "description" in items else "",
        max_interleavings=r.count(items["max_interleavings"][1], "max_interleavings", MAX_INTERLEAVINGS)
        if "max_interleavings" in items else 100,
        timeouts=timeouts, source="yaml", actors=actors, explore=explore, faults=tuple(faults),
        allowed_errors=allowed,
    )


def load_file(path: str | Path) -> Scenario:
    """Load a ``.yaml``/``.yml`` scenario or a ``.spec`` isolation spec by its extension."""
    p = Path(path)
    if p.suffix not in (".spec", ".yaml", ".yml"):
        raise ScenarioError("unknown file type; scenarios are .yaml/.yml files, isolation specs .spec files.",
                            path=str(p))
    text = safe_yaml.read_text(str(p))  # a regular file, bounded in size, UTF-8
    if p.suffix == ".spec":
        from .spec_loader import load_spec

        return load_spec(text, str(p))
    return load_yaml(text, str(p))


def scenario_files(paths: list[str | Path]) -> Iterator[Path]:
    """Files named on the command line, with folders expanded to their scenarios (sorted)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".spec") and f.is_file())
        else:
            yield p
