"""The HTML report from real runs, opened in a real headless browser (Debian's Chromium via Playwright).

Playwright and /usr/bin/chromium are required: a missing one FAILS these tests (the ``test`` extra
installs ``playwright``; ``harness setup`` installs Debian's ``chromium``; no ``playwright install``).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.errors import HarnessError
from harness.report.html import load_results, render_file, render_html, write_report
from harness.report.progress import ExplorationProgress
from harness.results import RunResults
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_file

from .conftest import ROOT, run_harness

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
#: set to a path (docs/report-screenshot.png) to keep the bk-ci story's screenshot (test_report_story.py)
SCREENSHOT_ENV = "HARNESS_REPORT_SCREENSHOT"


def _rel(path: Path) -> Path:
    """Scenario paths as a user types them (they end up in the replay commands)."""
    return Path(os.path.relpath(path))


@pytest.fixture(scope="module")
def results(server_pool: Any) -> RunResults:
    """Real outcomes: a failing one (blocked step, serialization error, violated check), passing ones
    on both backends, and a replayed exploration whose schedule fires a real fault (lost commit ack)."""
    from harness.explore.scenario import explore_scenario

    pg, my = server_pool.get("postgres"), server_pool.get("mysql")
    outcomes = run_scenario(load_file(_rel(HERE / "report_scenarios" / "retry_missing.yaml")), "postgres", pg)
    atomic = load_file(_rel(HERE / "report_scenarios" / "atomic_increment.yaml"))
    outcomes += run_scenario(atomic, "postgres", pg) + run_scenario(atomic, "mysql", my)
    payment = load_file(_rel(ROOT / "scenarios" / "faults" / "payment_retry.yaml"))
    outcomes.append(explore_scenario(payment, "postgres", pg, schedule="ack A A A A A"))
    assert [o.label for o in outcomes if not o.passed] == ["both-read-first"], [o.problems for o in outcomes]
    return RunResults(outcomes=outcomes, started="2026-01-01T00:00:00+00:00", harness_version="test",
                      servers={"postgres": f"{pg.flavor} {pg.version}", "mysql": f"{my.flavor} {my.version}"},
                      command="pytest tests/test_report.py", duration=1.0)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # ImportError = test failure, on purpose

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `harness setup` as root, or apt-get install -y chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, page_path: Path, requests: list[str], **context: Any) -> Any:
    """A page on the report where every request is recorded, and any but the file itself aborted."""
    ctx = browser.new_context(**{"viewport": {"width": 1366, "height": 768}, **context})
    page_uri = page_path.as_uri()

    def route(r: Any) -> None:
        requests.append(r.request.url)
        r.continue_() if r.request.url == page_uri else r.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("request", lambda req: requests.append(req.url))
    page.goto(page_uri)
    return page


def test_failing_schedule_in_a_real_browser(results: RunResults, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    failing = next(o for o in results.outcomes if not o.passed)
    page_path = write_report(results, tmp_path)
    requests: list[str] = []
    page = _open(browser, page_path, requests)
    view = page.locator("details.outcome:not(.bug)").first
    expect(view).to_have_attribute("open", "")
    svg = view.locator("svg.timeline")
    # one lane (column) per session, in the trace's order
    assert svg.locator("g.lane[data-kind=session]").evaluate_all("gs => gs.map(g => g.dataset.lane)") == ["a", "b"]
    # the blocked step: a wait bar, and an arrow across from b's lane into a's lane (the holder)
    arrow = svg.locator("g.arrow.wait")
    expect(arrow).to_have_count(1)
    assert "b waits for a: row lock" in arrow.locator("title").text_content()
    x1, x2 = (float(arrow.locator("line").get_attribute(k)) for k in ("x1", "x2"))
    lanes = {g.get_attribute("data-lane"): g.locator("rect") for g in svg.locator("g.lane").all()}
    lane_a = (float(lanes["a"].get_attribute("x")), float(lanes["a"].get_attribute("width")))
    lane_b = (float(lanes["b"].get_attribute("x")), float(lanes["b"].get_attribute("width")))
    assert lane_b[0] <= x1 <= sum(lane_b) and lane_a[0] <= x2 <= sum(lane_a), (x1, x2, lane_a, lane_b)
    expect(svg.locator("g.bar")).to_have_count(1)
    # the row lock a holds while b waits: a span on a's lane
    waited = svg.locator("g.span.waited")
    expect(waited).to_have_count(1)
    assert waited.locator("title").text_content().startswith("a holds a row lock")
    # both transactions are spans from BEGIN to COMMIT
    expect(svg.locator("g.span.tx")).to_have_count(2)
    # every move is labelled by what it did
    labels = svg.locator("g.box text").all_text_contents()
    assert labels.count("BEGIN") == 2 and labels.count("SELECT counter") == 2, labels
    assert "UPDATE counter" in labels and "COMMIT" in labels, labels
    # the serialization failure and the violated check are highlighted, SQL and result on hover
    err = svg.locator("g.box.error")
    expect(err).to_have_count(1)
    assert "UPDATE counter SET n = n + 1" in err.locator("title").text_content()
    assert "40001" in err.locator("title").text_content()
    expect(svg.locator("g.box.check-bad")).to_contain_text("both_increments_counted")
    expect(view.locator(".headline")).to_contain_text("check both_increments_counted failed: expected 2, found 1")
    # schedule and the copy-paste replay command, verbatim
    expect(view.locator("code.schedule")).to_have_text(" ".join(failing.schedule))
    expect(view.locator(".cmd code")).to_have_text(failing.replay)
    # the step table is collapsed until opened, and shows every step's SQL and result
    table = view.locator("details.steps table.events")
    expect(table).to_be_hidden()
    view.locator("details.steps > summary").click()
    expect(table).to_be_visible()
    expect(table.locator("tr.bad").first).to_contain_text("could not serialize access")
    # the fault of the replayed exploration (it shows the expected bug) is a labelled move
    expect(page.locator("details.outcome.bug svg.timeline g.box.fault").first).to_contain_text("lost")
    page.evaluate("document.getElementById('controls').hidden = true")  # sticky: would cover the view
    shot = tmp_path / "failing.png"
    view.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    page.context.close()
    assert sorted(set(requests)) == [page_path.as_uri()], f"the page made network requests: {requests}"


def test_filter_box_and_no_js_fallback(results: RunResults, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page_path = write_report(results, tmp_path)
    requests: list[str] = []
    page = _open(browser, page_path, requests)
    retry, atomic = page.locator("details.scenario", has_text="retry-missing"), \
        page.locator("details.scenario", has_text="atomic-increment")
    expect(page.locator("#controls")).to_be_visible()
    page.locator("#filter").fill("atomic")
    expect(retry).to_be_hidden()
    expect(atomic).to_be_visible()
    page.locator("#filter").fill("")
    page.locator("#failed-only").check()
    expect(atomic).to_be_hidden()
    expect(retry).to_be_visible()
    page.context.close()

    page = _open(browser, page_path, requests, java_script_enabled=False)
    expect(page.locator("#controls")).to_be_hidden()  # useless without JS, so not shown
    expect(page.locator("details.outcome:not(.bug) svg.timeline")).to_be_visible()
    expect(page.locator("details.outcome:not(.bug) .cmd code")).to_be_visible()
    expect(page.locator("table.summary tr")).to_have_count(1 + 3)  # header + 3 scenarios
    page.context.close()
    assert sorted(set(requests)) == [page_path.as_uri()], requests


def test_json_renders_identical_html_every_time(results: RunResults, tmp_path: Path) -> None:
    folder = write_report(results, tmp_path / "a").parent
    first = render_file(folder / "results.json", tmp_path / "one.html").read_bytes()
    second = render_file(folder / "results.json", tmp_path / "two.html").read_bytes()
    assert first == second
    assert write_report(load_results(folder / "results.json"), tmp_path / "b").read_bytes() == first
    html = first.decode()
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//""", html), "external reference"
    assert "<script src" not in html and "@import" not in html and "@font-face" not in html


def test_many_outcomes_render_fast_and_stay_small(results: RunResults) -> None:
    """Hundreds of outcomes: collapsed groups, one compact timeline per passing group."""
    many = [replace(o, path=f"{o.path}#{i}") for i in range(60) for o in results.outcomes]  # 60 x 9
    big = replace(results, outcomes=many)
    start = time.perf_counter()
    html = render_html(big)
    elapsed = time.perf_counter() - start
    print(f"\n{len(many)} outcomes: {elapsed:.2f} s, {len(html) / 1e6:.2f} MB")
    assert elapsed < 15 and len(html) < 15e6
    assert html.count("<details class=\"scenario\"") == 3 * 60


def test_harness_report_cli_re_renders(results: RunResults, tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results.to_json()))
    done = run_harness("report", str(tmp_path / "results.json"), "-o", str(tmp_path / "out" / "r.html"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "r.html").read_text() == render_html(load_results(tmp_path / "results.json"))
    bad = run_harness("report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "missing.json" in bad.stderr


def test_results_newer_than_the_harness_are_refused(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"schema": 99, "outcomes": []}))
    with pytest.raises(HarnessError, match="schema 99"):
        load_results(tmp_path / "r.json")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_bar(file: io.StringIO | None = None) -> None:
    with ExplorationProgress(50, "explore x [postgres]", file=file) as bar:
        for i in range(50):
            bar.advance(1 if i == 7 else 0)
    assert bar.done == 50 and bar.failures == 1


def test_progress_is_quiet_off_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    _run_bar()  # sys.stdout is pytest's capture: not a terminal
    pipe = io.StringIO()
    _run_bar(pipe)
    assert capsys.readouterr() == ("", "") and pipe.getvalue() == ""


def test_progress_is_quiet_in_ci_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    tty = _Tty()
    _run_bar(tty)
    assert tty.getvalue() == ""


def test_progress_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The positive control: the same bar does draw for a human."""
    monkeypatch.delenv("CI", raising=False)
    tty = _Tty()
    _run_bar(tty)
    assert tty.getvalue() != ""
