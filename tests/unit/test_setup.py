"""`harness setup`'s test tools: Debian's chromium for the report tests, only with the test extra."""

from __future__ import annotations

from pathlib import Path

from harness.doctor import install_test_tools


def test_nothing_is_installed_without_the_test_extra(tmp_path: Path) -> None:
    assert "none needed" in install_test_tools(chromium=tmp_path / "chromium", have_playwright=False)


def test_an_installed_chromium_is_reported(tmp_path: Path) -> None:
    (tmp_path / "chromium").touch()
    assert install_test_tools(chromium=tmp_path / "chromium", have_playwright=True) == \
        f"test tools: chromium is installed ({tmp_path / 'chromium'})"


def test_a_missing_chromium_gives_the_exact_command(tmp_path: Path) -> None:
    message = install_test_tools(dry_run=True, chromium=tmp_path / "chromium", have_playwright=True)
    assert "`sudo apt-get install -y chromium`" in message and str(tmp_path / "chromium") in message
