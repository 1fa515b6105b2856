"""Ways to take a schedule's decisions, all behind the :class:`~.scheduler.Chooser` interface.

``runnable`` always lists the actor that moved last first (when it can go on), so index 0 means
"no context switch": Hypothesis shrinks draws toward 0, i.e. toward fewer preemptions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from hypothesis import strategies as st

from ..errors import Divergence


def parse_schedule(text: str) -> list[str]:
    """``"A A B"`` or ``"A,A,B"`` -> ["A", "A", "B"]."""
    return text.replace(",", " ").split()


def format_schedule(schedule: Sequence[str]) -> str:
    return " ".join(schedule)


@dataclass
class ContinueChooser:
    """No preemption: the current actor goes on while it can; otherwise the first in declaration order."""

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        return runnable[0]


@dataclass
class ReplayChooser:
    """Exactly the recorded moves; after them, no preemption.  A move that is not possible diverges."""

    schedule: Sequence[str]

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        return self.schedule[index] if index < len(self.schedule) else runnable[0]


@dataclass
class StepChooser:
    """A listed interleaving of scenario steps, followed by session actors: each step is moved to
    (its actor's start or resume moves first) and then run, so an explored run of a listed order
    can be compared with the engine's.  A step whose session cannot move there diverges."""

    steps: Sequence[tuple[str, str]]  # (session, step) in the listed order
    labels: Any = None  # actor name -> its pending label, given by the scheduler (bind)
    pos: int = 0

    def bind(self, labels: Any) -> None:
        self.labels = labels

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if self.pos >= len(self.steps):
            return runnable[0]
        session, step = self.steps[self.pos]
        label = str(self.labels(session))
        if session in runnable and label.startswith(f"{step}: "):
            self.pos += 1
        elif session in runnable and label != "start" and not label.startswith(("resume after ", "retry ")):
            raise Divergence(f"the listed order cannot be followed: step {step} is next, but session {session} "
                             f"is at {label.split(':', 1)[0]!r}")
        return session  # its start/resume move, the step itself, or not runnable: a divergence


@dataclass
class IndexChooser:
    """Decisions as indexes into ``runnable`` (0 = go on); used to shrink and to test minimality."""

    indexes: Sequence[int]
    taken: list[int] = field(default_factory=list)

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if len(runnable) == 1:
            return runnable[0]
        pos = len(self.taken)
        i = self.indexes[pos] if pos < len(self.indexes) else 0
        i = min(i, len(runnable) - 1)
        self.taken.append(i)
        return runnable[i]


@dataclass
class HypothesisChooser:
    """Draws each real decision from Hypothesis (only when more than one actor can move)."""

    data: Any
    taken: list[int] = field(default_factory=list)

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if len(runnable) == 1:
            return runnable[0]
        i: int = self.data.draw(st.integers(0, len(runnable) - 1), label=f"move {index + 1}")
        self.taken.append(i)
        return runnable[i]


@dataclass
class RandomChooser:
    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        return self.rng.choice(list(runnable))


@dataclass
class PCTChooser:
    """Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010) with bug depth ``depth``.

    Actors get random distinct priorities; the highest-priority runnable actor always moves; at
    ``depth - 1`` random change points (among the first ``expected_moves``) the running actor's
    priority drops below all others.  Finds a depth-d bug with probability >= 1/(n k^(d-1)).
    """

    seed: int
    depth: int = 2
    expected_moves: int = 50
    actors: Sequence[str] = ()
    priorities: dict[str, float] = field(default_factory=dict)
    change_points: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        order = list(self.actors)
        rng.shuffle(order)
        self.priorities = {a: float(len(order) - i + self.depth) for i, a in enumerate(order)}
        points = range(1, max(2, self.expected_moves))
        self.change_points = set(rng.sample(list(points), min(self.depth - 1, len(points))))

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if index in self.change_points and current is not None:
            self.priorities[current] = float(min(self.priorities.values(), default=1.0)) - 1.0
        for name in runnable:
            self.priorities.setdefault(name, 0.0)
        return max(runnable, key=lambda n: self.priorities[n])


@dataclass
class SerialChooser:
    """Runs actors one after the other in ``order`` (for the serializability oracle)."""

    order: Sequence[str]

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if current in runnable:
            return current  # type: ignore[return-value]
        for name in self.order:
            if name in runnable:
                return name
        return runnable[0]


@dataclass
class RecordingChooser:
    """Follows a prefix of index decisions, then goes on without preemption, recording alternatives."""

    prefix: Sequence[int]
    taken: list[int] = field(default_factory=list)
    options: list[int] = field(default_factory=list)  # how many actors could move at each decision
    preempt: list[bool] = field(default_factory=list)  # whether choosing != 0 there is a preemption

    def choose(self, runnable: Sequence[str], current: str | None, index: int) -> str:
        if len(runnable) == 1:
            return runnable[0]
        pos = len(self.taken)
        i = self.prefix[pos] if pos < len(self.prefix) else 0
        i = min(i, len(runnable) - 1)
        self.taken.append(i)
        self.options.append(len(runnable))
        self.preempt.append(current is not None and runnable[0] == current)
        return runnable[i]


def bounded_exhaustive(run: Any, preemption_bound: int, limit: int) -> Iterator[Any]:
    """Every schedule with at most ``preemption_bound`` preemptions (iterative context bounding).

    ``run(chooser)`` executes one schedule and returns its outcome; yields outcomes, at most ``limit``.
    The order is depth-first, which is the lexicographic order of the schedules' decision indexes
    (:mod:`.shard` relies on that to merge shards' first failures as one search would find them).
    """
    return bounded_dfs(run, [()], preemption_bound, limit)


def bounded_dfs(run: Any, roots: list[tuple[int, ...]], preemption_bound: int, limit: int,
                expand: bool = True) -> Iterator[Any]:
    """Depth-first from the subtree roots ``roots`` (the last is run first), at most ``limit`` runs;
    without ``expand`` only the roots themselves run."""
    stack = list(roots)
    seen: set[tuple[int, ...]] = set()
    count = 0
    while stack and count < limit:
        prefix = stack.pop()
        chooser = RecordingChooser(prefix)
        outcome = run(chooser)
        count += 1
        yield outcome
        taken = tuple(chooser.taken)
        if taken in seen:
            continue
        seen.add(taken)
        if expand:
            stack.extend(new for new in children(prefix, chooser, preemption_bound) if new not in seen)


def children(prefix: tuple[int, ...], chooser: RecordingChooser, preemption_bound: int) -> list[tuple[int, ...]]:
    """The prefixes one decision away from ``chooser``'s run of ``prefix`` within the preemption bound,
    in the order they are pushed (the last is explored first)."""
    taken = tuple(chooser.taken)
    out: list[tuple[int, ...]] = []
    for pos in range(len(prefix), len(taken)):
        for alt in range(chooser.options[pos] - 1, 0, -1):
            new = taken[:pos] + (alt,)
            if preemptions_of(new, chooser) <= preemption_bound:
                out.append(new)
    return out


def preemptions_of(decisions: Sequence[int], chooser: RecordingChooser) -> int:
    """Context switches away from a runnable actor among ``decisions`` (along ``chooser``'s run)."""
    return sum(1 for p, i in zip(chooser.preempt[:len(decisions)], decisions) if p and i != 0)
