"""Results of a run as plain data: one :class:`Outcome` per (scenario, backend, interleaving or
exploration).  Serialised as the JSON results file that reports are rendered from (schema in
``docs/results-schema.md``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .redact import mask_all
from .trace import Trace

SCHEMA_VERSION = 1


@dataclass
class Outcome:
    scenario: str
    path: str
    backend: str
    label: str  # interleaving name or its steps; "exploration" for explored ones
    schedule: list[str]  # the steps (or actor decisions) in order
    passed: bool
    expected: str  # "holds" / "violates: <check>"
    violated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0
    trace: Trace | None = None
    error: str | None = None  # the scenario could not run at all (setup failed, ...)
    kind: str = "interleaving"  # "interleaving" | "exploration"
    schedules_run: int = 1  # explorations: how many schedules were tried
    seed: int | None = None
    found_after: int | None = None  # explorations: schedules until the first failure
    preemptions: int | None = None  # explorations: context switches in the minimal schedule
    exhausted: bool = False  # explorations: every distinct schedule was tried
    stop_reason: str | None = None  # explorations: why the search stopped (failure found, budget, exhausted)
    replayed: bool = False  # explorations: the schedule was given by the user, not found and minimized
    replay_command: list[str] | None = None  # race tests: the pytest command that replays the schedule
    nearest_passing: list[str] = field(default_factory=list)  # explorations: the failure minus one preemption
    nearest_trace: Trace | None = None  # ... as run (it passed)
    shard: str | None = None  # explorations: "K/N" when one shard's part (harness/explore/shard.py)
    found_key: list[int] | None = None  # explorations: orders shards' failures as one search would find them

    @property
    def replay_argv(self) -> list[str]:
        """The command that reproduces exactly this outcome, as an argv (saved schedules keep this)."""
        if self.replay_command:
            return list(self.replay_command)
        if self.kind == "exploration":
            if not self.schedule:
                return ["harness", "explore", self.path, "--backend", self.backend]
            return ["harness", "run", self.path, "--backend", self.backend, "--schedule", " ".join(self.schedule)]
        return ["harness", "run", self.path, "--backend", self.backend, "--interleaving", " ".join(self.schedule)]

    @property
    def replay(self) -> str:
        """:attr:`replay_argv` as a shell line, for people to copy."""
        return shlex.join(self.replay_argv)

    def to_json(self) -> dict[str, Any]:
        """Plain data, with any ``scheme://user:password@`` in it masked (it is written and shown)."""
        data: dict[str, Any] = mask_all({
            "scenario": self.scenario, "path": self.path, "backend": self.backend, "label": self.label,
            "schedule": list(self.schedule), "passed": self.passed, "expected": self.expected,
            "violated": list(self.violated), "problems": list(self.problems),
            "duration": round(self.duration, 6), "error": self.error, "kind": self.kind,
            "schedules_run": self.schedules_run, "seed": self.seed, "found_after": self.found_after,
            "preemptions": self.preemptions, "exhausted": self.exhausted, "stop_reason": self.stop_reason,
            "replayed": self.replayed, "replay": self.replay, "shard": self.shard, "found_key": self.found_key,
            **({"replay_command": list(self.replay_command)} if self.replay_command else {}),
            "trace": self.trace.to_json() if self.trace else None,
            "story": _story(self.trace), "nearest_passing": {
                "schedule": list(self.nearest_passing), "trace": self.nearest_trace.to_json(),
                "story": _story(self.nearest_trace)} if self.nearest_trace else None})
        return data

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Outcome":
        return cls(scenario=d["scenario"], path=d["path"], backend=d["backend"], label=d["label"],
                   schedule=list(d["schedule"]), passed=d["passed"], expected=d["expected"],
                   violated=list(d.get("violated", [])), problems=list(d.get("problems", [])),
                   duration=d.get("duration", 0.0), error=d.get("error"), kind=d.get("kind", "interleaving"),
                   schedules_run=d.get("schedules_run", 1), seed=d.get("seed"),
                   found_after=d.get("found_after"), preemptions=d.get("preemptions"),
                   exhausted=d.get("exhausted", False), stop_reason=d.get("stop_reason"),
                   replayed=d.get("replayed", False), replay_command=d.get("replay_command"),
                   shard=d.get("shard"), found_key=d.get("found_key"),
                   trace=Trace.from_json(d["trace"]) if d.get("trace") else None,
                   nearest_passing=list((d.get("nearest_passing") or {}).get("schedule", [])),
                   nearest_trace=Trace.from_json(d["nearest_passing"]["trace"]) if d.get("nearest_passing") else None)


def _story(trace: Trace | None) -> dict[str, Any] | None:
    """The trace told (labelled moves, spans, checks, narrative): derived, written for readers of the
    JSON, ignored when read back (it is rebuilt from the trace)."""
    if trace is None:
        return None
    from .report.story import build_story  # the report package reads results: imported when used

    return build_story(trace).to_json()


@dataclass
class RunResults:
    outcomes: list[Outcome] = field(default_factory=list)
    started: str = ""  # ISO 8601, UTC
    duration: float = 0.0
    harness_version: str = ""
    servers: dict[str, str] = field(default_factory=dict)  # backend -> "postgres 15.18"
    command: str = ""  # as typed; masked when written or shown

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        """Plain data, passwords masked: ``command`` is the argv, which may hold a ``--pg-dsn``."""
        head = mask_all({"schema": SCHEMA_VERSION, "started": self.started, "duration": round(self.duration, 6),
                         "harness_version": self.harness_version, "servers": dict(self.servers),
                         "command": self.command, "passed": self.passed})
        return {**head, "outcomes": [o.to_json() for o in self.outcomes]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunResults":
        return cls(outcomes=[Outcome.from_json(o) for o in d.get("outcomes", [])], started=d.get("started", ""),
                   duration=d.get("duration", 0.0), harness_version=d.get("harness_version", ""),
                   servers=dict(d.get("servers", {})), command=d.get("command", ""))


def load_results(path: str | Path) -> RunResults:
    """Read a results file (``harness run --json``), with a user-facing error for a missing, malformed or
    too-new one: the one reader of the HTML renderer and the shard merge."""
    import json

    from .errors import HarnessError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarnessError(f"cannot read results file {path}: {exc.strerror or exc}.") from None
    except ValueError as exc:
        raise HarnessError(f"{path} is not JSON ({exc}); pass files written by `harness run --json` or "
                           "`--report`.") from None
    if not isinstance(data, dict) or not isinstance(data.get("outcomes"), list):
        raise HarnessError(f"{path} is not a harness results file (no 'outcomes' list).")
    schema = data.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise HarnessError(f"{path} has results schema {schema!r}, newer than this harness reads ({SCHEMA_VERSION}); "
                           "upgrade race-harness to read it.")
    try:
        return RunResults.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(f"{path} does not match the results schema: {exc!r}.") from None
