"""The HTML report from real runs, opened in a real headless browser (Debian's Chromium via Playwright)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.html import render_file, render_html, write_report
from harness.results import RunResults
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_file

from .conftest import run_harness

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def results(server_pool) -> RunResults:
    """One failing outcome (a blocked step, an error, a violated check) and one passing one, for real."""
    server = server_pool.get("postgres")
    outcomes = []
    for name in ("retry_missing.yaml", "atomic_increment.yaml"):
        outcomes += run_scenario(load_file(HERE / "report_scenarios" / name), "postgres", server)
    assert any(not o.passed for o in outcomes) and any(o.passed for o in outcomes)
    return RunResults(outcomes=outcomes, started="2026-01-01T00:00:00+00:00", harness_version="test",
                      servers={"postgres": f"{server.flavor} {server.version}"}, command="pytest tests/test_report.py")


def test_report_in_a_real_browser_shows_lanes_blocked_arrow_and_replay(results, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    page_path = write_report(results, tmp_path)
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            failing = next(o for o in results.outcomes if not o.passed)
            lanes = page.locator("svg g.lane").evaluate_all("els => els.map(e => e.dataset.lane)")
            assert {"a", "b"} <= set(lanes)
            assert page.locator("svg g.arrow").count() >= 1, "no wait arrow to the holder"
            assert failing.replay in page.content().replace("&#39;", "'").replace("&quot;", '"')
            assert page.get_by_text("both_increments_counted").count() >= 1
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert requests == [page_path.as_uri()], f"the page made network requests: {requests}"


def test_json_renders_identical_html_every_time(results, tmp_path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results.to_json()))
    loaded = RunResults.from_json(json.loads((tmp_path / "results.json").read_text()))
    assert loaded.to_json() == RunResults.from_json(loaded.to_json()).to_json()  # the JSON round-trips
    first = render_file(tmp_path / "results.json", tmp_path / "one.html").read_text()
    second = render_file(tmp_path / "results.json", tmp_path / "two.html").read_text()
    assert first == second == render_html(loaded)


def test_harness_report_cli_re_renders(results, tmp_path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results.to_json()))
    done = run_harness("report", str(tmp_path / "results.json"), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    loaded = RunResults.from_json(json.loads((tmp_path / "results.json").read_text()))
    assert (tmp_path / "r.html").read_text() == render_html(loaded)
    bad = run_harness("report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_progress_is_quiet_off_a_terminal_and_in_ci(capsys, monkeypatch) -> None:
    from harness.report.progress import ExplorationProgress

    monkeypatch.setenv("CI", "true")
    with ExplorationProgress(10, "x") as bar:
        for _ in range(10):
            bar.advance(0)
    assert capsys.readouterr().out == ""
