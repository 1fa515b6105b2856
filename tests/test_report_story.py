"""The bk-ci failure told in a real browser: move labels, lock and transaction spans, the narrative,
checks after the last move, the nearest passing schedule beside it, and a 1400 px window fit.

Playwright and /usr/bin/chromium are required (as in test_report.py): a missing one FAILS.
``HARNESS_REPORT_SCREENSHOT=docs/report-screenshot.png`` keeps the screenshot for the README.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.report.html import write_report
from harness.report.text import print_outcomes
from harness.results import Outcome, RunResults
from harness.scenario.yaml_loader import load_file

from .conftest import ROOT
from .test_report import SCREENSHOT_ENV, _open, browser  # noqa: F401 (the browser fixture)

KEY = "SHARDING_ROUTING_RULE:c1:PROCESS:DB:r1:add"


@pytest.fixture(scope="module")
def bkci(server_pool: Any, redis_server: Any) -> Outcome:
    """The racy bk-ci seed on MariaDB: the explorer finds and minimizes the duplicate rule."""
    from harness.explore.scenario import explore_scenario

    scenario = load_file(Path(os.path.relpath(ROOT / "scenarios" / "bkci" / "explore_redis_lock.yaml")))
    outcome = explore_scenario(scenario, "mysql", server_pool.get("mysql"), redis=lambda: redis_server.info)
    assert outcome.passed and outcome.violated == ["one_rule"], outcome.problems
    return outcome


def test_the_bkci_failure_tells_its_story(bkci: Outcome, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page_path = write_report(RunResults(outcomes=[bkci], harness_version="test"), tmp_path)
    requests: list[str] = []
    page = _open(browser, page_path, requests, viewport={"width": 1400, "height": 900})
    page.evaluate("document.getElementById('controls').hidden = true")
    view = page.locator("details.outcome").first
    expect(view).to_have_attribute("open", "")
    failing, passing = view.locator("figure.tl").all()
    svg = failing.locator("svg.timeline")
    # moves are labelled by what they did, in schedule order
    labels = svg.locator("a.move g.box text").all_text_contents()
    assert len(labels) == len(bkci.schedule), labels
    assert labels[1].startswith("lock SHARDING_ROUTI") and labels[1].endswith("r1:add"), labels
    assert labels[2:5] == ["BEGIN", "SELECT count sharding_routing_rule", "INSERT sharding_routing_rule"], labels
    assert labels[5].startswith("unlock ") and labels[-1] == "COMMIT", labels
    # spans: A's lock ends (move 6) inside A's transaction, which ends at the last move; B's lock in between
    spans = {(g.get_attribute("class"), g.locator("title").text_content()) for g in svg.locator("g.span").all()}
    assert ("span lock release", f"A holds lock {KEY}, moves 2–6: released at move 6") in spans, spans
    assert ("span tx commit", "A's transaction, moves 3–14: committed at move 14") in spans, spans
    assert ("span lock release", f"B holds lock {KEY}, moves 8–12: released at move 12") in spans, spans
    # the spans are drawn where their moves are: A's lock bar ends above B's lock bar begins
    a_lock, b_lock = (svg.locator("g.span.lock", has_text=f"{who} holds").locator("rect") for who in "AB")
    a_end = float(a_lock.get_attribute("y")) + float(a_lock.get_attribute("height"))
    assert a_end < float(b_lock.get_attribute("y")), (a_end, b_lock.get_attribute("y"))
    # the check is drawn after the last move, expected vs actual in plain words
    check = svg.locator("g.box.check-bad")
    expect(check.locator("text")).to_have_text("✗ check one_rule failed: expected 1, found 2")
    last = svg.locator("a.move g.box rect").last
    assert float(check.locator("rect").get_attribute("y")) > float(last.get_attribute("y"))
    expect(view.locator(".headline")).to_have_text(
        "The bug shows, as expected: check one_rule failed: expected 1, found 2.")
    # the narrative, generated from the records, above the timeline
    story = view.locator(".narrative li").all_text_contents()
    assert story[0].startswith("Moves 2–6, A: took lock " + KEY + " (2), began a transaction (3), counted 0 rows"), story
    assert f"released lock {KEY} while its transaction was still open (6)" in story[0], story
    assert f"B: took lock {KEY} while A's transaction was still open (8)" in story[1], story
    assert story[-2] == "Move 14, A: committed (14)." and "expected 1, found 2" in story[-1], story
    # the nearest passing schedule, run for real, beside it: A goes on at move 7, and the check holds
    expect(passing.locator("figcaption")).to_contain_text(" ".join(bkci.nearest_passing))
    assert bkci.nearest_passing[:7] == ["A"] * 7
    expect(passing.locator("g.box.check-ok text")).to_have_text("✓ check one_rule holds: expected 1, found 1")
    assert failing.locator("text.num.differs").all_text_contents()[0].startswith("7")
    box = passing.bounding_box()
    assert box is not None and box["x"] > failing.bounding_box()["x"] + 300, "not side by side"  # type: ignore[index]
    # the 14-move schedule and the one beside it fit 1400 px: no horizontal scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert page.evaluate("[...document.querySelectorAll('.tl-scroll')].every(e => e.scrollWidth <= e.clientWidth)")
    # full SQL, bound parameters and the rows returned, one click away
    svg.locator("a.move").nth(3).click()
    detail = page.locator(".move-detail:target")
    expect(detail).to_be_visible()
    expect(detail.locator("pre.sql")).to_contain_text("SELECT COUNT(*) FROM sharding_routing_rule WHERE cluster_name")
    expect(detail.locator("code.params")).to_have_text("('c1', 'PROCESS', 'DB', 'r1')")
    expect(detail.locator("table.rows td")).to_have_text("0")
    detail.locator("a.close").click()
    expect(page.locator(".move-detail:target")).to_have_count(0)
    # a story taller than the window scrolls in its frame, the lane names pinned above it
    page.set_viewport_size({"width": 1400, "height": 360})
    scroller = failing.locator(".tl-scroll")
    scroller.evaluate("e => { e.scrollIntoView(); e.scrollTop = 100; }")
    assert scroller.evaluate("e => e.scrollTop") == 100  # it scrolls: taller than its frame
    head, frame = failing.locator(".tl-head").bounding_box(), scroller.bounding_box()
    assert head is not None and frame is not None and abs(head["y"] - frame["y"]) <= 2, (head, frame)
    expect(failing.locator(".tl-head .tl-lane")).to_have_text(["A", "B"])
    page.set_viewport_size({"width": 1400, "height": 900})
    scroller.evaluate("e => { e.scrollTop = 0; }")
    shot = tmp_path / "bkci.png"
    view.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
    page.context.close()
    assert sorted(set(requests)) == [page_path.as_uri()], requests


def test_the_same_story_in_text_and_json(bkci: Outcome, tmp_path: Path) -> None:
    out = io.StringIO()
    print_outcomes([bkci], out)
    text = out.getvalue()
    assert "while A's transaction was still open (8)" in text, text
    assert "nearest passing schedule (one preemption removed): " + " ".join(bkci.nearest_passing) in text, text
    data = json.loads((write_report(RunResults(outcomes=[bkci]), tmp_path).parent / "results.json").read_text())
    o = data["outcomes"][0]
    moves = o["story"]["moves"]
    assert [m["label"] for m in moves][2:5] == ["BEGIN", "SELECT count sharding_routing_rule",
                                                "INSERT sharding_routing_rule"]
    assert moves[3]["params"] == "('c1', 'PROCESS', 'DB', 'r1')" and moves[3]["rows"] == [["0"]]
    assert {"session": "A", "kind": "lock", "name": KEY, "start": 2, "end": 6, "how": "release"} in o["story"]["spans"]
    assert o["story"]["checks"][0]["sentence"] == "check one_rule failed: expected 1, found 2"
    assert o["story"]["narrative"][-1] == "After the last move, check one_rule failed: expected 1, found 2."
    near = o["nearest_passing"]
    assert near["schedule"] == bkci.nearest_passing and near["story"]["checks"][0]["ok"] is True
    again = Outcome.from_json(o)
    assert again.nearest_passing == bkci.nearest_passing and again.nearest_trace is not None
