"""A progress bar for long explorations: schedules done / budget, failures found, rate (schedules/s).

Quiet (no output at all, not even cursor codes) when the output is not a terminal or the ``CI``
environment variable is set to anything but ``""``/``0``/``false``: CI logs and pipes must stay
clean and byte-comparable, and rich's live display would fill them with redraws.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def progress_wanted(file: TextIO) -> bool:
    """A live bar only for a human at a terminal, never in CI."""
    ci = os.environ.get("CI", "").strip().lower()
    try:
        tty = file.isatty()
    except (AttributeError, ValueError):  # closed or fake streams
        tty = False
    return tty and ci in ("", "0", "false")


class ExplorationProgress:
    """``with ExplorationProgress(budget, label) as bar: ... bar.advance(failures_found)``.

    ``failures`` counts failures reported through :meth:`advance` whether or not anything is drawn,
    so callers can use the same object for their summary.
    """

    def __init__(self, total: int, label: str, *, file: TextIO | None = None) -> None:
        self.total, self.label = total, label
        self.file = file if file is not None else sys.stdout
        self.enabled = progress_wanted(self.file)
        self.done = 0
        self.failures = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "ExplorationProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[failures]} failing, {task.fields[rate]} schedules/s"),
                                      TimeElapsedColumn(), transient=True, console=Console(file=self.file))
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, failures=0, rate="0")
        return self

    def advance(self, failures_found: int = 0) -> None:
        """One more schedule done; ``failures_found`` new failures among it."""
        self.done += 1
        self.failures += failures_found
        if self._progress is not None:
            task = self._progress.tasks[0]
            rate = f"{self.done / task.elapsed:.1f}" if task.elapsed else "0"
            self._progress.update(self._task, advance=1, failures=self.failures, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
