"""Tests for benchmarks.callgrind_overhead and the shared harness (benchmarks._callgrind)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import _callgrind
from benchmarks import bench_balancing as bal
from benchmarks import callgrind_overhead as cg


def _per(ratios: dict[str, float]) -> dict[str, dict[str, float]]:
    return {
        s: {cg.BARE: 1000.0, **dict.fromkeys(cg.SUBJECTS, 1000.0 * r)} for s, r in ratios.items()
    }


def test_bound_is_goal_plus_slack_once_met_else_baseline_plus_slack() -> None:
    """A scenario in NOT_MET_YET is held at its measured figure + SLACK, others at goal + SLACK."""
    bounds = cg.guard_bounds()
    assert set(bounds) == set(cg.SUBJECTS) == set(cg.NOT_MET_YET)
    for subject in cg.SUBJECTS:
        not_met = cg.NOT_MET_YET[subject]
        for s in cg.SCENARIOS:
            expected = not_met.get(s, cg.GOALS[s]) + cg.SLACK
            assert abs(bounds[subject][s] - expected) < 1e-9
            assert s not in not_met or not_met[s] > cg.GOALS[s]


def test_guard_fails_above_its_bound_and_passes_at_it() -> None:
    """A ratio just over the bound breaks the guard; one at the goal meets it."""
    bounds = cg.guard_bounds()
    worst = {s: max(bounds[subject][s] for subject in cg.SUBJECTS) for s in cg.SCENARIOS}
    over = cg.evaluate(_per({s: worst[s] + 0.001 for s in cg.SCENARIOS}))
    assert len(over["guards"]) == len(cg.SUBJECTS) * len(cg.SCENARIOS)
    assert not any(g["ok"] for g in over["guards"])
    at_goal = cg.evaluate(_per(dict(cg.GOALS)))
    assert all(g["ok"] and g["goal_met"] for g in at_goal["guards"])


def test_each_subject_is_guarded_on_its_own() -> None:
    """The pipeline alone over its bound breaks its guard even when ServiceClient is fine."""
    per = _per(dict(cg.GOALS))
    per["sync mock"][cg.PIPELINE] = 1000.0 * (cg.guard_bounds()[cg.PIPELINE]["sync mock"] + 0.01)
    broken = [(g["subject"], g["scenario"]) for g in cg.evaluate(per)["guards"] if not g["ok"]]
    assert broken == [(cg.PIPELINE, "sync mock")]


def test_missing_scenario_breaks_the_guard() -> None:
    """A scenario with no measurement is a broken guard, not a pass."""
    result = cg.evaluate(_per({"sync mock": 1.0}))
    verdict = {(g["subject"], g["scenario"]): g["ok"] for g in result["guards"]}
    assert verdict[(cg.OURS, "sync mock")] and not verdict[(cg.OURS, "async real")]
    assert verdict[(cg.PIPELINE, "sync mock")] and not verdict[(cg.PIPELINE, "async real")]


def test_dumps_are_read_in_numeric_order(tmp_path: Path) -> None:
    """cg.out.10 comes after cg.out.2, and the final (suffix-less) dump is ignored."""
    for i, total in ((1, 5), (2, 7), (10, 11)):
        (tmp_path / f"cg.out.{i}").write_bytes(
            b"events: Ir\nsummary: %d\ntotals: %d\n" % (total, total)
        )
    (tmp_path / "cg.out").write_bytes(b"totals: 0\n")
    assert list(_callgrind.dumps(tmp_path)) == [5, 7, 11]


def test_pair_is_the_difference_of_the_two_batches_over_n() -> None:
    """Per label, (count(2n) - count(n)) / n: a per-batch constant cancels out."""
    labels = [("a", 10), ("a", 20), ("b", 10), ("b", 20)]
    counts = [1000 + 10 * 7, 1000 + 20 * 7, 55 + 10 * 3, 55 + 20 * 3]
    assert _callgrind.pair(labels, counts, 10) == {"a": 7.0, "b": 3.0}


def test_pair_refuses_dumps_that_do_not_match_the_labels() -> None:
    """An extra dump (something else called functools.reduce) is an error, not a figure."""
    with pytest.raises(RuntimeError, match="expected 2 callgrind dumps, got 3"):
        _callgrind.pair([("a", 1), ("a", 2)], [1, 2, 3], 1)


def test_batches_record_n_then_2n_per_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each label runs n then 2n times, set-up outside the batch; the labels reach the parent."""
    calls: list[tuple[str, int]] = []

    def make(count: int) -> Callable[[], object]:
        calls.append(("make", count))
        return lambda: calls.append(("run", count))

    batches = _callgrind.Batches(3)
    batches.measure("x", make)
    out = tmp_path / "labels.json"
    monkeypatch.setenv(_callgrind.LABELS_ENV, str(out))
    batches.write()
    assert calls == [("make", 3), ("run", 3), ("make", 6), ("run", 6)]
    assert out.read_text() == '[["x", 3], ["x", 6]]'


def test_render_shows_every_scenario_and_status() -> None:
    """The Markdown names each scenario with its goal status."""
    text = cg.render(cg.evaluate(_per(dict(cg.GOALS))))
    for s in cg.SCENARIOS:
        for subject in cg.SUBJECTS:
            assert f"| {s} | {subject} |" in text
    assert "goal met" in text


def test_affinity_guard_bound_is_the_goal_plus_two_percent() -> None:
    """bench_balancing --guard: a new key at 1,000 endpoints may cost 10,000 + 2 %."""
    assert bal.guard_bound() == pytest.approx(10_200.0)
    assert bal.GUARDED == ("affinity (new key)", 1000)


def test_affinity_guard_fails_above_its_bound_and_passes_at_it() -> None:
    """Just over the bound breaks the guard; the bound itself holds (goal not met)."""
    row, size = bal.GUARDED
    over = bal.evaluate({row: {size: bal.guard_bound() + 1}})
    assert not over["ok"] and not over["goal_met"]
    at = bal.evaluate({row: {size: bal.guard_bound()}})
    assert at["ok"] and not at["goal_met"]
    assert bal.evaluate({row: {size: 8_448.0, 100: 99_999.0}})["goal_met"]


def test_affinity_guard_missing_figure_is_broken() -> None:
    """No figure at 1,000 endpoints (only 100 measured) is a broken guard, not a pass."""
    result = bal.evaluate({"affinity (new key)": {100: 1.0}})
    assert result["value"] is None and not result["ok"]


def test_affinity_batches_are_whole_generations() -> None:
    """A batch size that is not a multiple of the generation size is refused (before valgrind)."""
    assert bal.GUARD_N % bal._MEMORY_HALF == 0 and bal.CALLGRIND_N % bal._MEMORY_HALF == 0
    with pytest.raises(ValueError, match="multiple of 512"):
        bal.callgrind(1000)


def test_affinity_guard_breaks_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """--callgrind --guard exits 1 over the bound and 0 within it; only the guard's job runs."""
    calls: list[tuple[int, bool]] = []
    figure = {"value": 0.0}

    def fake(n: int, timeout: float = 0.0, guard: bool = False) -> dict[str, dict[int, float]]:
        calls.append((n, guard))
        return {"affinity (new key)": {1000: figure["value"]}}

    monkeypatch.setattr(bal, "callgrind", fake)
    monkeypatch.setattr(bal, "have_valgrind", lambda: True)
    figure["value"] = bal.guard_bound() + 1
    assert bal.main(["--callgrind", "--guard"]) == 1
    assert bal.main(["--callgrind"]) == 0  # a report, not a guard
    figure["value"] = 8_448.0
    assert bal.main(["--callgrind", "--guard"]) == 0
    assert calls == [(bal.GUARD_N, True), (bal.CALLGRIND_N, False), (bal.GUARD_N, True)]


def test_pad_heap_allocates_the_layouts_filler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's heap layout: ``$SVC_CALLGRIND_LAYOUT`` filler objects, none when unset."""
    before = len(_callgrind._FILLER)
    monkeypatch.delenv(_callgrind.LAYOUT_ENV, raising=False)
    _callgrind.pad_heap()
    assert len(_callgrind._FILLER) == before
    monkeypatch.setenv(_callgrind.LAYOUT_ENV, "100")
    _callgrind.pad_heap()
    assert len(_callgrind._FILLER) == before + 100 + 100 + 2
    del _callgrind._FILLER[before:]


def test_render_shows_the_ratio_over_layouts() -> None:
    """Each guarded row carries the min-max of its per-layout ratios."""
    result = cg.evaluate(_per(dict(cg.GOALS)))
    result["spread"] = {s: {cg.PIPELINE: [1.001, 1.004, 1.002]} for s in cg.SCENARIOS}
    text = cg.render(result)
    assert text.count("1.001-1.004") == len(cg.SCENARIOS)
    assert "n/a" in text  # the ServiceClient rows had no spread given
