"""The scenario model: what a YAML scenario or an isolationtester spec says, as plain data.

Loaders (``yaml_loader``, ``spec_loader``) build it and validate it; the engine runs it.  Every
element remembers the source line it came from, so later errors can still point at the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

ANY_BACKEND = "*"

#: actions that act on another session's connection (kill it, or arm a fault for its next SQL step),
#: with the args each takes: the engine runs them on its own thread, with its control connection
FAULT_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "kill_session": ("session",),
    "inject_error": ("session", "code", "message"),
    "lose_commit_ack": ("session",),
})


@dataclass(frozen=True)
class FaultKind:
    """One kind of explorer-placed fault: what its YAML entry takes, and the Race method that makes it
    (``race.<kind>(*args)``).  The one list of fault kinds: the loader, the model and the explorer read it."""

    name: str
    aimed: bool = True  # aimed at one actor (``kind: ACTOR``); else it hits everyone (``kind: true``)
    code: bool = False  # takes ``code:`` (an error's SQLSTATE / MySQL number)
    ms: bool = False  # takes ``ms:`` (a clock skew, a delay)
    what: str = ""  # for docs and errors


FAULT_KINDS: Mapping[str, FaultKind] = MappingProxyType({k.name: k for k in (
    FaultKind("lose_commit_ack", what="the victim's next COMMIT takes effect but its answer is lost"),
    FaultKind("kill_session", what="the server ends the victim's session"),
    FaultKind("inject_error", code=True, what="the victim's next statement fails with this server error"),
    FaultKind("skew_clock", ms=True, what="the victim's database clock jumps by ms"),
    FaultKind("partition", what="the victim's link holds its traffic until healed"),
    FaultKind("cut", what="the victim's link is reset"),
    FaultKind("delay", ms=True, what="the victim's link delays its traffic by ms"),
    FaultKind("crash_server", aimed=False, what="the server is killed and restarted on the same data"),
    FaultKind("redis_outage", aimed=False, what="Redis refuses and resets connections"),
)})


@dataclass(frozen=True)
class SqlText:
    """SQL that may differ per backend: ``by_backend[ANY_BACKEND]`` is the default."""

    by_backend: Mapping[str, str]
    line: int = 0
    call: str | None = None  # setup/teardown only: Python to run instead (``module:function``, hooks.py)
    args: Mapping[str, Any] = field(default_factory=dict)

    def for_backend(self, backend: str) -> str | None:
        if self.call is not None:
            return None
        return self.by_backend.get(backend, self.by_backend.get(ANY_BACKEND))

    @classmethod
    def plain(cls, sql: str, line: int = 0) -> "SqlText":
        return cls({ANY_BACKEND: sql}, line)


@dataclass(frozen=True)
class StepExpect:
    """What a step must do on one backend: succeed, fail with a code, and/or block first."""

    error: str | None = None  # SQLSTATE / error number; "any" for any error
    ok: bool | None = None  # True: must succeed
    blocks: bool | None = None  # True: must be seen blocked; False: must never block
    rows: tuple[tuple[Any, ...], ...] | None = None  # the rows its last result must return
    completes_after: str | None = None  # a step that must have completed before it completes


@dataclass(frozen=True)
class Step:
    name: str
    session: str
    sql: SqlText | None = None
    action: str | None = None  # a harness action name (lock, clock, ...), None for SQL
    args: Mapping[str, Any] = field(default_factory=dict)
    expect: Mapping[str, StepExpect] = field(default_factory=dict)  # backend (or "*") -> expectation
    line: int = 0

    def expect_for(self, backend: str) -> StepExpect | None:
        return self.expect.get(backend, self.expect.get(ANY_BACKEND))


@dataclass(frozen=True)
class Session:
    name: str
    steps: tuple[Step, ...]
    setup: tuple[SqlText, ...] = ()
    teardown: tuple[SqlText, ...] = ()
    isolation: str | None = None  # e.g. "read committed", "repeatable read", "serializable"
    line: int = 0


@dataclass(frozen=True)
class Blocker:
    """isolationtester's step annotations: ``(*)``, ``(otherstep)``, ``(otherstep notices N)``."""

    step: str | None  # None means "*": report as blocked at once
    notices: int | None = None


@dataclass(frozen=True)
class StepRef:
    step: str
    blockers: tuple[Blocker, ...] = ()


@dataclass(frozen=True)
class Check:
    """An invariant evaluated after each interleaving: query returns no rows / some rows / a value."""

    name: str
    sql: SqlText
    kind: str  # "empty" | "nonempty" | "equals" | "durable" (expected: rows per operation)
    expected: Any = None
    line: int = 0


@dataclass(frozen=True)
class Expectation:
    """The verdict an interleaving must have: ``holds`` (all checks pass) or ``violates`` one check."""

    violates: str | None = None  # None means "holds"
    line: int = 0

    def describe(self) -> str:
        return f"violates: {self.violates}" if self.violates else "holds"


@dataclass(frozen=True)
class Interleaving:
    steps: tuple[StepRef, ...]
    name: str | None = None
    expect: Mapping[str, Expectation] = field(default_factory=dict)  # backend (or "*") -> verdict
    line: int = 0
    # what a step must do in this interleaving (replaces the step's own expect): step -> backend -> it
    step_expect: Mapping[str, Mapping[str, StepExpect]] = field(default_factory=dict)

    def expect_of(self, step: "Step", backend: str) -> "StepExpect | None":
        """The step's expectation in this interleaving on ``backend``."""
        own = self.step_expect.get(step.name)
        return own.get(backend, own.get(ANY_BACKEND)) if own is not None else step.expect_for(backend)

    @property
    def label(self) -> str:
        return self.name or " ".join(s.step for s in self.steps)


@dataclass(frozen=True)
class ActorSpec:
    """A Python actor: ``call`` is ``package.module:function``, called as ``function(ctx, **args)``."""

    name: str
    call: str
    args: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class FaultSpec:
    """An optional move the explorer may place: ``kind`` is a key of :data:`FAULT_KINDS` (``actor``
    empty: it hits every session)."""

    name: str
    kind: str
    actor: str
    code: str | None = None
    line: int = 0
    ms: float | None = None  # skew_clock: how far the victim's database clock jumps


@dataclass(frozen=True)
class ExploreSpec:
    """Search the schedules of the actors (or of the sessions' steps) instead of listing them."""

    schedules: int = 100
    strategy: str = "auto"
    expect: Mapping[str, Expectation] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class Timeouts:
    step: float = 10.0  # a step may make no progress this long (the server's deadlock detector
    #                     fires well within it) before the run is declared hung
    # a step asked of a session that waits for a holder with nothing in flight: "report" it as a hang
    # at once, or let the "server"'s own lock-wait timeout end the wait (its error is the step's result)
    lock_wait: str = "report"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    sessions: tuple[Session, ...]
    setup: tuple[SqlText, ...] = ()
    teardown: tuple[SqlText, ...] = ()
    interleavings: tuple[Interleaving, ...] = ()  # empty: all order-preserving interleavings
    checks: tuple[Check, ...] = ()
    expect: Mapping[str, Expectation] = field(default_factory=dict)  # default for interleavings
    backends: tuple[str, ...] = ("postgres", "mysql")
    description: str = ""
    max_interleavings: int = 100
    timeouts: Timeouts = field(default_factory=Timeouts)
    source: str = "yaml"  # "yaml" | "spec"
    actors: tuple[ActorSpec, ...] = ()
    explore: ExploreSpec | None = None
    allowed_errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # backend (or "*") -> codes
    faults: tuple[FaultSpec, ...] = ()

    @property
    def crashes_server(self) -> bool:
        """Whether a fault kills the server: such a scenario runs on a private server of its own."""
        return any(f.kind == "crash_server" for f in self.faults)

    def step(self, name: str) -> Step:
        for session in self.sessions:
            for step in session.steps:
                if step.name == name:
                    return step
        raise KeyError(name)

    @property
    def step_names(self) -> list[str]:
        return [s.name for sess in self.sessions for s in sess.steps]

    def allowed_for(self, backend: str) -> tuple[str, ...]:
        """Error codes (numbers or SQLSTATEs) an actor or an explored step may end with on ``backend``."""
        return self.allowed_errors.get(ANY_BACKEND, ()) + self.allowed_errors.get(backend, ())

    def exploration_expectation(self, backend: str) -> Expectation | None:
        for table in ((self.explore.expect if self.explore else {}), self.expect):
            if backend in table:
                return table[backend]
            if ANY_BACKEND in table:
                return table[ANY_BACKEND]
        return None

    def expectation(self, interleaving: Interleaving, backend: str) -> Expectation | None:
        for table in (interleaving.expect, self.expect):
            if backend in table:
                return table[backend]
            if ANY_BACKEND in table:
                return table[ANY_BACKEND]
        return None
