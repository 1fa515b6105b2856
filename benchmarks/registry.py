"""The benchmarks ``python -m benchmarks`` knows, in run order: name -> module with ``run(quick)``.

A registry entry is a module path, imported only when that benchmark runs (so one benchmark's missing
optional dependency does not stop the others from being listed or run).
"""

from __future__ import annotations

import importlib
from typing import Callable

from .core import Figure

BENCHMARKS: dict[str, str] = {
    "provision": "benchmarks.provision",
    "isolation_corpus": "benchmarks.isolation_corpus",
    "explore_rate": "benchmarks.explore_rate",
    "narrow_window": "benchmarks.narrow_window",
    "seeds_vs_threads": "benchmarks.seeds_vs_threads",
    "fault_cost": "benchmarks.fault_cost",
    "determinism": "benchmarks.determinism",
    "startup": "benchmarks.startup",
    "shrink": "benchmarks.shrink",
    "app_paths": "benchmarks.app_paths",
    "containers": "benchmarks.containers",
    "recording": "benchmarks.recording",
    "stacks": "benchmarks.stacks",
    "async_paths": "benchmarks.async_paths",
    "shard": "benchmarks.shard",
    "isolation_regress": "benchmarks.isolation_regress",
    "spread": "benchmarks.spread",
    "django_orm": "benchmarks.django_orm",
}

#: benchmarks whose figures have no baseline by nature (a count of failures, not a speed)
NO_BASELINE = frozenset({"determinism"})


def runner(name: str) -> Callable[[bool], list[Figure]]:
    module = importlib.import_module(BENCHMARKS[name])
    fn: Callable[[bool], list[Figure]] = module.run
    return fn
