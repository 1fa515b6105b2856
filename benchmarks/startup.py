"""Start-up time of the commands people and scripts run most (issue 17: <= 150 ms on this machine).

Each command runs N times in a fresh interpreter; the figure is the median wall time, next to the
baseline of the same interpreter doing nothing (``python -c pass``), measured in the same run.
``pg_isolation_regress`` calls ``isolationtester -V`` once per spec, so its start-up counts there.

Run: python -m benchmarks startup [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import ROOT, Figure  # noqa: E402

NAME = "startup"
COMMANDS = {
    "harness --help": ["-m", "harness.cli", "--help"],
    "harness isolationtester -V": ["-m", "harness.cli", "isolationtester", "-V"],
    "harness run --help": ["-m", "harness.cli", "run", "--help"],
}


def _median_wall(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run(quick: bool) -> list[Figure]:
    runs = 3 if quick else 15
    baseline = _median_wall(["-c", "pass"], runs)
    figures = []
    for label, args in COMMANDS.items():
        value = _median_wall(args, runs)
        figures.append(Figure(NAME, label, "ms", round(value, 1), round(baseline, 1), "python -c pass",
                              note=f"median of {runs}; target <= 150 ms"))
        print(f"  {label:<32} {value:7.1f} ms  (python -c pass {baseline:.1f} ms)", flush=True)
    return figures


if __name__ == "__main__":
    run("--quick" in sys.argv)
