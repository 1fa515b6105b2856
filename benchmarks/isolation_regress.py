"""PostgreSQL's isolation corpus as ``make installcheck`` runs it: ``pg_isolation_regress`` starting one
isolationtester process per spec, with the real isolationtester and with ours (issue 17: <= 1.0x).

pg_isolation_regress looks for ``isolationtester`` next to itself and checks its ``-V``, so ours runs
from a scratch folder written by ``harness isolation-wrapper`` (a copy of pg_isolation_regress and an
``isolationtester`` script: the start-up a user pays, one Python interpreter per spec).  Both runs use the
same throwaway local server (pg_regress creates the database, as ``make installcheck`` does) and the
corpus's expected outputs; the baseline is the real isolationtester's run in the same process.  Quick
mode runs three fast specs.

Run: python -m benchmarks isolation_regress [--quick]
"""

from __future__ import annotations

import compileall
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import ROOT, Figure  # noqa: E402
from benchmarks.isolation_corpus import find_corpus  # noqa: E402
from harness import load_settings, start_server  # noqa: E402
from harness.isolation_wrapper import write_wrapper  # noqa: E402

NAME = "isolation_regress"
PGXS = Path("/usr/lib/postgresql/15/lib/pgxs/src/test/isolation")
BINDIR = Path("/usr/lib/postgresql/15/bin")  # psql, which pg_regress uses to create the database
QUICK_SPECS = ("simple-write-skew", "two-ids", "read-write-unique")  # fast: no deadlock_timeout waits

def _ours(folder: Path) -> Path:
    """A folder with pg_isolation_regress and our isolationtester next to it, as ``harness
    isolation-wrapper`` writes it for users.  The package's bytecode is compiled first, as ``pip
    install`` does for an installed package (this machine sets PYTHONDONTWRITEBYTECODE, so an editable
    checkout would otherwise recompile it in every process)."""
    compileall.compile_dir(str(ROOT / "harness"), quiet=1)
    return write_wrapper(folder, PGXS / "pg_isolation_regress")


def _run(regress: Path, corpus: Path, out: Path, server: object, specs: list[str]
         ) -> tuple[float, int, list[str], str]:
    info = server.info  # type: ignore[attr-defined]
    tests = specs or ["--schedule", str(corpus / "isolation_schedule")]
    argv = [str(regress), f"--host={info.host}", f"--port={info.port}", f"--user={info.user}",
            f"--bindir={BINDIR}", f"--inputdir={corpus}", f"--outputdir={out}", "--dbname=isolation_regression",
            *tests]
    env = {**os.environ, "PGPASSWORD": info.password} if info.password else dict(os.environ)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=env)
    seconds = time.perf_counter() - started
    ok = len(re.findall(r"^(?:ok|test) .*\.\.\. ok|^ok +\d+", done.stdout, re.M))
    failed = re.findall(r"^\s*(?:test )?(\S+)\s+\.\.\. FAILED", done.stdout, re.M)
    diffs = out / "regression.diffs"
    return seconds, ok, failed, (done.stdout + done.stderr)[-300:] + (diffs.read_text()[:3000] if diffs.exists() else "")


def run(quick: bool) -> list[Figure]:
    corpus = find_corpus()
    if corpus is None or not (PGXS / "pg_isolation_regress").exists():
        return [Figure(NAME, "pg_isolation_regress wall time, one process per spec", "s", float("nan"), None,
                       note="needs PostgreSQL's corpus (HARNESS_PG_ISOLATION_CORPUS) and pg_isolation_regress")]
    specs = list(QUICK_SPECS) if quick else []
    server = start_server("postgres", load_settings())
    try:
        with tempfile.TemporaryDirectory(prefix="isolation-regress-") as tmp:
            folder = Path(tmp)
            (folder / "real").mkdir()
            (folder / "ours").mkdir()
            real = _run(PGXS / "pg_isolation_regress", corpus, folder / "real", server, specs)
            ours = _run(_ours(folder / "ours"), corpus, folder / "ours", server, specs)
    finally:
        server.stop()
    count = len(specs) or len(re.findall(r"^test: ", (corpus / "isolation_schedule").read_text(), re.M))
    for label, (seconds, ok, failed, tail) in (("real", real), ("ours", ours)):
        print(f"  {label}: {seconds:.1f} s, {ok} ok, {len(failed)} failed of {count} {' '.join(failed)}", flush=True)
        if ok != count:
            print(tail, flush=True)
    where = f"{count} specs ({'quick' if quick else 'whole isolation_schedule'})"
    return [Figure(NAME, "pg_isolation_regress wall time, one process per spec", "s", round(ours[0], 2),
                   round(real[0], 2), "real isolationtester", where),
            Figure(NAME, "specs passing under pg_isolation_regress", "specs", ours[1], real[1],
                   "real isolationtester passing", where + (f"; ours failed: {', '.join(ours[2])}" if ours[2] else ""))]


if __name__ == "__main__":
    run("--quick" in sys.argv)
