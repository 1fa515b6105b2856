"""All order-preserving interleavings of a scenario's sessions (when a file lists none)."""

from __future__ import annotations

from .errors import ScenarioRunError
from .scenario.model import Interleaving, Scenario, StepRef


def all_interleavings(scenario: Scenario, limit: int) -> list[Interleaving]:
    """Every interleaving that keeps each session's step order (isolationtester's order)."""
    piles = [list(s.steps) for s in scenario.sessions]
    out: list[Interleaving] = []

    def count(sizes: tuple[int, ...]) -> int:
        from math import factorial

        total = factorial(sum(sizes))
        for n in sizes:
            total //= factorial(n)
        return total

    n = count(tuple(len(p) for p in piles))
    if n > limit:
        raise ScenarioRunError(
            f"{scenario.path}: {len(piles)} sessions with {sum(len(p) for p in piles)} steps have {n} "
            f"interleavings, more than the limit of {limit}. List the interesting ones under `interleavings:`, "
            f"raise `max_interleavings:`, or let `harness explore` sample them."
        )

    def recurse(taken: list[int], prefix: list[str]) -> None:
        found = False
        for i, pile in enumerate(piles):
            if taken[i] < len(pile):
                found = True
                taken[i] += 1
                recurse(taken, prefix + [pile[taken[i] - 1].name])
                taken[i] -= 1
        if not found:
            out.append(Interleaving(tuple(StepRef(s) for s in prefix)))

    recurse([0] * len(piles), [])
    return out
