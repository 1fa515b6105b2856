"""The shard partition (harness/explore/shard.py) on a pure stand-in for the conductor: exactly once,
in the unsharded order, for every N; budgets and sampling seeds add up; bad K/N is a clear error."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.errors import HarnessError
from harness.explore.shard import Shard, resolve_shard, sharded_exhaustive
from harness.explore.strategies import bounded_exhaustive

from .test_schedules import simulate

SPACES = [{"A": 3, "B": 3}, {"A": 2, "B": 2, "C": 1}, {"A": 4, "B": 3, "C": 2}, {"A": 8, "B": 8}]


@pytest.mark.parametrize("moves", SPACES, ids=lambda m: "".join(f"{a}{n}" for a, n in m.items()))
@pytest.mark.parametrize("bound", [0, 1, 2])
def test_shards_try_each_schedule_exactly_once_in_the_unsharded_order(moves: dict[str, int], bound: int) -> None:
    def run(chooser: object) -> tuple[str, ...]:
        return simulate(chooser, moves)

    whole = list(bounded_exhaustive(run, bound, 10**6))
    assert len(set(whole)) == len(whole)
    for n in range(1, 6):
        parts = [list(sharded_exhaustive(run, run, bound, 10**6, Shard(k, n))) for k in range(1, n + 1)]
        assert Counter(s for part in parts for s in part) == Counter(whole), f"N={n}"
        for part in parts:  # each shard runs its schedules in the order the whole search would
            positions = [whole.index(s) for s in part]
            assert positions == sorted(positions)
        if len(whole) >= 4 * n:  # the split is fair enough to matter: no shard does more than twice its share
            assert max(map(len, parts)) <= 2 * len(whole) / n, [len(p) for p in parts]


def test_adopted_probes_are_not_run_twice() -> None:
    moves = {"A": 4, "B": 3, "C": 2}
    runs: list[str] = []

    def run(chooser: object) -> tuple[str, ...]:
        runs.append("run")
        return simulate(chooser, moves)

    def probe(chooser: object) -> tuple[str, ...]:
        runs.append("probe")
        return simulate(chooser, moves)

    whole = list(bounded_exhaustive(run, 1, 10**6))
    runs.clear()
    parts = [list(sharded_exhaustive(run, probe, 1, 10**6, Shard(k, 3), adopt=lambda c, o: o)) for k in (1, 2, 3)]
    assert Counter(s for part in parts for s in part) == Counter(whole)
    assert runs.count("run") + runs.count("probe") // 3 == len(whole)  # every shard probes the same few


def test_a_limit_caps_each_shard() -> None:
    def run(chooser: object) -> tuple[str, ...]:
        return simulate(chooser, {"A": 4, "B": 4})

    assert [len(list(sharded_exhaustive(run, run, 2, 3, Shard(k, 2)))) for k in (1, 2)] == [3, 3]


@pytest.mark.parametrize("total", [1, 7, 100, 2000])
def test_budgets_and_sampling_seeds_add_up(total: int) -> None:
    for n in range(1, 6):
        shards = [Shard(k, n) for k in range(1, n + 1)]
        assert sum(s.budget(total) for s in shards) == total
        owned = [[i for i in range(total) if s.owns(i)] for s in shards]
        assert sorted(i for seeds in owned for i in seeds) == list(range(total))
        assert [len(seeds) for seeds in owned] == [s.budget(total) for s in shards]
        assert len({s.hypothesis_seed(0) for s in shards}) == n


def test_shard_text_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Shard.parse(" 2/4 ") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    monkeypatch.setenv("HARNESS_SHARD", "3/5")
    assert resolve_shard(None) == Shard(3, 5)
    assert resolve_shard("1/2") == Shard(1, 2)
    monkeypatch.delenv("HARNESS_SHARD")
    assert resolve_shard(None) == Shard(1, 1)


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2"])
def test_a_bad_shard_names_itself_and_the_form(text: str) -> None:
    with pytest.raises(HarnessError, match=r"expected K/N with 1 <= K <= N"):
        Shard.parse(text)
