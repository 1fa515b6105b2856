"""Scenario files as pytest items (collected by :func:`harness.pytest_plugin.pytest_collect_file`): one
item per listed interleaving and backend, one per exploration (or per shard of one, ``--harness-spread``),
each failing with the outcome's trace and replay command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import pytest_spread
from .errors import HarnessError
from .pool import ServerPool
from .provision import Server
from .redact import sanitize


def _pool(config: pytest.Config) -> ServerPool:
    from .pytest_plugin import POOL_KEY  # the plugin owns the pool; it imports this module when collecting

    return config.stash[POOL_KEY]


def _get(pool: ServerPool, service: str) -> Server:
    from .pytest_plugin import _get as get

    return get(pool, service)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .runner import interleavings_of
        from .scenario.yaml_loader import load_file

        try:
            scenario = load_file(self.path)
            listed = scenario.sessions and (scenario.interleavings or scenario.explore is None)
            interleavings = interleavings_of(scenario) if listed else []
        except HarnessError as exc:
            raise self.CollectError(sanitize(str(exc))) from None
        pool = _pool(self.config)
        for backend in [b for b in pool.settings.backends if b in scenario.backends]:
            for il in interleavings:
                yield ScenarioItem.from_parent(self, name=f"{backend}:{il.label}", scenario=scenario,
                                               backend=backend, interleaving=il)
            for shard in pytest_spread.shards(self.config) if scenario.explore is not None else []:
                yield ExplorationItem.from_parent(self, name=f"{backend}:explore" + (f"[{shard}]" if shard else ""),
                                                  scenario=scenario, backend=backend, interleaving=None, shard=shard)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, backend: str, interleaving: Any, shard: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario, self.backend, self.interleaving, self.shard = scenario, backend, interleaving, shard
        self.outcome: Any = None

    def runtest(self) -> None:
        from .runner import run_scenario

        pool = _pool(self.config)
        server = _get(pool, self.backend)
        (self.outcome,) = run_scenario(self.scenario, self.backend, server, interleavings=[self.interleaving],
                                       redis=lambda: _get(pool, "redis").info)
        if not self.outcome.passed:
            raise ScenarioFailure(self.outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailure):
            from .report.text import trace_lines

            o = excinfo.value.outcome
            lines = [f"{o.path} [{o.backend}] {o.label}: expected {o.expected}"]
            lines += [f"  - {p}" for p in o.problems]
            if o.trace is not None:
                lines += trace_lines(o.trace)
            lines.append(f"schedule: {' '.join(o.schedule)}")
            lines.append(f"replay:   {o.replay}")
            return sanitize("\n".join(lines))  # the terminal and JUnit XML: no control codes, no passwords
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.interleaving.line or 0, f"{self.scenario.name} [{self.backend}] {self.interleaving.label}"


class ExplorationItem(ScenarioItem):
    """A scenario's ``explore:`` section on one backend: found (or not) as the scenario expects."""

    def runtest(self) -> None:
        from .explore.scenario import explore_scenario

        pool = _pool(self.config)
        server = _get(pool, self.backend)
        self.outcome = pytest_spread.run_shard(self, self.shard, lambda shard, progress: explore_scenario(
            self.scenario, self.backend, server, redis=lambda: _get(pool, "redis").info,
            schedule=self.config.getoption("harness_replay"), progress=progress, shard=shard,
            database_dir=str(self.config.rootpath / ".hypothesis" / "harness"), private=pool.private))
        if not self.outcome.passed:
            raise ScenarioFailure(self.outcome)

    def reportinfo(self) -> tuple[Any, int, str]:
        line = self.scenario.explore.line if self.scenario.explore else 0
        return self.path, line, f"{self.scenario.name} [{self.backend}] exploration"


class ScenarioFailure(Exception):
    """An interleaving did not do what its scenario expects (the outcome says how)."""

    def __init__(self, outcome: Any) -> None:
        super().__init__("; ".join(outcome.problems))
        self.outcome = outcome
