"""Merging results files: the shards of one run (``--shard K/N``) become the run one process would
have made, for ``harness report a.json b.json … -o all.html --json all.json --junit all.xml``.

An exploration's shards merge into one outcome: the schedules add up; the space is exhausted when
every shard exhausted its part; the failure reported is the one an unsharded search meets first (each
shard records where its first failure lies in that order, ``found_key``), and since minimization
starts from it deterministically, it is the unsharded run's minimal schedule.  Outcomes of listed
interleavings, which every shard runs, appear once (a failing copy wins).  Explorations that are not
shards of one exploration (say two unsharded runs) are kept side by side, never added up.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from .redact import sanitize
from .results import Outcome, RunResults, load_results

FAILURE = "failure found"


def _key(o: Outcome) -> tuple[str, str, str, str, str]:
    return (o.scenario, o.path, o.backend, o.kind, o.label)


def merge_results(runs: Sequence[RunResults]) -> tuple[RunResults, list[str]]:
    """The runs as one, and warnings (a shard missing, shards of different splits)."""
    groups: dict[tuple[str, str, str, str, str], list[Outcome]] = {}
    for run in runs:
        for outcome in run.outcomes:
            groups.setdefault(_key(outcome), []).append(outcome)
    outcomes: list[Outcome] = []
    warnings: list[str] = []
    for (scenario, _, backend, kind, _), group in groups.items():
        if kind != "exploration":
            outcomes.append(next((o for o in group if not o.passed), group[0]))
            continue
        counts = {o.shard.split("/")[1] for o in group if o.shard}
        parts = [o.shard for o in group]
        if None in parts or len(counts) != 1 or len(set(parts)) != len(parts):
            outcomes.extend(group)  # not the shards of one exploration: side by side
            if len(group) > 1 and any(parts):
                warnings.append(f"{scenario} [{backend}]: explorations of different shardings ({', '.join(map(str, parts))})"
                                " were not merged")
            continue
        (count,) = counts
        missing = [f"{k}/{count}" for k in range(1, int(count) + 1) if f"{k}/{count}" not in parts]
        if missing:
            warnings.append(f"{scenario} [{backend}]: shard(s) {', '.join(missing)} missing; the merged exploration "
                            "covers only the shards given")
        outcomes.append(merge_shards(group, complete=not missing))
    merged = RunResults(outcomes=outcomes, started=min((r.started for r in runs if r.started), default=""),
                        duration=max((r.duration for r in runs), default=0.0),
                        harness_version=runs[0].harness_version if runs else "",
                        servers={k: v for r in runs for k, v in r.servers.items()},
                        command="; ".join(dict.fromkeys(r.command for r in runs if r.command)))
    return merged, warnings


def merge_shards(shards: Iterable[Outcome], complete: bool = True) -> Outcome:
    """The shards of one exploration as the outcome of one unsharded exploration."""
    shards = list(shards)
    total = sum(o.schedules_run for o in shards)
    found = [o for o in shards if o.stop_reason == FAILURE or (o.stop_reason is None and o.schedule)]
    if found:
        first = min(found, key=lambda o: (o.found_key is None, o.found_key or [], o.shard or ""))
        return dataclasses.replace(first, schedules_run=total, shard=None, exhausted=False,
                                   duration=max(o.duration for o in shards))
    base = shards[0]
    exhausted = complete and all(o.exhausted for o in shards)
    problems = [p for o in shards for p in o.problems][:1]
    if problems and base.expected.startswith("violates"):  # "expected X violated, but N schedules all held"
        wanted = base.expected.split(":", 1)[1].strip()
        problems = [f"expected check {wanted} to be violated, but {total} schedules all held"]
    return dataclasses.replace(base, schedules_run=total, shard=None, exhausted=exhausted,
                               passed=all(o.passed for o in shards), problems=problems, found_key=None,
                               stop_reason="space exhausted" if exhausted else ("budget spent" if base.stop_reason else None),
                               duration=max(o.duration for o in shards))


def write_junit(results: RunResults, path: Path) -> Path:
    """JUnit XML (one testcase per outcome) for CI dashboards; every string masked and printable."""
    failures = sum(not o.passed and not o.error for o in results.outcomes)
    errors = sum(bool(o.error) for o in results.outcomes)
    suite = ET.Element("testsuite", name="harness", tests=str(len(results.outcomes)), failures=str(failures),
                       errors=str(errors), time=f"{results.duration:.3f}")
    for o in results.outcomes:
        case = ET.SubElement(suite, "testcase", classname=sanitize(o.path),
                             name=sanitize(f"{o.scenario} [{o.backend}] {o.label}"), time=f"{o.duration:.3f}")
        if o.error:
            ET.SubElement(case, "error", message=sanitize(o.error)).text = sanitize(o.replay)
        elif not o.passed:
            detail = "\n".join([*o.problems, f"schedule: {' '.join(o.schedule)}", f"replay: {o.replay}"])
            ET.SubElement(case, "failure", message=sanitize("; ".join(o.problems) or "not as expected")).text = \
                sanitize(detail)
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def merge_files(paths: Sequence[Path], json_out: Path) -> tuple[RunResults, list[str]]:
    """Merge results files into ``json_out`` (the input of the HTML report); returns them and warnings."""
    merged, warnings = merge_results([load_results(p) for p in paths])
    json_out = Path(json_out)
    if json_out.parent != Path(""):
        json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(merged.to_json(), indent=1), encoding="utf-8")
    return merged, warnings
