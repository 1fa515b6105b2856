"""A progress bar for long explorations: schedules done / budget, failures found, rate.

Quiet (no output at all) when stdout is not a terminal or the CI environment variable is set.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class ExplorationProgress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.enabled = sys.stdout.isatty() and not os.environ.get("CI")
        self._progress: Any = None
        self._task: Any = None
        self.failures = 0

    def __enter__(self) -> "ExplorationProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[failures]} failing, {task.fields[rate]}/s"),
                                      TimeElapsedColumn(), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, failures=0, rate="0")
        return self

    def advance(self, failures_found: int = 0) -> None:
        self.failures += failures_found
        if self._progress is not None:
            task = self._progress.tasks[0]
            rate = f"{(task.completed + 1) / task.elapsed:.0f}" if task.elapsed else "0"
            self._progress.update(self._task, advance=1, failures=self.failures, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
