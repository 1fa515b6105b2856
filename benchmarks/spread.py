"""One exploration spread over pytest-xdist workers (``pytest -n 2 --harness-spread 2``) vs one worker.

A scenario file with three sessions (read, increment and read again their own row, commit: the check holds on every
schedule) explored exhaustively (every schedule with at most 2 preemptions), run by pytest as a user runs
it.  The rate is the schedules of the exploration divided by its wall: for the spread run, the slowest
shard's (the shards run at the same time on the two workers); the baseline is the same exploration on
one worker (``-p no:xdist``).  Both come from the JSON results pytest writes (``--harness-report``),
where the shards are merged into one exploration.  Quick mode bounds preemptions at 1.

Run: python -m benchmarks spread [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import ROOT, Figure  # noqa: E402

NAME = "spread"

SCENARIO = """name: three-counters
setup:
  - CREATE TABLE counter (id varchar(1) PRIMARY KEY, n int)
  - INSERT INTO counter VALUES ('a', 0), ('b', 0), ('c', 0)
teardown: DROP TABLE counter
sessions:
{sessions}
checks:
  all_counted:
    sql: SELECT sum(n) FROM counter
    expect: {{equals: {count}}}
explore:
  strategy: exhaustive
  schedules: 100000
  expect: holds
"""

SESSION = """  {s}:
    steps:
      {s}_begin: BEGIN
      {s}_read: SELECT n FROM counter WHERE id = '{s}'
      {s}_write: UPDATE counter SET n = n + 1 WHERE id = '{s}'
      {s}_again: SELECT n FROM counter WHERE id = '{s}'
      {s}_commit: COMMIT
"""


def _run(folder: Path, args: list[str], report: Path) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's harness, wherever pytest runs
    done = subprocess.run([sys.executable, "-m", "pytest", "scenarios", "--backend", "postgres", "-q",
                           "-p", "no:cacheprovider", "--harness-report", str(report), *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise AssertionError(done.stdout[-2000:] + done.stderr[-2000:])
    (outcome,) = json.loads((report / "results.json").read_text())["outcomes"]
    return int(outcome["schedules_run"]), float(outcome["duration"])


def run(quick: bool) -> list[Figure]:
    sessions = "".join(SESSION.format(s=s) for s in "ab" if quick) or "".join(SESSION.format(s=s) for s in "abc")
    with tempfile.TemporaryDirectory(prefix="spread-bench-") as tmp:
        folder = Path(tmp)
        (folder / "scenarios").mkdir()
        text = SCENARIO.format(sessions=sessions, count=2 if quick else 3)
        (folder / "scenarios" / "counters.yaml").write_text(text)
        one = _run(folder, ["-p", "no:xdist"], folder / "one")
        two = _run(folder, ["-n", "2", "--harness-spread", "2"], folder / "two")
    if one[0] != two[0]:
        raise AssertionError(f"the spread exploration ran {two[0]} schedules, the unspread one {one[0]}")
    rate_one, rate_two = one[0] / one[1], two[0] / two[1]
    print(f"  1 worker: {one[0]} schedules in {one[1]:.2f} s; 2 workers: {two[0]} in {two[1]:.2f} s", flush=True)
    actors = 2 if quick else 3
    return [Figure(NAME, "schedules/s of one exploration, 2 xdist workers", "schedules/s", round(rate_two, 1),
                   round(rate_one, 1), "1 worker", note=f"{two[0]} schedules ({actors} sessions, exhaustive); "
                   "wall of the slowest shard; target >= 1.8x")]


if __name__ == "__main__":
    run("--quick" in sys.argv)
