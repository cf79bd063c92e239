"""Smoke tests for the benchmark suite: tiny runs, output structure, guards (not timings)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from benchmarks import __main__ as runner
from benchmarks._timing import (
    Summary,
    interleave,
    percentile,
    quantiles,
    summarize,
    sync_runner,
)
from benchmarks.bench_fastfail import _breaker_open
from benchmarks.bench_overhead import OURS, _mock_sync


def _fixed(per_op: float) -> Any:
    """A runner that claims ``per_op`` seconds per operation without doing anything."""
    return lambda n: per_op * n


def test_interleave_reports_per_op_and_exact_ratios() -> None:
    """Per-round ratios and added time are computed against the named baseline."""
    cmp = interleave(
        {"base": _fixed(0.001), "slow": _fixed(0.003)}, number=10, rounds=4, baseline="base"
    )
    assert set(cmp.per_op) == {"base", "slow"}
    assert set(cmp.ratio) == {"slow"}
    assert cmp.ratio["slow"].median == pytest.approx(3.0)
    assert cmp.added["slow"].median == pytest.approx(0.002)
    assert cmp.rounds == 4 and not cmp.time_bound_hit
    d = cmp.as_dict()
    assert d["per_op_us"]["base"]["median"] == pytest.approx(1000.0)
    assert d["ratio"]["slow"]["n"] == 4


def test_interleave_rotates_order_each_round() -> None:
    """Every contender runs first in some round (the order rotates)."""
    calls: list[str] = []

    def runner(name: str) -> Any:
        def run(n: int) -> float:
            calls.append(name)
            return 0.001

        return run

    interleave({"a": runner("a"), "b": runner("b")}, number=1, rounds=2, warmup=0)
    assert calls == ["a", "b", "b", "a"]


def test_interleave_stops_at_time_bound_after_min_rounds() -> None:
    """With a clock past max_seconds, only min_rounds rounds run and the hit is reported."""
    ticks = itertools.count(0.0, 100.0)
    cmp = interleave(
        {"a": _fixed(0.001)},
        number=1,
        rounds=50,
        max_seconds=1.0,
        min_rounds=2,
        clock=lambda: next(ticks),
    )
    assert cmp.rounds == 2
    assert cmp.time_bound_hit


def test_interleave_rejects_unknown_baseline() -> None:
    """Naming a baseline that is not a contender is an error, not a silent no-ratio."""
    with pytest.raises(ValueError, match="baseline"):
        interleave({"a": _fixed(0.001)}, number=1, rounds=1, baseline="b")


def test_sync_runner_calls_n_times() -> None:
    """sync_runner performs exactly n calls and returns a non-negative duration."""
    seen: list[int] = []
    elapsed = sync_runner(lambda: seen.append(1))(7)
    assert len(seen) == 7 and elapsed >= 0.0


def test_percentiles_and_summary() -> None:
    """Nearest-rank percentiles, 101 quantiles, and min/median/max summaries."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    qs = quantiles(values)
    assert len(qs) == 101 and qs[0] == 1.0 and qs[-1] == 100.0
    assert summarize([3.0, 1.0, 2.0]) == Summary(1.0, 2.0, 3.0, 3)
    with pytest.raises(ValueError):
        summarize([])


def test_tiny_overhead_comparison_has_the_expected_shape() -> None:
    """A tiny MockTransport run yields per-request times and ratios for every contender."""
    result = _mock_sync({"number": 3, "rounds": 2, "max_s": 5})
    clients = result["clients"]
    assert clients["baseline"] == "httpx"
    assert OURS in clients["ratio"] and clients["ratio"][OURS]["median"] > 0
    assert {"httpx", OURS} <= set(clients["per_op_us"])
    assert set(result["transports"]["ratio"]) == {"ResilientTransport.handle_request"}


def test_breaker_open_rejections_send_nothing() -> None:
    """With the breaker forced open, no rejected call reaches the mock server."""
    result = _breaker_open(number=3, rounds=2, max_s=5.0)
    assert result["requests_sent_while_open"] == 0
    assert "ServiceClient.get -> CircuitOpenError" in result["per_op_us"]


def _results(
    ratio: float, rate: float, growth: float | None, burst_ok: int = 1000
) -> dict[str, Any]:
    section = {
        "baseline": "httpx",
        "per_op_us": {"httpx": {"min": 1, "median": 1, "max": 1}},
        "ratio": {OURS: {"min": ratio, "median": ratio, "max": ratio}},
        "added_us": {OURS: {"min": 1.0, "median": 1.0, "max": 1.0}},
    }
    scale: dict[str, Any] = {}
    if growth is not None:
        scale = {
            "memory": {
                "blocks_growth_per_1k": growth,
                "blocks_bound_per_1k": 50.0,
                "requests": 1000,
                "traced_growth_bytes": 0,
                "traced_requests": 10,
            }
        }
    entry = {
        "label": "(c) svcclient defaults",
        "success_rate": rate,
        "p50_ms": 1.0,
        "p99_ms": 5.0,
        "max_ms": 9.0,
        "run_s": 1.0,
        "ok_quantiles_ms": [0.5, 1.0, 5.0],
    }
    return {
        "meta": {"quick": True},
        "sections": {
            "overhead": {"mock_sync": {"clients": section}},
            "goodput": {"contenders": {"c": entry}},
            "scale": scale,
        },
        "modules": {
            "bench_missing": {"skipped": "not present"},
            "bench_burst": {
                "contenders": {
                    "bare httpx.AsyncClient": {"succeeded": 1000, "wall_s_best": 5.0},
                    "svcclient defaults (httpx wire)": {
                        "succeeded": burst_ok,
                        "wall_s_best": 1.5,
                    },
                    'svcclient wire="aiohttp"': {"succeeded": burst_ok, "wall_s_best": 0.5},
                }
            },
        },
        "errors": {},
    }


def test_guards_fail_on_overhead_and_missing_memory() -> None:
    """A ratio above 1.5, an absent memory figure and a lost burst request break guards."""
    guards = runner.evaluate_guards(_results(1.6, 0.995, None, burst_ok=999))
    ok = {g["name"].split(",")[0]: g["ok"] for g in guards}
    assert ok == {
        "overhead ratio": False,
        "goodput success rate": True,
        "memory growth after warm-up": False,
        "burst of 1": False,
    }


def test_burst_guard_on_the_httpx_wire_is_a_count() -> None:
    """The default (httpx) wire's burst guard breaks on one lost request, whatever the time."""
    results = _results(1.2, 1.0, 0.5)
    burst = results["modules"]["bench_burst"]["contenders"]
    burst["svcclient defaults (httpx wire)"]["succeeded"] = 999
    guards = {g["name"]: g["ok"] for g in runner.evaluate_guards(results)}
    assert (
        guards["burst of 1,000 concurrent GETs on svcclient defaults (httpx wire): succeeded"]
        is False
    )
    assert guards['burst of 1,000 concurrent GETs on wire="aiohttp": succeeded'] is True


def test_guards_pass_when_within_bounds() -> None:
    """Every guard holds for a 1.2 ratio, 100 % goodput and flat memory."""
    assert all(g["ok"] for g in runner.evaluate_guards(_results(1.2, 1.0, 0.5)))


def test_markdown_has_claims_guards_and_skips() -> None:
    """The report shows the claims table, flags a broken guard and lists skipped modules."""
    results = _results(1.6, 0.5, 0.5)
    results["guards"] = runner.evaluate_guards(results)
    md = runner.render_markdown(results)
    assert "| claim | measured | target | status |" in md
    assert "GUARD BROKEN" in md
    assert "bench_missing | skipped: not present" in md


def test_svg_is_well_formed_with_one_line_per_contender() -> None:
    """The latency chart parses as XML and draws a polyline for each contender."""
    goodput = _results(1.0, 1.0, 0.0)["sections"]["goodput"]
    goodput["contenders"]["a"] = dict(goodput["contenders"]["c"], label="(a) <bare>")
    root = ET.fromstring(runner.render_svg(goodput))
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2


def test_missing_module_is_skipped() -> None:
    """A micro-benchmark module that does not exist is reported as skipped, not an error."""
    assert runner._run_module("bench_does_not_exist", True) == {"skipped": "not present"}
