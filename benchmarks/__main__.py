"""``python -m benchmarks [--quick] [--out DIR] [--only NAMES]``: run the whole suite.

Runs the four claim sections in this process (overhead, fast failure, goodput, scale)
and the per-module micro-benchmarks each in a child process with a time limit (a missing
module is reported as "skipped: not present"). Writes ``DIR/latest.json``,
``DIR/latest.md`` and ``DIR/latency_under_faults.svg`` (default DIR: benchmarks/results),
prints the Markdown and exits

* 0 when every CI guard holds,
* 1 when a guard is broken or a claim section crashed:
  - happy-path overhead ratio (sync, MockTransport), median over rounds, above 1.5;
  - goodput success rate of svcclient defaults under faults below 99 %;
  - live memory growth after warm-up above the bound (blocks per 1,000 requests).

``--quick`` is what CI runs (``.ci/run``); it is sized to finish well under 3 minutes on 2
cores, and every loop in the suite is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import html
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "GUARD_GOODPUT_MIN",
    "GUARD_OVERHEAD_MAX",
    "MODULES",
    "SECTIONS",
    "evaluate_guards",
    "main",
    "render_markdown",
    "render_svg",
]

SECTIONS = ("overhead", "fastfail", "goodput", "scale")
MODULES = (
    "bench_breaker",
    "bench_retry",
    "bench_balancing",
    "bench_observability",
    "bench_overload",
    "bench_config",
    "bench_burst",
    "bench_deadline",
)
GUARD_OVERHEAD_MAX = 1.5
GUARD_GOODPUT_MIN = 0.99
BURST_REQUESTS = 1000  # benchmarks.bench_burst.BURST (not imported: it needs the servers)
MODULE_TIMEOUT = {True: 60.0, False: 300.0}  # seconds, by --quick
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

Json = dict[str, Any]


# -- running --------------------------------------------------------------------------------


def _run_section(name: str, quick: bool) -> Json:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    result: Json = module.run(quick)
    return result


def _run_module(name: str, quick: bool) -> Json:
    """A micro-benchmark in a child process, bounded in time; never raises."""
    if importlib.util.find_spec(f"benchmarks.{name}") is None:
        return {"skipped": "not present"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks", "--module", name, "--json-out", str(out)]
        if quick:
            cmd.append("--quick")
        try:
            proc = subprocess.run(
                cmd,
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                timeout=MODULE_TIMEOUT[quick],
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {MODULE_TIMEOUT[quick]:g} s"}
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            return {"error": " / ".join(tail) or f"exit status {proc.returncode}"}
        data: Json = json.loads(out.read_text())
        return data


def _module_child(name: str, quick: bool, json_out: str) -> int:
    module = importlib.import_module(f"benchmarks.{name}")
    result = module.run(quick)
    Path(json_out).write_text(json.dumps(result, default=str))
    return 0


# -- extracting the claims ------------------------------------------------------------------


def _dig(data: Any, *keys: Any) -> Any:
    """``data[k1][k2]...`` or None when any step is missing (int keys also tried as str)."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        if key in data:
            data = data[key]
        elif str(key) in data:
            data = data[str(key)]
        else:
            return None
    return data


def _fmt_ratio(section: Any, name: str) -> str | None:
    ratio = _dig(section, "ratio", name)
    added = _dig(section, "added_us", name)
    if ratio is None or added is None:
        return None
    return (
        f"{ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f}), "
        f"{added['median']:+.1f} µs/request"
    )


def _status(ok: bool | None, *, guard: bool | None = None) -> str:
    if ok is None:
        return "n/a"
    text = "met" if ok else "not met"
    if guard is False:
        text += " — **GUARD BROKEN**"
    return text


def _claim_rows(results: Json) -> list[tuple[str, str, str, str]]:
    """(claim, measured, target, status) for the headline table."""
    rows: list[tuple[str, str, str, str]] = []
    sec = results.get("sections", {})
    ours, bare, diy = "svcclient (defaults)", "httpx", "tenacity + pybreaker"

    ov = sec.get("overhead") or {}
    for label, section, guarded in (
        (
            "1. Overhead, sync, MockTransport: ratio median (min-max)",
            _dig(ov, "mock_sync", "clients"),
            True,
        ),
        ("1. Overhead, async, MockTransport", _dig(ov, "mock_async"), False),
        ("1. Overhead, sync, real server on loopback", _dig(ov, "real", "sync"), False),
        ("1. Overhead, async, real server on loopback", _dig(ov, "real", "async"), False),
    ):
        text = _fmt_ratio(section, ours)
        med = _dig(section, "ratio", ours, "median")
        target = "≤ 1.10 (aim ≤ 1.05)" + (f"; CI guard ≤ {GUARD_OVERHEAD_MAX}" if guarded else "")
        ok = None if med is None else med <= 1.10
        guard = None if med is None or not guarded else med <= GUARD_OVERHEAD_MAX
        rows.append((label, text or "n/a", target, _status(ok, guard=guard)))

    mock = _dig(ov, "mock_sync", "clients", "per_op_us")
    if mock and diy in mock:
        d, o, b = mock[diy]["median"], mock[ours]["median"], mock[bare]["median"]
        rows.append(
            (
                "2. Per call vs do-it-yourself (tenacity + pybreaker around httpx), µs median",
                f"svcclient {o:.1f} vs DIY {d:.1f} (bare httpx {b:.1f})",
                "svcclient cheaper",
                _status(o < d),
            )
        )

    ff = sec.get("fastfail") or {}
    for label, key, sent_key in (
        (
            "3. Reject with breaker open (ServiceClient.get), µs median",
            "breaker_open",
            "requests_sent_while_open",
        ),
        (
            "3. Reject with bulkhead full (ServiceClient.get), µs median",
            "bulkhead_full",
            "requests_sent_while_full",
        ),
    ):
        per = _dig(ff, key, "per_op_us")
        if not per:
            rows.append((label, "n/a", "µs, no request sent", "n/a"))
            continue
        cells = [
            f"{n.split(' ->')[0]} {v['median']:.1f}" for n, v in per.items() if "reference" not in n
        ]
        sent = _dig(ff, key, sent_key)
        rows.append(
            (label, "; ".join(cells) + f"; sent {sent}", "µs, no request sent", _status(sent == 0))
        )

    gp = _dig(sec, "goodput", "contenders") or {}
    for key, entry in gp.items():
        measured = (
            f"{entry['success_rate']:.2%} ok, p50 {entry['p50_ms']:.1f} / p99 {entry['p99_ms']:.1f}"
            f" / max {entry['max_ms']:.0f} ms, {entry['run_s']:.1f} s"
        )
        if key == "c":
            target = f"≥ 99.9 %, run time ≈ (ref); CI guard ≥ {GUARD_GOODPUT_MIN:.0%}"
            ok = entry["success_rate"] >= 0.999
            guard = entry["success_rate"] >= GUARD_GOODPUT_MIN
            rows.append(
                (f"4. Goodput {entry['label']}", measured, target, _status(ok, guard=guard))
            )
        elif key == "d":
            ok = entry["success_rate"] >= 0.999 and entry["p99_ms"] <= 10.0
            rows.append(
                (f"4. Goodput {entry['label']}", measured, "≥ 99.9 % and p99 ≤ 10 ms", _status(ok))
            )
        else:
            rows.append((f"4. Goodput {entry['label']}", measured, "reference", "-"))

    sc = sec.get("scale") or {}
    pick = _dig(sc, "pick_cost", "by_strategy")
    if pick:
        cells = [
            f"{s} {_dig(pick, s, 100, 'pick'):.2f}"
            for s in pick
            if _dig(pick, s, 100, "pick") is not None
        ]
        # The bound is for the default balancer; the others are shown for scale.
        default = _dig(pick, "round_robin", 100, "pick")
        rows.append(
            (
                "5. Pick cost, 100 endpoints, µs (best round)",
                "; ".join(cells),
                "≲ 1 µs (default round_robin)",
                _status(default is not None and default <= 1.0),
            )
        )
    mem = _dig(sc, "memory")
    if mem:
        per_1k = mem["blocks_growth_per_1k"]
        ok = per_1k <= mem["blocks_bound_per_1k"]
        rows.append(
            (
                "5. Memory after N requests (live blocks growth per 1k requests)",
                f"{per_1k:.2f} over {mem['requests']:,} requests; tracemalloc "
                f"{mem['traced_growth_bytes']:,} B over {mem['traced_requests']:,}",
                f"flat; CI guard ≤ {mem['blocks_bound_per_1k']:g}",
                _status(ok, guard=ok),
            )
        )
    conc = _dig(sc, "concurrent")
    if conc and "svcclient" in conc:
        s = conc["svcclient"]
        b = conc.get("httpx", {})
        rows.append(
            (
                f"5. {conc['requests']:,} concurrent async requests, one client",
                f"{s['succeeded']:,} ok in {s['wall_s_best']:.2f} s "
                f"(httpx {b.get('wall_s_best', math.nan):.2f} s)",
                "all succeed",
                _status(s["succeeded"] == conc["requests"]),
            )
        )
    rows.extend(_module_claims(results.get("modules", {})))
    return rows


def _module_claims(mods: Json) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    br = mods.get("bench_breaker") or {}
    closed, opened = _dig(br, "closed"), _dig(br, "open")
    if closed:
        bare = _dig(closed, "bare call f(x)", "min") or 0.0
        ours = _dig(closed, "svcclient allow()+record_success()", "min")
        pb = _dig(closed, "pybreaker", "min")
        cb = _dig(closed, "circuitbreaker", "min")
        if ours is not None:
            extra = "".join(
                f", {n} {v - bare:.2f}"
                for n, v in (("pybreaker", pb), ("circuitbreaker", cb))
                if v is not None
            )
            rows.append(
                (
                    "#3 Breaker, closed call overhead, µs (min)",
                    f"svcclient {ours:.2f}{extra} (over bare call)",
                    "≤ 1 µs, beat pybreaker and circuitbreaker",
                    _status(
                        ours <= 1.0 and all(ours <= v - bare for v in (pb, cb) if v is not None)
                    ),
                )
            )
    if opened:
        allow = _dig(opened, "svcclient allow() -> False", "min")
        raises = _dig(opened, "svcclient breaker(x) raises", "min")
        pbr = _dig(opened, "pybreaker raises", "min")
        if allow is not None:
            extra = f", breaker(x) raises {raises:.2f}" if raises is not None else ""
            extra += f", pybreaker raises {pbr:.2f}" if pbr is not None else ""
            rows.append(
                (
                    "#3 Breaker, open rejection, µs (min)",
                    f"allow() {allow:.2f}{extra}",
                    "≤ 1 µs",
                    _status(allow <= 1.0),
                )
            )
    rt = mods.get("bench_retry") or {}
    happy = _dig(rt, "happy")
    if happy:
        ten = _dig(happy, "tenacity @retry f(x)", "min")
        plain = _dig(happy, "plain call f(x)", "min") or 0.0
        first = _dig(happy, "first attempt: Deadline + record_request", "min")
        if ten is not None and first is not None:
            rows.append(
                (
                    "#4 Retry, happy-path cost, µs (min)",
                    f"ours {first - plain:.2f} vs tenacity @retry {ten - plain:.2f}",
                    "first attempt pays no tenacity loop",
                    _status(first < ten),
                )
            )
    bal = mods.get("bench_balancing") or {}
    if bal and "error" not in bal and "skipped" not in bal:
        cells = [
            f"{s} {_dig(bal, s, 100, 'pick'):.2f}"
            for s in bal
            if _dig(bal, s, 100, "pick") is not None
        ]
        if cells:
            default = _dig(bal, "round_robin", 100, "pick")
            rows.append(
                (
                    "#5 Pick cost, 100 endpoints, µs (bench_balancing)",
                    "; ".join(cells),
                    "≲ 1 µs (default round_robin)",
                    _status(default is not None and default <= 1.0),
                )
            )
    obs = mods.get("bench_observability") or {}
    prom = _dig(obs, "prometheus: whole call (start, attempt_end, end)")
    nosdk = _dig(obs, "tracing, no SDK: whole call")
    sdk = _dig(obs, "tracing, SDK (no exporter): whole call incl. call span")
    if isinstance(prom, int | float) and isinstance(nosdk, int | float):
        measured = f"Prometheus {prom:.2f} + tracing API (no SDK) {nosdk:.2f}"
        if isinstance(sdk, int | float):
            measured += f"; with SDK {sdk:.2f}"
        rows.append(
            (
                "#6 Metrics + tracing per request, µs",
                measured,
                "near zero with no SDK",
                _status(nosdk <= 1.0),
            )
        )
    burst = _dig(mods, "bench_burst", "contenders") or {}
    bare = _dig(burst, "bare httpx.AsyncClient", "wall_s_best")
    for name, target in (
        ("svcclient defaults (httpx wire)", "all 1,000 succeed; CI guard"),
        ('svcclient wire="aiohttp"', "all 1,000 succeed, >= 5x faster than bare httpx; CI guard"),
    ):
        entry = burst.get(name)
        if entry is None or bare is None:
            continue
        # the median of same-round ratios (interleaved bursts) when there is one
        rounds = entry.get("speedup_over_bare")
        speed = rounds["median"] if rounds else bare / entry["wall_s_best"]
        ok = entry["succeeded"] == BURST_REQUESTS and ("5x" not in target or speed >= 5.0)
        rows.append(
            (
                f"#16 Burst of 1,000 concurrent GETs, {name}",
                f"{entry['succeeded']:,} ok in {entry['wall_s_best']:.2f} s "
                f"({speed:.1f}x bare httpx's {bare:.2f} s"
                + (f", median of {rounds['rounds']} same-round ratios)" if rounds else ")"),
                target,
                _status(ok),
            )
        )
    return rows


# -- guards -------------------------------------------------------------------------------


def evaluate_guards(results: Json) -> list[Json]:
    """The CI guards: ``[{"name", "value", "bound", "ok"}]``; a missing value fails."""
    sec = results.get("sections", {})
    guards: list[Json] = []
    ratio = _dig(sec, "overhead", "mock_sync", "clients", "ratio", "svcclient (defaults)", "median")
    guards.append(
        {
            "name": "overhead ratio, sync MockTransport, median",
            "value": ratio,
            "bound": f"<= {GUARD_OVERHEAD_MAX}",
            "ok": ratio is not None and ratio <= GUARD_OVERHEAD_MAX,
        }
    )
    rate = _dig(sec, "goodput", "contenders", "c", "success_rate")
    guards.append(
        {
            "name": "goodput success rate, svcclient defaults under faults",
            "value": rate,
            "bound": f">= {GUARD_GOODPUT_MIN}",
            "ok": rate is not None and rate >= GUARD_GOODPUT_MIN,
        }
    )
    growth = _dig(sec, "scale", "memory", "blocks_growth_per_1k")
    bound = _dig(sec, "scale", "memory", "blocks_bound_per_1k")
    guards.append(
        {
            "name": "memory growth after warm-up, live blocks per 1k requests",
            "value": growth,
            "bound": f"<= {bound}",
            "ok": growth is not None and bound is not None and growth <= bound,
        }
    )
    for contender, label in (
        ("svcclient defaults (httpx wire)", "svcclient defaults (httpx wire)"),
        ('svcclient wire="aiohttp"', 'wire="aiohttp"'),
    ):
        succeeded = _dig(
            results.get("modules", {}), "bench_burst", "contenders", contender, "succeeded"
        )
        guards.append(
            {
                "name": f"burst of 1,000 concurrent GETs on {label}: succeeded",
                "value": succeeded,
                "bound": f"== {BURST_REQUESTS}",
                "ok": succeeded == BURST_REQUESTS,
            }
        )
    for name, error in results.get("errors", {}).items():
        guards.append(
            {"name": f"section {name} ran", "value": error, "bound": "no error", "ok": False}
        )
    return guards


# -- rendering ----------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _generic_rows(prefix: str, data: Any, out: list[str], depth: int = 0) -> None:
    """Flatten another helper's result dict into table rows (min/median/max when present)."""
    if depth > 6:
        return
    if isinstance(data, dict):
        if {"min", "median", "max"} <= data.keys():
            out.append(
                f"| {_cell(prefix)} | {data['min']:.3f} | {data['median']:.3f} "
                f"| {data['max']:.3f} |"
            )
            return
        for key, value in data.items():
            if key == "meta":
                continue
            _generic_rows(f"{prefix} / {key}" if prefix else str(key), value, out, depth + 1)
    elif isinstance(data, int | float) and not isinstance(data, bool):
        out.append(f"| {_cell(prefix)} | {data:.3f} | | |")
    elif isinstance(data, list | str | bool):
        out.append(f"| {_cell(prefix)} | {_cell(data)} | | |")


def _section_detail(name: str, data: Json) -> str:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    render: Callable[[Json], str] = module.render
    try:
        return render(data)
    except (KeyError, TypeError, ValueError) as exc:  # partial data: say so, keep the report
        return f"(no detail table: {type(exc).__name__}: {exc})"


def render_markdown(results: Json) -> str:
    """The report: headline claims, guards, then every section's own table."""
    meta = results.get("meta", {})
    lines = [
        f"## svcclient benchmarks ({'quick' if meta.get('quick') else 'full'} run)",
        "",
        f"{meta.get('python', '')} on {meta.get('machine', '')}, {meta.get('cpus', '?')} CPUs, "
        f"httpx {meta.get('httpx', '')}; run took {results.get('runtime_s', math.nan):.1f} s. "
        "Ratios are per round (contender / bare httpx in the same round), rounds interleaved; "
        "median (min-max).",
        "",
        "| claim | measured | target | status |",
        "| --- | --- | --- | --- |",
    ]
    for claim, measured, target, status in _claim_rows(results):
        lines.append(f"| {_cell(claim)} | {_cell(measured)} | {_cell(target)} | {_cell(status)} |")
    lines += [
        "",
        "### CI guards",
        "",
        "| guard | value | bound | ok |",
        "| --- | --- | --- | --- |",
    ]
    for g in results.get("guards", []):
        value = g["value"]
        shown = f"{value:.4g}" if isinstance(value, int | float) else _cell(value)
        lines.append(
            f"| {_cell(g['name'])} | {shown} | {_cell(g['bound'])} "
            f"| {'yes' if g['ok'] else '**NO**'} |"
        )
    titles = {
        "overhead": "1-2. Happy-path overhead (µs per request)",
        "fastfail": "3. Fast failure",
        "goodput": "4. Goodput under faults",
        "scale": "5. Scale",
    }
    for name in SECTIONS:
        data = results.get("sections", {}).get(name)
        if data is None:
            continue
        lines += ["", f"### {titles[name]}", "", _section_detail(name, data)]
    for name, error in results.get("errors", {}).items():
        lines += ["", f"### {name}: ERROR", "", "```", str(error)[-1500:], "```"]
    mods = results.get("modules", {})
    if mods:
        lines += [
            "",
            "### Module micro-benchmarks (µs; min / median / max where given)",
            "",
            "| case | min or value | median | max |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, data in mods.items():
            if "skipped" in data or "error" in data:
                what = (
                    "skipped: " + data["skipped"]
                    if "skipped" in data
                    else "error: " + data["error"]
                )
                lines.append(f"| {name} | {_cell(what)} | | |")
                continue
            rows: list[str] = []
            _generic_rows(name, data, rows)
            lines += rows
    return "\n".join(lines)


_COLORS = ("#7f7f7f", "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd")


def render_svg(goodput: Json) -> str:
    """A hand-written SVG: share of all requests answered OK within each latency (log x)."""
    width, height = 760, 430
    left, right, top, bottom = 60, 250, 40, 50
    pw, ph = width - left - right, height - top - bottom
    lo, hi = -1.0, 4.0  # 0.1 ms .. 10 s

    def x(ms: float) -> float:
        v = math.log10(min(max(ms, 10**lo), 10**hi))
        return left + (v - lo) / (hi - lo) * pw

    def y(frac: float) -> float:
        return top + (1.0 - frac) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14" font-weight="bold">Latency under faults: share of '
        "requests answered OK within t</text>",
    ]
    for e in range(int(lo), int(hi) + 1):
        xv = x(10.0**e)
        label = f"{10.0**e:g} ms" if e < 3 else f"{10.0 ** (e - 3):g} s"
        parts.append(
            f'<line x1="{xv:.1f}" y1="{top}" x2="{xv:.1f}" y2="{top + ph}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{xv:.1f}" y="{top + ph + 16}" text-anchor="middle">{label}</text>')
    for pct in range(0, 101, 20):
        yv = y(pct / 100)
        parts.append(
            f'<line x1="{left}" y1="{yv:.1f}" x2="{left + pw}" y2="{yv:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{yv + 4:.1f}" text-anchor="end">{pct} %</text>')
    parts.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
        f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">'
        "latency t (log scale)</text>"
    )
    contenders = goodput.get("contenders", {})
    for i, entry in enumerate(contenders.values()):
        color = _COLORS[i % len(_COLORS)]
        qs: Sequence[float] = entry.get("ok_quantiles_ms", [])
        rate = float(entry.get("success_rate", 0.0))
        points: list[str] = []
        if qs:
            n = len(qs) - 1
            prev = 0.0
            for k, ms in enumerate(qs):
                frac = rate * k / n if n else rate
                points.append(f"{x(ms):.1f},{y(prev):.1f}")
                points.append(f"{x(ms):.1f},{y(frac):.1f}")
                prev = frac
            points.append(f"{x(10.0**hi):.1f},{y(rate):.1f}")
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'points="{" ".join(points)}"/>'
            )
        ly = top + 14 + i * 34
        lx = left + pw + 14
        parts.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 20}" y2="{ly}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        label = html.escape(str(entry.get("label", "")))
        parts.append(f'<text x="{lx + 26}" y="{ly + 4}">{label[:34]}</text>')
        parts.append(
            f'<text x="{lx + 26}" y="{ly + 18}" fill="#555">{rate:.1%} ok, p99 '
            f"{float(entry.get('p99_ms', math.nan)):.0f} ms</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- entry point ----------------------------------------------------------------------------


def _meta(quick: bool) -> Json:
    return {
        "quick": quick,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "httpx": httpx.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="the CI size (< 3 min on 2 cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument(
        "--only", default=None, help="comma-separated sections/modules, e.g. overhead,bench_retry"
    )
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.module:
        return _module_child(args.module, args.quick, args.json_out)

    only = set(args.only.split(",")) if args.only else None
    t0 = time.perf_counter()
    results: Json = {
        "meta": _meta(args.quick),
        "sections": {},
        "modules": {},
        "errors": {},
        "timings_s": {},
    }
    for name in SECTIONS:
        if only is not None and name not in only:
            continue
        started = time.perf_counter()
        print(f"… {name}", file=sys.stderr, flush=True)
        try:
            results["sections"][name] = _run_section(name, args.quick)
        except Exception:
            results["errors"][name] = traceback.format_exc()
        results["timings_s"][name] = round(time.perf_counter() - started, 2)
    for name in MODULES:
        if only is not None and name not in only:
            continue
        started = time.perf_counter()
        print(f"… {name}", file=sys.stderr, flush=True)
        results["modules"][name] = _run_module(name, args.quick)
        results["timings_s"][name] = round(time.perf_counter() - started, 2)
    results["runtime_s"] = time.perf_counter() - t0
    if only is None or {"overhead", "goodput", "scale"} <= only:
        results["guards"] = evaluate_guards(results)
    else:  # a partial run judges only what it ran
        results["guards"] = [
            g
            for g in evaluate_guards(results)
            if g["value"] is not None or g["name"].startswith("section")
        ]
    markdown = render_markdown(results)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "latest.md").write_text(markdown + "\n")
    if "goodput" in results["sections"]:
        (out / "latency_under_faults.svg").write_text(render_svg(results["sections"]["goodput"]))
    print(markdown)
    broken = [g["name"] for g in results["guards"] if not g["ok"]]
    if broken:
        print(f"\nGUARDS BROKEN: {'; '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
