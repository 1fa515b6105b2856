"""The trace: what happened during one interleaving, as plain data.

The engine writes traces; checks, the text/isolationtester output, the HTML report and exploration
only read them.  Times are seconds on a monotonic clock since the trace started.  ``to_json`` /
``from_json`` round-trip exactly (the JSON results file and the report are built from it).

Event kinds:
  ``setup`` / ``teardown``  SQL run outside the interleaving (``session`` None = global)
  ``launch``      a step was sent to its session
  ``blocked``     the server says the step waits; ``waits`` names on whom and which lock
  ``complete``    the step finished; ``result`` holds rows or the error
  ``notice``      a server notice received by a session while it ran a step
  ``hang``        nothing could progress within the bound; ``waits`` is the wait-for graph
  ``cancel``      the harness cancelled/terminated a stuck step (after a hang)
  ``fault``       an injected fault (clock freeze, lease expiry, kill, partition, crash...)
  ``op``          an operation an actor marked (``ctx.op``) ended: ok, fail or unknown
  ``check``       an invariant evaluated after the interleaving (``result`` + ``detail``)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ErrorInfo:
    """A server error as both paths record it: the code expectations name first, plus every other
    identity the driver gave, so an expectation may name either (``matches``)."""

    code: str | None  # SQLSTATE (PostgreSQL) or error number (MySQL family)
    message: str
    severity: str = "ERROR"
    detail: str | None = None
    sqlstate: str | None = None  # the SQLSTATE, where the server sent one (MySQL family: often coarse)
    driver: str | None = None  # the driver's exception class (psycopg.errors.UniqueViolation, ...)

    def matches(self, code: str) -> bool:
        """Whether an expectation's ``code`` (error number or SQLSTATE) names this error."""
        return code in (self.code, self.sqlstate)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ErrorInfo":
        return cls(**d)


@dataclass
class ResultSet:
    """One statement's result: rows as the server's text, or just a command tag."""

    columns: list[str] | None = None
    rows: list[list[str | None]] | None = None
    command: str | None = None  # e.g. "UPDATE 1", "SELECT 2"
    rowcount: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ResultSet":
        return cls(**d)


@dataclass
class StepResult:
    results: list[ResultSet] = field(default_factory=list)
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def last_rows(self) -> list[list[str | None]]:
        for rs in reversed(self.results):
            if rs.rows is not None:
                return rs.rows
        return []

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "StepResult":
        return cls(results=[ResultSet.from_json(r) for r in d.get("results", [])],
                   error=ErrorInfo.from_json(d["error"]) if d.get("error") else None)


@dataclass
class WaitEdge:
    """``waiter`` (a session name) waits for ``holder`` (a session name, or None if not one of ours)."""

    waiter: str
    holder: str | None
    lock: str
    detail: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "WaitEdge":
        return cls(**d)


@dataclass
class Event:
    t: float
    kind: str
    session: str | None = None
    step: str | None = None
    sql: str | None = None
    result: StepResult | None = None
    waits: list[WaitEdge] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v not in (None, [], {})} | {"t": round(self.t, 6), "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Event":
        return cls(t=d["t"], kind=d["kind"], session=d.get("session"), step=d.get("step"), sql=d.get("sql"),
                   result=StepResult.from_json(d["result"]) if d.get("result") else None,
                   waits=[WaitEdge.from_json(w) for w in d.get("waits", [])], detail=d.get("detail", {}))


@dataclass
class Trace:
    """Everything that happened in one run of one interleaving (or schedule) on one backend."""

    scenario: str
    backend: str
    interleaving: list[str]
    events: list[Event] = field(default_factory=list)
    server: str = ""  # e.g. "postgres 15.18"
    sessions: list[str] = field(default_factory=list)
    hung: bool = False

    # -- queries used by checks, formatters and the explorer ---------------------------------
    def completions(self) -> list[Event]:
        return [e for e in self.events if e.kind == "complete"]

    def result_of(self, step: str) -> StepResult | None:
        for e in self.events:
            if e.kind == "complete" and e.step == step:
                return e.result
        return None

    def was_blocked(self, step: str) -> bool:
        return any(e.kind == "blocked" and e.step == step for e in self.events)

    def errors(self) -> dict[str, ErrorInfo]:
        return {e.step: e.result.error for e in self.completions() if e.step and e.result and e.result.error}

    def checks(self) -> list[Event]:
        return [e for e in self.events if e.kind == "check"]

    def violated(self) -> list[str]:
        return [e.step for e in self.checks() if e.step and not e.detail.get("ok", False)]

    def completion_order(self) -> list[str]:
        return [e.step for e in self.completions() if e.step]

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "backend": self.backend, "interleaving": list(self.interleaving),
                "server": self.server, "sessions": list(self.sessions), "hung": self.hung,
                "events": [e.to_json() for e in self.events]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Trace":
        return cls(scenario=d["scenario"], backend=d["backend"], interleaving=list(d["interleaving"]),
                   events=[Event.from_json(e) for e in d.get("events", [])], server=d.get("server", ""),
                   sessions=list(d.get("sessions", [])), hung=d.get("hung", False))


def wait_cycle(edges: list[WaitEdge]) -> list[str]:
    """One cycle of the wait-for graph (session names in waiting order), or [] if there is none."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.waiter, set())
        if e.holder:
            graph[e.waiter].add(e.holder)
    for start in sorted(graph):
        path, node, seen = [start], start, {start}
        while True:
            nxt = sorted(h for h in graph.get(node, ()) if h in graph)
            if not nxt:
                break
            node = nxt[0]
            if node in seen:
                return path[path.index(node):]
            path.append(node)
            seen.add(node)
    return []
