"""Schedule strings and choosers (harness/explore/strategies.py) and the CLI's schedule/interleaving parsers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.explore.strategies import (
    IndexChooser,
    PCTChooser,
    RandomChooser,
    ReplayChooser,
    SerialChooser,
    bounded_exhaustive,
    format_schedule,
    parse_schedule,
)
from harness.runner import parse_interleaving, parse_schedule_arg, schedule_movers
from harness.scenario.model import Scenario

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True)


@given(st.lists(names, max_size=12))
def test_schedule_text_round_trips(moves: list[str]) -> None:
    assert parse_schedule(format_schedule(moves)) == moves
    assert parse_schedule(",".join(moves)) == moves


def simulate(chooser: object, moves: dict[str, int]) -> tuple[str, ...]:
    """A pure stand-in for the conductor: the current actor is listed first while it can go on."""
    left = dict(moves)
    current: str | None = None
    done: list[str] = []
    while any(left.values()):
        others = [a for a in moves if left[a] and a != current]
        runnable = ([current] if current is not None and left[current] else []) + others
        current = chooser.choose(runnable, current, len(done))  # type: ignore[attr-defined]
        assert current in runnable
        left[current] -= 1
        done.append(current)
    return tuple(done)


def preemptions(schedule: Sequence[str], moves: dict[str, int]) -> int:
    """Switches away from an actor that still had moves left."""
    left, count = dict(moves), 0
    for prev, nxt in zip(schedule, schedule[1:]):
        left[prev] -= 1
        count += prev != nxt and left[prev] > 0
    return count


@pytest.mark.parametrize("bound", [0, 1, 2, 3])
def test_bounded_exhaustive_yields_exactly_the_schedules_within_the_bound(bound: int) -> None:
    moves = {"A": 2, "B": 2, "C": 1}
    every = {p for p in itertools.permutations("AABBC")}
    expected = {s for s in every if preemptions(s, moves) <= bound}
    found = list(bounded_exhaustive(lambda chooser: simulate(chooser, moves), bound, limit=1000))
    assert set(found) == expected
    assert len(found) == len(set(found))  # no schedule twice


def test_bounded_exhaustive_stops_at_the_limit() -> None:
    found = list(bounded_exhaustive(lambda chooser: simulate(chooser, {"A": 3, "B": 3}), 6, limit=5))
    assert len(found) == 5


@given(st.lists(st.sampled_from("AB"), min_size=0, max_size=8))
def test_replay_follows_the_moves_then_goes_on_without_preemption(prefix: list[str]) -> None:
    moves = {"A": prefix.count("A") + 2, "B": prefix.count("B") + 2}
    run = simulate(ReplayChooser(prefix), moves)
    assert list(run[:len(prefix)]) == prefix
    assert preemptions(run[len(prefix):], {a: n - prefix.count(a) for a, n in moves.items()}) == 0


def test_index_chooser_clamps_and_records() -> None:
    chooser = IndexChooser([5, 0, 1])
    assert simulate(chooser, {"A": 2, "B": 2}) == ("B", "B", "A", "A")
    assert chooser.taken == [1, 0]  # single-choice moves take no decision


@given(st.integers(0, 2**32), st.integers(1, 4))
def test_pct_and_random_are_functions_of_their_seed(seed: int, depth: int) -> None:
    moves = {"A": 3, "B": 3, "C": 2}
    pct = [simulate(PCTChooser(seed, depth=depth, expected_moves=8, actors=list(moves)), moves) for _ in range(2)]
    assert pct[0] == pct[1]
    assert PCTChooser(seed, depth=depth, expected_moves=8).change_points.__len__() == depth - 1
    rnd = [simulate(RandomChooser(seed), moves) for _ in range(2)]
    assert rnd[0] == rnd[1]


def test_serial_chooser_runs_actors_one_after_the_other() -> None:
    assert simulate(SerialChooser(["B", "A"]), {"A": 2, "B": 3}) == ("B", "B", "B", "A", "A")


# -- the CLI's --interleaving and --schedule, checked before any server starts --------------------------

def test_parse_interleaving_returns_the_listed_one_with_its_name(sessions_scenario: Scenario) -> None:
    assert parse_interleaving(sessions_scenario, "a1,a2,a3 b1 b2 b3").name == "serial"
    new = parse_interleaving(sessions_scenario, "b1 a1 b2 a2 b3 a3")
    assert new.name is None and [s.step for s in new.steps] == ["b1", "a1", "b2", "a2", "b3", "a3"]


@pytest.mark.parametrize("text, message", [
    ("", "--interleaving is empty"),
    ("a1 bb1", "names step 'bb1', which no session defines; did you mean 'b1'"),
    ("zzz", "steps are: a1 a2 a3 b1 b2 b3"),
])
def test_parse_interleaving_errors_teach(sessions_scenario: Scenario, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as err:
        parse_interleaving(sessions_scenario, text)
    assert str(err.value).startswith("mem/sessions.yaml: ")


def test_interleaving_of_an_actor_scenario_points_at_schedule(actors_scenario: Scenario) -> None:
    with pytest.raises(ScenarioError, match="use --schedule|with --schedule"):
        parse_interleaving(actors_scenario, "A B")


def test_schedule_movers(sessions_scenario: Scenario, actors_scenario: Scenario) -> None:
    assert schedule_movers(sessions_scenario) == ["a", "b"]
    assert schedule_movers(actors_scenario) == ["A", "B", "ack"]
    assert parse_schedule_arg(actors_scenario, "A ack B,B") == ["A", "ack", "B", "B"]


@pytest.mark.parametrize("text, message", [(" ", "--schedule is empty"), ("A Q", "names 'Q', which")])
def test_parse_schedule_arg_errors(actors_scenario: Scenario, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_schedule_arg(actors_scenario, text)
