"""Run PostgreSQL's isolation corpus through the real isolationtester and through ours; compare both
with the expected outputs.

Usage (the corpus is PostgreSQL's src/test/isolation, e.g. from ``apt-get source postgresql-15``)::

    python -m benchmarks isolation_corpus [--quick]     # corpus from HARNESS_PG_ISOLATION_CORPUS or
                                                        # /tmp/pgsrc/postgresql-15*/src/test/isolation
    python benchmarks/isolation_corpus.py /tmp/pgsrc/postgresql-15.18/src/test/isolation \
        [--isolationtester PATH] [--only NAME,...] [--timeout 60]

Each spec gets a fresh ``isolation_regression`` database on a local throwaway server, configured as
pg_regress configures it (lc_messages C, PGTZ, PGDATESTYLE, intervalstyle postgres_verbose).  A tool's
output counts as identical if it matches ``expected/<spec>.out`` or an alternative ``<spec>_N.out``
ignoring whitespace differences (pg_regress uses ``diff -w``); "byte-identical" counts exact matches.
Ours runs in-process (load_spec + run_spec, what isolationtester_main does minus argv parsing), so
the wall-time ratio compares the engines, not Python's start-up.

Without the corpus (and always in ``--quick`` mode) the registered benchmark runs the project's own
specs under ``tests/specs`` instead; they have no expected outputs, so there "identical" means
identical to the real isolationtester's output.  The per-step overhead is read from trace events
(launch/complete times) minus the SQL round trip, timed by a subclass of the isolation dialect passed
through ``run_spec``'s documented ``dialect`` argument.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.core import ROOT, Figure, median  # noqa: E402
from harness import load_settings, start_server  # noqa: E402
from harness.isolation import IsolationDialect, conninfo_of, run_spec  # noqa: E402
from harness.scenario.spec_loader import load_spec, unused_steps  # noqa: E402
from harness.trace import StepResult, Trace  # noqa: E402

DEFAULT_TESTER = "/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/isolationtester"
DB = "isolation_regression"
NAME = "isolation_corpus"
QUICK_SPECS = ("alignment", "row-lock-wait", "markers")  # fast ones: no deadlock_timeout or timeouts
ENV = {"PGTZ": "America/Los_Angeles", "PGDATESTYLE": "Postgres, MDY",
       "PGOPTIONS": "-c intervalstyle=postgres_verbose"}


class TimedDialect(IsolationDialect):
    """Records how long each run_sql (the SQL round trip itself) took, keyed by the result object."""

    def __init__(self, durations: dict[int, float]) -> None:
        super().__init__()
        self.durations = durations

    def run_sql(self, conn: Any, sql: str, on_notice: Any = None) -> StepResult:
        t = time.perf_counter()
        result = super().run_sql(conn, sql, on_notice)
        self.durations[id(result)] = time.perf_counter() - t
        return result

    def start_sql(self, conn: Any, sql: str, on_notice: Any = None) -> Any:
        """Steps are sent and read inline: their round trip runs from the send to the poll that
        returned the result."""
        t = time.perf_counter()
        call = super().start_sql(conn, sql, on_notice)
        durations = self.durations

        class Timed:
            def poll(self, timeout: float) -> StepResult | None:
                result = call.poll(timeout)
                if result is not None:
                    durations[id(result)] = time.perf_counter() - t
                return result

        return Timed()


@dataclass
class Outcome:
    output: bytes = b""
    seconds: float = 0.0
    rc: int | None = None


@dataclass
class Stats:
    overhead: list[float] = field(default_factory=list)  # engine time beyond run_sql, non-blocking steps
    blocked_latency: list[float] = field(default_factory=list)  # launch -> 'blocked' (lock waits only)


def ws_equal(a: bytes, b: bytes) -> bool:
    """diff -w: lines equal ignoring all whitespace."""
    def norm(x: bytes) -> list[bytes]:
        return [re.sub(rb"[ \t\r\f\v]+", b"", line) for line in x.split(b"\n")]
    return norm(a) == norm(b)


def expected_files(corpus: Path, name: str) -> list[Path]:
    return [corpus / "expected" / f"{name}.out"] + sorted(
        Path(p) for p in glob.glob(str(corpus / "expected" / f"{name}_[0-9]*.out")))


def fresh_db(srv: Any) -> None:
    admin = srv.admin()
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB} TEMPLATE template0")
        for setting, value in (("lc_messages", "C"), ("lc_monetary", "C"), ("lc_numeric", "C"), ("lc_time", "C"),
                               ("bytea_output", "hex"), ("timezone_abbreviations", "Default"),
                               ("deadlock_timeout", "1s")):
            admin.execute(f"ALTER DATABASE {DB} SET {setting} TO '{value}'")
    finally:
        admin.close()


def run_real(tester: str, conninfo: str, spec: Path, timeout: float) -> Outcome:
    t = time.perf_counter()
    try:
        p = subprocess.run([tester, conninfo], stdin=spec.open("rb"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return Outcome(p.stdout, time.perf_counter() - t, p.returncode)
    except subprocess.TimeoutExpired as exc:
        return Outcome((exc.stdout or b"") + b"\n[timed out]\n", time.perf_counter() - t, None)


def run_ours(conninfo: str, spec: Path, timeout: float, stats: Stats) -> Outcome:
    """In-process, 2>&1 like pg_isolation_regress; a watchdog keeps one stuck spec from stopping the run."""
    buf = io.BytesIO()
    durations: dict[int, float] = {}
    box: dict[str, int] = {}

    def on_trace(trace: Trace) -> None:
        launched: dict[str, float] = {}
        blocked: set[str] = set()
        for e in trace.events:
            if e.kind == "launch" and e.step:
                launched[e.step] = e.t
            elif e.kind == "blocked" and e.step:
                blocked.add(e.step)
                if not e.detail.get("forced") and not e.detail.get("held_by_step"):
                    stats.blocked_latency.append(e.t - launched[e.step])
            elif e.kind == "complete" and e.step and e.step not in blocked and e.result is not None:
                sql_time = durations.get(id(e.result))
                if sql_time is not None:
                    stats.overhead.append(max(0.0, (e.t - launched[e.step]) - sql_time))

    def work() -> None:
        try:
            text = spec.read_bytes().decode("utf-8", "surrogateescape")
            scenario = load_spec(text, str(spec))
            for name in unused_steps(scenario):
                buf.write(f"unused step name: {name}\n".encode())
            box["rc"] = run_spec(scenario, conninfo, buf, buf, dialect=TimedDialect(durations), on_trace=on_trace)
        except Exception as exc:  # reported as a failure of this spec, the run goes on
            buf.write(f"\n[harness crashed: {type(exc).__name__}: {exc}]\n".encode())
            box["rc"] = 99

    t = time.perf_counter()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = time.perf_counter() - t
    if thread.is_alive():
        return Outcome(buf.getvalue() + b"\n[timed out]\n", seconds, None)
    return Outcome(buf.getvalue(), seconds, box.get("rc"))


def verdict(output: bytes, expected: list[Path]) -> tuple[bool, bool]:
    """(byte-identical to an expected file, identical ignoring whitespace)."""
    texts = [p.read_bytes() for p in expected if p.exists()]
    return any(output == t for t in texts), any(ws_equal(output, t) for t in texts)


def find_corpus() -> Path | None:
    env = os.environ.get("HARNESS_PG_ISOLATION_CORPUS")
    candidates = [Path(env)] if env else [Path(p) for p in sorted(glob.glob("/tmp/pgsrc/postgresql-15*/src/test/isolation"))]
    return next((c for c in candidates if (c / "specs").is_dir()), None)


def run(quick: bool) -> list[Figure]:
    """Ours against the real isolationtester, on the corpus (full mode) or the project's specs."""
    corpus = None if quick else find_corpus()
    specs = sorted((corpus or ROOT / "tests") .joinpath("specs").glob("*.spec"))
    if quick:
        specs = [s for s in specs if s.stem in QUICK_SPECS]
    saved = {k: os.environ.get(k) for k in [*ENV, "PGAPPNAME", "PGISOLATIONTIMEOUT"]}
    os.environ.update(ENV)
    os.environ.setdefault("PGISOLATIONTIMEOUT", "60")
    srv = start_server("postgres", load_settings())  # its own: the corpus needs isolation_regression
    stats = Stats()
    same_real = same_exp = real_exp = 0
    differ: list[str] = []
    real_t = ours_t = 0.0
    try:
        conninfo = conninfo_of(srv.info.with_db(DB))
        for spec in specs:
            os.environ["PGAPPNAME"] = f"isolation/{spec.stem}"
            fresh_db(srv)
            real = run_real(DEFAULT_TESTER, conninfo, spec, 60.0)
            fresh_db(srv)
            ours = run_ours(conninfo, spec, 60.0, stats)
            real_t, ours_t = real_t + real.seconds, ours_t + ours.seconds
            if ws_equal(ours.output, real.output):
                same_real += 1
            else:
                differ.append(spec.stem)
            if corpus is not None:
                exp = expected_files(corpus, spec.stem)
                same_exp += verdict(ours.output, exp)[1]
                real_exp += verdict(real.output, exp)[1]
    finally:
        srv.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    where = f"PostgreSQL's corpus, {len(specs)} specs" if corpus else f"tests/specs, {len(specs)} specs (no corpus)"
    figures = [Figure(NAME, "wall time, all specs", "s", ours_t, real_t, "real isolationtester", where),
               Figure(NAME, "specs whose output equals the real isolationtester's (diff -w)", "specs", same_real,
                      len(specs), "specs run", where + (f"; differ: {', '.join(differ)}" if differ else ""))]
    if corpus is not None:
        figures.append(Figure(NAME, "specs matching the expected output (diff -w)", "specs", same_exp, real_exp,
                              "real isolationtester matching", where))
    figures += [Figure(NAME, "per-step engine overhead beyond the SQL round trip", "ms",
                       median(stats.overhead) * 1e3, note=f"median over {len(stats.overhead)} non-blocking steps"),
                Figure(NAME, "blocked-detection latency (launch to blocked)", "ms", median(stats.blocked_latency) * 1e3,
                       note=f"median over {len(stats.blocked_latency)} lock waits")]
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="PostgreSQL's src/test/isolation directory")
    ap.add_argument("--isolationtester", default=DEFAULT_TESTER)
    ap.add_argument("--only", default="", help="comma-separated spec names")
    ap.add_argument("--timeout", type=float, default=120.0, help="per spec and tool, seconds")
    ap.add_argument("--show-diffs", action="store_true")
    args = ap.parse_args(argv)

    os.environ.update(ENV)
    os.environ.setdefault("PGISOLATIONTIMEOUT", "60")
    specs = sorted((args.corpus / "specs").glob("*.spec"))
    if args.only:
        wanted = set(args.only.split(","))
        specs = [s for s in specs if s.stem in wanted]
    srv = start_server("postgres", load_settings())
    stats = Stats()
    rows: list[tuple[str, bool, bool, bool, bool, float, float]] = []
    failures: list[tuple[str, bytes, bytes]] = []
    try:
        conninfo = conninfo_of(srv.info.with_db(DB))
        for spec in specs:
            exp = expected_files(args.corpus, spec.stem)
            os.environ["PGAPPNAME"] = f"isolation/{spec.stem}"  # as pg_isolation_regress sets it
            fresh_db(srv)
            real = run_real(args.isolationtester, conninfo, spec, args.timeout)
            fresh_db(srv)
            ours = run_ours(conninfo, spec, args.timeout, stats)
            rb, rw = verdict(real.output, exp)
            ob, ow = verdict(ours.output, exp)
            rows.append((spec.stem, rb, rw, ob, ow, real.seconds, ours.seconds))
            mark = "ok " if ob else ("ws " if ow else "FAIL")
            print(f"{mark} {spec.stem:45s} real={'ok' if rb else ('ws' if rw else 'FAIL'):4s} "
                  f"{real.seconds:6.2f}s ours {ours.seconds:6.2f}s", flush=True)
            if not ob:
                failures.append((spec.stem, real.output, ours.output))
    finally:
        srv.stop()

    n = len(rows)
    real_t, ours_t = sum(r[5] for r in rows), sum(r[6] for r in rows)
    print()
    print(f"specs: {n}")
    print(f"real isolationtester: byte-identical {sum(r[1] for r in rows)}/{n}, "
          f"identical ignoring whitespace {sum(r[2] for r in rows)}/{n}, wall {real_t:.1f}s")
    print(f"harness drop-in:      byte-identical {sum(r[3] for r in rows)}/{n}, "
          f"identical ignoring whitespace {sum(r[4] for r in rows)}/{n}, wall {ours_t:.1f}s")
    print(f"wall-time ratio ours/real: {ours_t / real_t if real_t else float('nan'):.2f}x")
    if stats.overhead:
        print(f"median per-step engine overhead (non-blocking steps, beyond the SQL round trip): "
              f"{statistics.median(stats.overhead) * 1e3:.3f} ms over {len(stats.overhead)} steps")
    if stats.blocked_latency:
        print(f"median blocked-detection latency (launch -> blocked): "
              f"{statistics.median(stats.blocked_latency) * 1e3:.2f} ms over {len(stats.blocked_latency)} waits")
    if failures:
        print("\nnot byte-identical (ours):")
        for name, real_out, ours_out in failures:
            same = "same as real isolationtester" if real_out == ours_out else "differs from real isolationtester"
            print(f"  {name}: {same}")
            if args.show_diffs:
                import difflib
                sys.stdout.writelines(list(difflib.unified_diff(
                    real_out.decode(errors="replace").splitlines(True),
                    ours_out.decode(errors="replace").splitlines(True), "real", "ours"))[:80])
    return 0


if __name__ == "__main__":
    sys.exit(main())
