"""Assertions shared by exploration tests."""

from __future__ import annotations

from harness.explore.race import ExploreResult, StopReason


def assert_searched(result: ExploreResult, budget: int) -> None:
    """A search that found nothing stopped for a recorded reason that agrees with its count: the
    budget was spent exactly, or the strategy ran out of distinct schedules before it."""
    assert result.failure is None and result.stop_reason is not StopReason.FAILURE
    assert result.budget == budget
    if result.stop_reason is StopReason.BUDGET:
        assert result.schedules_run == budget, result
    else:
        assert result.stop_reason is StopReason.EXHAUSTED and 0 < result.schedules_run < budget, result
