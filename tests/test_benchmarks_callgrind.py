"""Tests for benchmarks.callgrind_overhead: the guard's arithmetic and the dump parsing."""

from __future__ import annotations

from pathlib import Path

from benchmarks import callgrind_overhead as cg


def _per(ratios: dict[str, float]) -> dict[str, dict[str, float]]:
    return {s: {cg.BARE: 1000.0, cg.OURS: 1000.0 * r} for s, r in ratios.items()}


def test_bound_is_goal_plus_slack_once_met_else_baseline_plus_slack() -> None:
    """A scenario in NOT_MET_YET is held at its measured figure + SLACK, others at goal + SLACK."""
    bounds = cg.guard_bounds()
    for s in cg.SCENARIOS:
        expected = cg.NOT_MET_YET.get(s, cg.GOALS[s]) + cg.SLACK
        assert abs(bounds[s] - expected) < 1e-9
        assert s not in cg.NOT_MET_YET or cg.NOT_MET_YET[s] > cg.GOALS[s]


def test_guard_fails_above_its_bound_and_passes_at_it() -> None:
    """A ratio just over the bound breaks the guard; one at the goal meets it."""
    bounds = cg.guard_bounds()
    over = cg.evaluate(_per({s: bounds[s] + 0.001 for s in cg.SCENARIOS}))
    assert not any(g["ok"] for g in over["guards"])
    at_goal = cg.evaluate(_per(dict(cg.GOALS)))
    assert all(g["ok"] and g["goal_met"] for g in at_goal["guards"])


def test_missing_scenario_breaks_the_guard() -> None:
    """A scenario with no measurement is a broken guard, not a pass."""
    result = cg.evaluate(_per({"sync mock": 1.0}))
    verdict = {g["scenario"]: g["ok"] for g in result["guards"]}
    assert verdict["sync mock"] and not verdict["async real"]


def test_dumps_are_read_in_numeric_order(tmp_path: Path) -> None:
    """cg.out.10 comes after cg.out.2, and the final (suffix-less) dump is ignored."""
    for i, total in ((1, 5), (2, 7), (10, 11)):
        (tmp_path / f"cg.out.{i}").write_bytes(
            b"events: Ir\nsummary: %d\ntotals: %d\n" % (total, total)
        )
    (tmp_path / "cg.out").write_bytes(b"totals: 0\n")
    assert list(cg._dumps(tmp_path)) == [5, 7, 11]


def test_render_shows_every_scenario_and_status() -> None:
    """The Markdown names each scenario with its goal status."""
    text = cg.render(cg.evaluate(_per(dict(cg.GOALS))))
    for s in cg.SCENARIOS:
        assert f"| {s} |" in text
    assert "goal met" in text
