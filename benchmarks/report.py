"""Regenerate the tables of docs/benchmarks.md from a JSON run, between markers, keeping the prose.

Markers: ``<!-- BEGIN GENERATED NAME -->`` / ``<!-- END GENERATED NAME -->`` for each benchmark's
figures, each followed by the command, commit, date and machine of its run (benchmarks may come from
different runs, e.g. determinism under load); ``<!-- BEGIN GENERATED run -->`` holds just that line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .core import Figure, RunInfo, fmt

_BLOCK = re.compile(r"(<!-- BEGIN GENERATED (\S+) -->\n)(.*?)(<!-- END GENERATED \2 -->)", re.S)


def run_block(run: RunInfo) -> str:
    m = run.machine
    return (f"Measured by `{run.command}` at commit `{run.commit[:12]}` on {run.date}"
            f"{' (quick mode: counts too small to mean anything)' if run.quick else ''}: {m.get('cores')} cores "
            f"(load {m.get('load_1min_at_start')} at start), Python {m.get('python')}, PostgreSQL "
            f"{m.get('postgres')}, MariaDB {m.get('mariadb')}, Redis {m.get('redis')}.\n")


def table(run: RunInfo, figures: list[Figure]) -> str:
    lines = ["| figure | value | unit | baseline (same run) | ratio | note |", "|---|---|---|---|---|---|"]
    for f in figures:
        base = f"{fmt(f.baseline)} ({f.baseline_name})" if f.baseline is not None else "-"
        lines.append(f"| {f.name} | {fmt(f.value)} | {f.unit} | {base} | {fmt(f.ratio)} | {f.note} |")
    return "\n".join(lines) + "\n\n" + run_block(run)


def regenerate(run: RunInfo, doc: Path) -> list[str]:
    """Rewrite the generated blocks of ``doc`` that this run has figures for (and the run block)."""
    changed: list[str] = []

    def replace(m: re.Match[str]) -> str:
        name = m.group(2)
        figures = [f for f in run.figures if f.benchmark == name]
        if name != "run" and not figures:  # not in this run: the table of an earlier run stays
            return m.group(0)
        body = run_block(run) if name == "run" else table(run, figures)
        changed.append(name)
        return m.group(1) + body + m.group(4)

    doc.write_text(_BLOCK.sub(replace, doc.read_text()))
    return changed
