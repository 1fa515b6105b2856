"""Splitting one exploration over N shards (``--shard K/N``, ``HARNESS_SHARD``), with no coordinator.

Every shard computes the same partition from what the schedules themselves report, so CI jobs that
cannot talk to each other still try each schedule of the systematic phase exactly once:

* the bounded enumeration is a tree (a node is a decision prefix; running it gives one schedule and
  its children).  All shards run the same few *probe* runs of the top of the tree (uncounted), split
  it into subtrees, and assign the subtrees to shards by estimated size (largest first, to the least
  loaded shard).  A shard then runs its subtrees depth first, in the order one unsharded search would
  run them (the lexicographic order of the decisions), so the first failure of the N shards is the
  unsharded search's first failure;
* sampling strategies (pct, random) take the seeds ``seed + i`` with ``i % N == K - 1``;
* Hypothesis generation gets a seed derived from (seed, K, N): distinct per shard, fixed per shard.

The budget is the exploration's total: shard K runs ``budget // N`` schedules (one more for the first
``budget % N`` shards), so N shards together run what one unsharded exploration would.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import HarnessError
from .strategies import RecordingChooser, bounded_dfs, children, preemptions_of

#: the environment variable CI matrices set instead of passing ``--shard``
SHARD_ENV = "HARNESS_SHARD"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based, as CI matrices count) of ``count``."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str, source: str = "--shard") -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise HarnessError(f"{source} {text!r}: expected K/N with 1 <= K <= N (e.g. 2/4 for the second of four "
                               "shards).")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def from_env(cls) -> Shard | None:
        text = os.environ.get(SHARD_ENV)
        return cls.parse(text, SHARD_ENV) if text else None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def budget(self, total: int) -> int:
        """This shard's part of a total budget (the parts add up to ``total``)."""
        return total // self.count + (1 if self.index - 1 < total % self.count else 0)

    def owns(self, i: int) -> bool:
        """Whether the i-th (0-based) of a numbered sequence (sampling seeds) is this shard's."""
        return i % self.count == self.index - 1

    def hypothesis_seed(self, seed: int) -> int:
        """A seed for Hypothesis generation, distinct per shard and the same every time."""
        return int.from_bytes(hashlib.sha256(f"harness-shard {seed} {self}".encode()).digest()[:8], "big")


def resolve_shard(given: Shard | str | None) -> Shard:
    """An explicit shard, else ``HARNESS_SHARD``, else the whole exploration."""
    if isinstance(given, str):
        return Shard.parse(given)
    return given or Shard.from_env() or Shard()


@dataclass
class _Unit:
    """A part of the tree: a subtree from ``prefix`` (or only its root, once it was split)."""

    prefix: tuple[int, ...]
    weight: float
    split: bool = False


def sharded_exhaustive(run: Callable[[Any], Any], probe: Callable[[Any], Any], preemption_bound: int, limit: int,
                       shard: Shard, adopt: Callable[[Any, Any], Any] | None = None) -> Iterator[Any]:
    """This shard's schedules of :func:`~.strategies.bounded_exhaustive`'s enumeration.

    ``run(chooser)`` runs a schedule counted as tried; ``probe(chooser)`` runs one only to see the
    tree's shape (every shard probes the same ones); ``adopt(chooser, outcome)`` counts a probe of
    this shard's own as tried, in its place in the order, instead of running it again."""
    if shard.count == 1:
        yield from bounded_dfs(run, [()], preemption_bound, limit)
        return
    probed: dict[tuple[int, ...], tuple[RecordingChooser, Any]] = {}

    def keep(chooser: RecordingChooser) -> None:
        probed[tuple(chooser.prefix)] = (chooser, probe(chooser))

    units = _partition(keep, preemption_bound, shard.count)
    mine = sorted((u for u, owner in units if owner == shard.index - 1), key=lambda u: u.prefix)
    count = 0
    for unit in mine:  # in the unsharded order: subtrees are intervals of the lexicographic order
        if count >= limit:
            return
        if unit.split and adopt is not None:
            count += 1
            yield adopt(*probed[unit.prefix])
            continue
        for outcome in bounded_dfs(run, [unit.prefix], preemption_bound, limit - count, expand=not unit.split):
            count += 1
            yield outcome


def _partition(probe: Callable[[RecordingChooser], None], bound: int, n: int) -> list[tuple[_Unit, int]]:
    """Split the top of the tree until no subtree is estimated above a fair share (at most 2N probe
    runs), then deal the parts out: largest first, each to the least loaded shard (ties: the lowest)."""
    pending = [_Unit((), math.inf)]
    done: list[_Unit] = []
    for _ in range(2 * n):
        heaviest = max(pending, key=lambda u: u.weight, default=None)
        if heaviest is None or (heaviest.weight != math.inf and
                                heaviest.weight <= sum(u.weight for u in pending + done) / (2 * n)):
            break
        chooser = RecordingChooser(heaviest.prefix)
        probe(chooser)
        pending.remove(heaviest)
        done.append(_Unit(heaviest.prefix, 1.0, split=True))
        pending += [_Unit(c, _estimate(c, chooser, bound)) for c in children(heaviest.prefix, chooser, bound)]
    load = [0.0] * n
    owners: list[tuple[_Unit, int]] = []
    for unit in sorted(done + pending, key=lambda u: -u.weight):  # stable: ties keep the order above
        owner = min(range(n), key=lambda i: load[i])
        load[owner] += unit.weight
        owners.append((unit, owner))
    return owners


def _estimate(prefix: tuple[int, ...], chooser: RecordingChooser, bound: int) -> float:
    """Schedules under ``prefix``, roughly: the choices left after it, with the preemptions left."""
    left = max(0, bound - preemptions_of(prefix, chooser))
    rest = max(0, len(chooser.taken) - len(prefix))
    branching = max(1.0, sum(o - 1 for o in chooser.options) / max(1, len(chooser.options)))
    return float(sum(math.comb(rest, k) * branching ** k for k in range(left + 1)))
