"""Settings precedence: CLI > environment > [tool.harness] > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_settings
from harness.errors import HarnessError


def _project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(body)
    return tmp_path


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    s = load_settings(environ={}, project_dir=tmp_path)
    assert s.backends == ("postgres", "mysql")
    assert s.provisioner_for("postgres") == "auto"


def test_pyproject_then_env_then_cli(tmp_path: Path) -> None:
    proj = _project(tmp_path, '[tool.harness]\nbackends = ["mysql"]\nprovisioner = "local"\n')
    s = load_settings(environ={}, project_dir=proj)
    assert s.backends == ("mysql",) and s.provisioner_for("redis") == "local"
    s = load_settings(environ={"HARNESS_BACKENDS": "postgres", "HARNESS_PROVISIONER": "mysql=docker"},
                      project_dir=proj)
    assert s.backends == ("postgres",)
    assert s.provisioner_for("mysql") == "docker" and s.provisioner_for("postgres") == "local"
    s = load_settings(cli={"backends": "postgres,mysql", "pg_dsn": "postgresql://u@h/db"},
                      environ={"HARNESS_BACKENDS": "postgres"}, project_dir=proj)
    assert s.backends == ("postgres", "mysql")
    assert s.provisioner_for("postgres") == "dsn"


def test_a_dsn_in_the_environment_selects_dsn_mode(tmp_path: Path) -> None:
    s = load_settings(environ={"HARNESS_MYSQL_DSN": "mysql://root@127.0.0.1:3306/"}, project_dir=tmp_path)
    assert s.provisioner_for("mysql") == "dsn" and s.provisioner_for("postgres") == "auto"


@pytest.mark.parametrize("env, message", [
    ({"HARNESS_BACKENDS": "oracle"}, "unknown backend 'oracle'"),
    ({"HARNESS_PROVISIONER": "k8s"}, "cannot read provisioner 'k8s'"),
    ({"HARNESS_PROVISIONER": "sqlite=local"}, "cannot read provisioner 'sqlite=local'"),
])
def test_bad_settings_name_the_source(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(HarnessError, match=message) as err:
        load_settings(environ=env, project_dir=tmp_path)
    assert next(iter(env)) in str(err.value)


def test_broken_pyproject_is_reported_with_its_path(tmp_path: Path) -> None:
    proj = _project(tmp_path, "[tool.harness\n")
    with pytest.raises(HarnessError, match="not valid TOML"):
        load_settings(environ={}, project_dir=proj)
