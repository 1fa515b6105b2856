"""``python -m benchmarks [NAME...] [--quick] [--json FILE]``; ``compare A.json B.json``; ``report FILE.json``.

One entry point so that every benchmark is run the same way, by people and by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .core import Figure, RunInfo, fmt, run_info, stop_servers
from .registry import BENCHMARKS, runner


def print_figures(figures: list[Figure]) -> None:
    for f in figures:
        base = f" (baseline {fmt(f.baseline)} {f.baseline_name}; ratio {fmt(f.ratio)})" if f.baseline is not None else ""
        print(f"  {f.benchmark:17s} {f.name:58s} {fmt(f.value):>9s} {f.unit}{base}"
              + (f"  [{f.note}]" if f.note else ""), flush=True)


def run_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="tiny counts: checks that everything runs, in seconds")
    ap.add_argument("--json", type=Path, help="write every figure with commit, date and machine to FILE")
    ap.add_argument("--load", action="store_true", help="determinism: run under a CPU load it starts itself")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    if args.load:
        import os

        os.environ["HARNESS_BENCH_LOAD"] = "1"  # read by determinism.run
    info = run_info(args.quick)
    figures = info.figures
    failed: list[str] = []
    try:
        for name in args.names or list(BENCHMARKS):
            print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
            start = time.perf_counter()
            try:
                got = runner(name)(args.quick)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            print_figures(got)
            print(f"   {name}: {len(got)} figures in {time.perf_counter() - start:.1f} s", flush=True)
            figures.extend(got)
    finally:
        stop_servers()
    if args.json:
        info.write(args.json)
        print(f"wrote {args.json}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def compare_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks compare")
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    a, b = RunInfo.read(args.a), RunInfo.read(args.b)
    print(f"A: {a.commit[:12]} {a.date}{' (quick)' if a.quick else ''}\nB: {b.commit[:12]} {b.date}"
          f"{' (quick)' if b.quick else ''}")
    old = {(f.benchmark, f.name): f for f in a.figures}
    new = {(f.benchmark, f.name): f for f in b.figures}
    keys = list(old) + [k for k in new if k not in old]
    print(f"{'benchmark':17s} {'figure':58s} {'A':>10s} {'B':>10s} {'B/A':>6s}  unit")
    for key in keys:
        fa, fb = old.get(key), new.get(key)
        va, vb = (fa.value if fa else None), (fb.value if fb else None)
        ratio = vb / va if va and vb is not None else None
        unit = (fa or fb).unit  # type: ignore[union-attr]
        print(f"{key[0]:17s} {key[1]:58s} {fmt(va):>10s} {fmt(vb):>10s} {fmt(ratio):>6s}  {unit}")
    return 0


def report_main(argv: list[str]) -> int:
    from .report import regenerate

    ap = argparse.ArgumentParser(prog="python -m benchmarks report")
    ap.add_argument("file", type=Path)
    ap.add_argument("--doc", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md")
    args = ap.parse_args(argv)
    changed = regenerate(RunInfo.read(args.file), args.doc)
    print(f"{args.doc}: regenerated {', '.join(changed) or 'nothing (no markers)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    return run_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
