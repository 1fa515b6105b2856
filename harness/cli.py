"""The ``harness`` command: a thin skin over the library (exit 0 ok, 1 expectations failed, 2 usage)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

from . import __version__
from .errors import HarnessError, ScenarioError
from .signals import EXIT_SIGTERM, Terminated, handle_sigterm

if TYPE_CHECKING:
    from .config import Settings
    from .pool import ServerPool
    from .provision import Server
    from .results import Outcome
    from .scenario.model import Scenario
from .redact import mask_url, sanitize


def _add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("servers")
    g.add_argument("--backend", dest="backends", help="postgres,mysql (default: both, or [tool.harness])")
    g.add_argument("--provisioner", help="auto|local|docker|dsn, or per service e.g. postgres=local,mysql=dsn")
    g.add_argument("--pg-dsn", help="use this existing PostgreSQL server (postgresql://...)")
    g.add_argument("--mysql-dsn", help="use this existing MySQL/MariaDB server (mysql://...)")
    g.add_argument("--redis-url", help="use this existing Redis server (redis://...)")


def settings_from(args: argparse.Namespace) -> Settings:
    from .config import load_settings  # not at import: the isolationtester drop-in starts per spec

    return load_settings(cli={k: getattr(args, k, None) for k in
                              ("backends", "provisioner", "pg_dsn", "mysql_dsn", "redis_url")})


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report

    settings = settings_from(args)
    text, ok = format_report(diagnose(settings, measure=not args.quick), settings)
    print(text)
    return 0 if ok else 1


def cmd_setup(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report, install_missing, install_test_tools

    settings = settings_from(args)
    print(install_missing(settings))
    print(install_test_tools(), flush=True)
    text, ok = format_report(diagnose(settings, measure=True), settings)
    print(text)
    return 0 if ok else 1


def cmd_clean(args: argparse.Namespace) -> int:
    """Drop harness_* databases that dead runs left on DSN servers (all of them with --all)."""
    from .provision.dsn import attach_dsn, sweep_databases
    from .provision.owner import owner_of

    settings = settings_from(args)
    urls = {s: settings.dsn[s] for s in ("postgres", "mysql") if s in settings.dsn}
    if not urls:
        raise HarnessError("harness clean needs a server: pass --pg-dsn and/or --mysql-dsn (or set HARNESS_PG_DSN / "
                           "HARNESS_MYSQL_DSN); local servers need no cleaning (their temp dirs are swept).")
    for service, url in urls.items():
        server = attach_dsn(service, url, sweep=False)
        try:
            dropped = sweep_databases(server, everything=args.all)
            for name in dropped:
                owner = owner_of(name)
                who = f"pid {owner.pid}, host {owner.host}" if owner else "no owner recorded"
                print(f"{service}: dropped {name} ({who})")
            left = server._with_admin(lambda admin: server.dialect.list_databases(admin, "harness_"))
            print(f"{service}: dropped {len(dropped)}; {len(left)} harness database(s) left"
                  + (" (live runs, other hosts or older names; --all drops them too)" if left else ""))
        finally:
            server.stop()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .pool import ServerPool
    from .report.text import print_outcomes
    from .results import RunResults
    from .runner import parse_interleaving, parse_schedule_arg, run_scenario
    from .scenario.yaml_loader import load_file, scenario_files

    settings = settings_from(args)
    files = list(scenario_files(args.files))
    if not files:
        raise ScenarioError("no scenario files (.yaml, .yml, .spec) found there.", path=" ".join(args.files))
    scenarios, errors = [], []
    for f in files:
        try:
            scenarios.append(load_file(f))
        except ScenarioError as exc:
            errors.append(str(exc))
    if errors:
        for e in errors:
            print(f"harness: error: {sanitize(e)}", file=sys.stderr)
        return 2
    schedule = getattr(args, "schedule", None)
    if args.interleaving is not None or schedule is not None:  # checked before any server starts
        if len(scenarios) != 1:
            raise HarnessError("--interleaving/--schedule need exactly one scenario file.")
        if scenarios[0].source == "spec":
            raise ScenarioError("--interleaving/--schedule apply to YAML scenarios; a spec runs its permutations.",
                                path=scenarios[0].path)
        if args.interleaving is not None:
            parse_interleaving(scenarios[0], args.interleaving)
        if schedule is not None:
            parse_schedule_arg(scenarios[0], schedule)
    exploring_only = args.command == "explore"
    if getattr(args, "shard", None) or os.environ.get("HARNESS_SHARD"):  # a bad K/N is a usage error, now
        from .explore.shard import resolve_shard

        args.shard = resolve_shard(getattr(args, "shard", None))

    results = RunResults(started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                         harness_version=__version__, command=mask_url(" ".join(["harness", *sys.argv[1:]])))
    started = time.perf_counter()
    pool = ServerPool(settings)
    exit_code = 0
    _quiet_app_logs(args.verbose)
    try:
        for scenario in scenarios:
            if scenario.source == "spec":
                from .isolation import run_spec_on_server

                exit_code = max(exit_code, run_spec_on_server(scenario, pool.get("postgres"), sys.stdout))
                continue
            chosen = [parse_interleaving(scenario, args.interleaving)] if args.interleaving is not None else None
            explore = exploring_only or schedule is not None or (scenario.explore is not None and not chosen)
            listed = scenario.sessions and not exploring_only and schedule is None and (
                chosen or scenario.interleavings or scenario.explore is None)
            for backend in [b for b in settings.backends if b in scenario.backends]:
                server = pool.get(backend)
                results.servers[backend] = f"{server.flavor} {server.version}"
                outcomes = []
                if listed:
                    outcomes += run_scenario(scenario, backend, server, interleavings=chosen,
                                             redis=lambda: pool.get("redis").info)
                if explore:
                    outcomes.append(_explore_one(scenario, backend, server, pool, args, schedule))
                results.outcomes.extend(outcomes)
                print_outcomes(outcomes, sys.stdout, verbose=args.verbose, summary=False)
    finally:
        pool.close()
    results.duration = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(results.to_json(), indent=1))
    if args.report:
        from .report.html import write_report

        print(f"report: {write_report(results, Path(args.report))}")
    if results.outcomes:
        failed = sum(not o.passed for o in results.outcomes)
        print(f"\n{len(results.outcomes)} outcomes, {failed} not as expected, {results.duration:.1f}s")
        exit_code = max(exit_code, 1 if failed else 0)
    return exit_code


def _explore_one(scenario: Scenario, backend: str, server: Server, pool: ServerPool, args: argparse.Namespace,
                 schedule: str | None) -> Outcome:
    from .explore.scenario import explore_scenario
    from .report.progress import ExplorationProgress

    budget = getattr(args, "schedules", None) or (scenario.explore.schedules if scenario.explore else 100)
    shard = getattr(args, "shard", None)
    with ExplorationProgress(shard.budget(budget) if shard else budget,
                             f"{scenario.name} [{backend}]" + (f" shard {shard}" if shard else "")) as bar:
        outcome = explore_scenario(scenario, backend, server, redis=lambda: pool.get("redis").info,
                                   schedules=getattr(args, "schedules", None),
                                   strategy=getattr(args, "strategy", None), seed=getattr(args, "seed", None),
                                   schedule=schedule,
                                   progress=lambda done, total: bar.advance(0), private=pool.private, shard=shard)
    if outcome.schedule and schedule is None:  # keep the found schedule for `harness replay FILE`
        from .replay import save_schedule

        save_schedule(Path("reports") / "schedules", f"{scenario.name}-{backend}",
                      {"kind": "scenario", "path": scenario.path, "backend": backend,
                       "schedule": " ".join(outcome.schedule), "violations": outcome.violated},
                      outcome.replay_argv)
    return outcome


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a saved schedule file: only a validated harness/pytest argv, run without a shell."""
    import shlex
    import subprocess

    from .replay import command, replay_argv

    argv = replay_argv(Path(args.saved))
    print(f"replaying: {sanitize(shlex.join(argv))}", flush=True)
    return subprocess.call(command(argv))


def cmd_report(args: argparse.Namespace) -> int:
    from .report.html import render_file

    if len(args.results) == 1 and not args.json and not args.junit:
        print(f"report: {render_file(Path(args.results[0]), Path(args.output))}")
        return 0
    import tempfile

    from .results_merge import merge_files, write_junit

    with tempfile.TemporaryDirectory() as tmp:  # the report is rendered from the merged JSON file
        merged_json = Path(args.json or Path(tmp) / "results.json")
        merged, warnings = merge_files([Path(p) for p in args.results], merged_json)
        for warning in warnings:
            print(f"harness: warning: {sanitize(warning)}", file=sys.stderr)
        print(f"report: {render_file(merged_json, Path(args.output))}")
    if args.json:
        print(f"results: {args.json}")
    if args.junit:
        print(f"junit: {write_junit(merged, Path(args.junit))}")
    return 0


def cmd_isolationtester(args: argparse.Namespace) -> int:
    from .isolation import isolationtester_main

    return isolationtester_main(list(args.args), sys.stdin, sys.stdout, sys.stderr)


def _isolation_wrapper(folder: str, regress: str | None) -> int:
    from .isolation_wrapper import cmd_isolation_wrapper

    return cmd_isolation_wrapper(folder, regress)


def _positive_int(text: str) -> int:
    """argparse type for counts: a usage error (exit 2) before anything starts, not a failure later."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of schedules, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 schedule, not {value}")
    return value


SHARD_HELP = ("K/N: run shard K of N of every exploration (default: $HARNESS_SHARD); the budget is the total "
              "over the shards; merge the --json files with `harness report`")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, instead of the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"harness: error: {self.prog}: {_printable(message)} (see `{self.prog} --help`).\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="show which servers this machine can start, and how fast")
    p.add_argument("--quick", action="store_true", help="skip the cold/warm start measurements")
    _add_server_options(p)
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("setup", help="install missing server packages and the test extra's chromium "
                                  "(apt, as root) and warm the cache")
    _add_server_options(p)
    p.set_defaults(func=cmd_setup)
    p = sub.add_parser("clean", help="drop harness_* databases that dead runs left on --pg-dsn/--mysql-dsn servers")
    p.add_argument("--all", action="store_true", help="drop every harness_* database, whoever made it (even live runs')")
    _add_server_options(p)
    p.set_defaults(func=cmd_clean)
    p = sub.add_parser("run", help="run scenario files (.yaml) and isolation specs (.spec)")
    p.add_argument("files", nargs="+", help="scenario files or folders")
    p.add_argument("--interleaving", help='run only this interleaving, e.g. "a1 b1 a2 b2"')
    p.add_argument("-v", "--verbose", action="store_true", help="print every trace, not only failures")
    p.add_argument("--json", help="write the JSON results file here")
    p.add_argument("--report", help="write the HTML report into this folder")
    p.add_argument("--schedule", help='replay this exploration schedule exactly, e.g. "A A B A"')
    p.add_argument("--shard", help=SHARD_HELP)
    _add_server_options(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("explore", help="search the schedules of a scenario (Hypothesis by default)")
    p.add_argument("files", nargs="+", help="scenario files or folders")
    p.add_argument("--schedules", type=_positive_int, help="how many schedules (default: the file's, or 100)")
    p.add_argument("--strategy", choices=["auto", "hypothesis", "exhaustive", "pct", "random"],
                   help="auto (default): stored failures, then every schedule with <= 1 preemption, then Hypothesis")
    p.add_argument("--seed", type=int, help="seed for pct/random")
    p.add_argument("--shard", help=SHARD_HELP)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--json", help="write the JSON results file here")
    p.add_argument("--report", help="write the HTML report into this folder")
    _add_server_options(p)
    p.set_defaults(func=cmd_run, interleaving=None, schedule=None)
    p = sub.add_parser("replay", help="replay a saved failing schedule (reports/schedules/*.json)")
    p.add_argument("saved", help="the saved schedule file")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("report", help="render the HTML report from JSON results files (shards merged)")
    p.add_argument("results", nargs="+", help="results JSON written by --json / --report; several are merged")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.add_argument("--json", help="also write the merged JSON results here")
    p.add_argument("--junit", help="also write the (merged) results as JUnit XML here")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("isolationtester", help="drop-in for PostgreSQL's isolationtester (spec on stdin)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="[CONNINFO]")
    p.set_defaults(func=cmd_isolationtester)
    p = sub.add_parser("isolation-wrapper", help="write a folder from which pg_isolation_regress runs the "
                                                  "isolationtester drop-in (docs/isolation-compat.md)")
    p.add_argument("folder", help="the folder to write (created if missing)")
    p.add_argument("--pg-isolation-regress", help="the real pg_isolation_regress (default: found via pg_config)")
    p.set_defaults(func=lambda a: _isolation_wrapper(a.folder, a.pg_isolation_regress))
    from .record.commands import add_parsers as add_record_parsers  # record, import (docs/recording.md)

    add_record_parsers(sub, _add_server_options, settings_from, _positive_int)
    return parser


def _printable(message: str) -> str:
    """A user-given value in an error: control characters escaped, passwords masked (one paragraph)."""
    return sanitize(message.rstrip("\n"))


def _quiet_app_logs(verbose: bool) -> None:
    """Apps under exploration log the errors races cause (Kinto logs every IntegrityError with its
    traceback): without a logging setup of the user's, Python would print each to stderr.  The outcome
    and trace say what happened; ``-v`` keeps the apps' logs."""
    import logging

    root = logging.getLogger()
    if not verbose and not root.handlers:
        root.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["isolationtester", "-V"]:  # before anything heavy: pg_isolation_regress asks once per spec
        from .pgversion import pg_version

        print(f"isolationtester (PostgreSQL) {pg_version()}")
        return 0
    if argv[:1] == ["isolationtester"]:  # isolationtester's own argv contract (-V, CONNINFO), untouched
        from .isolation import isolationtester_main

        return isolationtester_main(argv[1:], sys.stdin, sys.stdout, sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    handle_sigterm()  # SIGTERM unwinds like Ctrl-C: servers stopped, temp dirs removed, exit 143
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {sanitize(str(exc))}", file=sys.stderr)
        return 2
    except Terminated:
        print("harness: terminated (SIGTERM); servers stopped", file=sys.stderr)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
