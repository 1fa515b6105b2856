"""The ``harness`` command: a thin skin over the library (exit 0 ok, 1 expectations failed, 2 usage)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .config import Settings, load_settings
from .errors import HarnessError


def _add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("servers")
    g.add_argument("--backend", dest="backends", help="postgres,mysql (default: both, or [tool.harness])")
    g.add_argument("--provisioner", help="auto|local|docker|dsn, or per service e.g. postgres=local,mysql=dsn")
    g.add_argument("--pg-dsn", help="use this existing PostgreSQL server (postgresql://...)")
    g.add_argument("--mysql-dsn", help="use this existing MySQL/MariaDB server (mysql://...)")
    g.add_argument("--redis-url", help="use this existing Redis server (redis://...)")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(cli={k: getattr(args, k, None) for k in
                              ("backends", "provisioner", "pg_dsn", "mysql_dsn", "redis_url")})


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report

    settings = settings_from(args)
    text, ok = format_report(diagnose(settings, measure=not args.quick), settings)
    print(text)
    return 0 if ok else 1


def cmd_setup(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report, install_missing

    settings = settings_from(args)
    print(install_missing(settings))
    text, ok = format_report(diagnose(settings, measure=True), settings)
    print(text)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="show which servers this machine can start, and how fast")
    p.add_argument("--quick", action="store_true", help="skip the cold/warm start measurements")
    _add_server_options(p)
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("setup", help="install missing server packages (apt, as root) and warm the cache")
    _add_server_options(p)
    p.set_defaults(func=cmd_setup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
