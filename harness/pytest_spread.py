"""Opt-in: one scenario exploration spread over pytest-xdist workers (``--harness-spread N``).

Each scenario exploration becomes N test items, shard 1/N … N/N of it (harness/explore/shard.py), which
xdist hands to its workers like any other items.  The shard that finds a failure first wins: it leaves
a note in a folder the controller made for this run (handed to the workers with their servers'
connection info), and the other shards of that exploration, which look for the note after every
schedule, stop and are reported as skipped ("shard K/N found the failure first").  Without xdist the
shards run one after the other, and a shard whose exploration already failed does not start.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from .results import Outcome

DIR_KEY = "harness_spread_dir"
BOARD_KEY = pytest.StashKey["StopBoard"]()


class SpreadStopped(BaseException):
    """Another shard found the failure (a BaseException: Hypothesis lets it through at once)."""

    def __init__(self, winner: str) -> None:
        super().__init__(winner)
        self.winner = winner


@dataclass
class StopBoard:
    """One note per exploration whose failure was found, in a folder shared by the run's workers."""

    folder: Path

    def _note(self, exploration: str) -> Path:
        return self.folder / hashlib.sha256(exploration.encode()).hexdigest()[:24]

    def announce(self, exploration: str, shard: str) -> None:
        note = self._note(exploration)
        if not note.exists():  # the first wins; a rename is atomic
            partial = note.with_suffix(f".{shard.replace('/', 'of')}")
            partial.write_text(shard)
            partial.replace(note)

    def winner(self, exploration: str) -> str | None:
        try:
            return self._note(exploration).read_text() or None
        except OSError:
            return None

    def checker(self, exploration: str) -> Callable[[int, int], None]:
        """A progress callback that stops this shard once another one found the failure."""
        def check(done: int, total: int) -> None:
            winner = self.winner(exploration)
            if winner is not None:
                raise SpreadStopped(winner)
        return check


def add_option(group: Any) -> None:
    group.addoption("--harness-spread", dest="harness_spread", type=int, default=None, metavar="N",
                    help="split each scenario exploration into N shard items for xdist's workers; the shard "
                         "that finds a failure first wins, the others stop (opt-in)")


def configure(config: pytest.Config) -> None:
    """Make (controller) or find (worker) the run's note folder when spreading is asked for."""
    spread = config.getoption("harness_spread", None)
    if not spread:
        return
    if spread < 2:
        raise pytest.UsageError(f"--harness-spread {spread}: give the number of shards, at least 2.")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and DIR_KEY in workerinput:
        config.stash[BOARD_KEY] = StopBoard(Path(workerinput[DIR_KEY]))
        return
    folder = Path(tempfile.mkdtemp(prefix="harness-spread-"))
    config.stash[BOARD_KEY] = StopBoard(folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_Controller(str(folder)), "harness-spread-controller")


class _Controller:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[DIR_KEY] = self.folder


def shards(config: pytest.Config) -> list[str | None]:
    """The shard of each exploration item to collect: one whole item, or N shard items."""
    spread = config.getoption("harness_spread", None)
    return [f"{k}/{spread}" for k in range(1, spread + 1)] if spread else [None]


# -- race tests (the ``race`` fixture): a parameter per shard ------------------------------------------

SHARD_ARG = "harness_spread_shard"


def _shard_id(shard: str) -> str:
    return "shard" + shard.replace("/", "of")


def unsharded(text: str, shard: str | None) -> str:
    """A node id or name without the shard's parameter id (the exploration all its shards share)."""
    if not shard:
        return text
    return text.replace(f"-{_shard_id(shard)}]", "]").replace(f"[{_shard_id(shard)}-", "[").replace(
        f"[{_shard_id(shard)}]", "")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.config.getoption("harness_spread", None) and SHARD_ARG in metafunc.fixturenames:
        parts = shards(metafunc.config)
        metafunc.parametrize(SHARD_ARG, parts, ids=[_shard_id(str(p)) for p in parts], indirect=True)


@pytest.fixture
def harness_spread_shard(request: pytest.FixtureRequest) -> str | None:
    """This race test's shard under ``--harness-spread`` (None otherwise)."""
    shard: str | None = getattr(request, "param", None)
    return shard


def checker(item: Any, shard: str | None) -> Callable[[int, int], None] | None:
    """The race's progress callback that stops its shard when another one failed."""
    return item.config.stash[BOARD_KEY].checker(unsharded(item.nodeid, shard)) if shard else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A race test's shard: skipped when another shard failed first; its own failure stops the others."""
    callspec = getattr(item, "callspec", None)
    shard = callspec.params.get(SHARD_ARG) if callspec is not None else None
    if not shard:
        return (yield)
    board, exploration = item.config.stash[BOARD_KEY], unsharded(item.nodeid, shard)
    winner = board.winner(exploration)
    if winner is not None:
        pytest.skip(f"shard {winner} found the failure first")
    try:
        return (yield)
    except SpreadStopped as stopped:
        pytest.skip(f"stopped: shard {stopped.winner} found the failure first")
    except Exception:
        board.announce(exploration, shard)
        raise


# -- scenario explorations: an item per shard ------------------------------------------------------

def run_shard(item: Any, shard: str | None, explore: Callable[[Any, Any], Outcome]) -> Outcome:
    """``explore(shard, progress)`` for this item, stopping (as a skip) when another shard wins."""
    if shard is None:
        return explore(item.config.getoption("harness_shard"), None)
    board = item.config.stash[BOARD_KEY]
    exploration = f"{item.path}::{item.backend}"
    winner = board.winner(exploration)
    if winner is not None:
        pytest.skip(f"shard {winner} found the failure first")
    try:
        outcome = explore(shard, board.checker(exploration))
    except SpreadStopped as stopped:
        pytest.skip(f"stopped: shard {stopped.winner} found the failure first")
    if outcome.stop_reason == "failure found":
        board.announce(exploration, shard)
    return outcome
