"""Settings (harness/config.py): precedence per value, and every bad value named by where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_settings
from harness.errors import ConfigError


def _project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.harness]\n" + body)
    return tmp_path


def test_each_url_comes_from_the_highest_source(tmp_path: Path) -> None:
    proj = _project(tmp_path, 'pg_dsn = "postgresql://t@table/db"\nredis_url = "redis://table:1/0"\n'
                              'mysql_dsn = "mysql://t@table/db"\n')
    s = load_settings(cli={"pg_dsn": "postgresql://c@cli/db"},
                      environ={"HARNESS_PG_DSN": "postgresql://e@env/db", "HARNESS_REDIS_URL": "redis://env:2/0"},
                      project_dir=proj)
    assert s.dsn == {"postgres": "postgresql://c@cli/db", "redis": "redis://env:2/0", "mysql": "mysql://t@table/db"}
    assert {svc: s.provisioner_for(svc) for svc in ("postgres", "mysql", "redis")} == dict.fromkeys(
        ("postgres", "mysql", "redis"), "dsn")


def test_table_values_reach_the_settings(tmp_path: Path) -> None:
    s = load_settings(environ={}, project_dir=_project(
        tmp_path, 'fsync = true\nlock_wait_timeout = 7\ndeadlock_timeout_ms = 300\nserver_user = "db"\n'))
    assert (s.fsync, s.lock_wait_timeout, s.deadlock_timeout_ms, s.server_user) == (True, 7, 300, "db")


def test_environment_beats_the_table_for_the_server_user(tmp_path: Path) -> None:
    s = load_settings(environ={"HARNESS_SERVER_USER": "env"}, project_dir=_project(tmp_path, 'server_user = "t"\n'))
    assert s.server_user == "env"


@pytest.mark.parametrize("body, message", [
    ("fsynk = true\n", "unknown key 'fsynk'; did you mean 'fsync'"),
    ('fsync = "yes"\n', "fsync must be true or false, not 'yes'"),
    ("lock_wait_timeout = 0\n", "lock_wait_timeout must be a positive integer"),
    ("deadlock_timeout_ms = true\n", "deadlock_timeout_ms must be a positive integer"),
    ("backends = [1]\n", "backends must be a list of backend names"),
    ('pg_dsn = "mysql://x@h/db"\n', r"pg_dsn: cannot read the postgres URL \(scheme 'mysql' is not postgresql://\)"),
    ('redis_url = "redis://h:99999/0"\n', "redis_url: cannot read the redis URL"),
])
def test_bad_table_values_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(environ={}, project_dir=_project(tmp_path, body))
    assert str(err.value).startswith(f"{tmp_path / 'pyproject.toml'} [tool.harness]")


def test_a_tool_harness_that_is_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool]\nharness = 3\n")
    with pytest.raises(ConfigError, match="tool.harness must be a table"):
        load_settings(environ={}, project_dir=tmp_path)


@pytest.mark.parametrize("cli, environ, source", [
    ({"mysql_dsn": "postgresql://h/db"}, {}, "--mysql-dsn"),
    ({"redis_url": ""}, {}, "--redis-url"),
    ({}, {"HARNESS_PG_DSN": "no-scheme"}, "HARNESS_PG_DSN"),
    ({}, {"HARNESS_PROFILE": "fast"}, "HARNESS_PROFILE"),
    ({}, {"HARNESS_DOCKER_NETWORK": "overlay"}, "HARNESS_DOCKER_NETWORK"),
    ({"backends": ""}, {}, "--backend"),
])
def test_bad_flags_and_variables_name_their_source(tmp_path: Path, cli: dict[str, str], environ: dict[str, str],
                                                   source: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(cli=cli, environ=environ, project_dir=tmp_path)
    assert str(err.value).startswith(source + ":")
    assert "\n" not in str(err.value)


def test_docker_network_comes_from_the_environment(tmp_path: Path) -> None:
    assert load_settings(environ={}, project_dir=tmp_path).docker_network == "auto"
    assert load_settings(environ={"HARNESS_DOCKER_NETWORK": "host"}, project_dir=tmp_path).docker_network == "host"
