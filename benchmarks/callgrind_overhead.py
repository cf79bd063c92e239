"""Instructions per request, bare httpx vs svcclient, counted by callgrind and guarded in CI.

Wall-clock ratios on a shared machine move by ±10 µs between runs; instruction counts do
not, so a guard on them is not flaky. Four scenarios: sync and async, each on an
in-process ``httpx.MockTransport`` and on a real server (a canned-answer server on
127.0.0.1 in a child process that valgrind does not trace, keep-alive connections).

How a figure is made
--------------------
One valgrind process per mode (sync, async) builds each variant's client in turn, warms
it up, then counts a batch of ``N`` and one of ``2N`` requests with the shared harness
(:mod:`benchmarks._callgrind`: each batch inside one ``functools.reduce`` call, the only
region counted; ``(count(2N) - count(N)) / N`` is the cost of one request with every
per-batch constant, such as the event loop's start, cancelled out). svcclient gets a
constant clock, so no breaker or budget window rolls over inside a batch (a roll-over
costs once per window, not per request). The ratio is svcclient / bare httpx in the same
process and run. Each mode's child runs under a few heap layouts (``LAYOUTS``, filler
objects allocated first, see :func:`benchmarks._callgrind.pad_heap`): a count is exact for
one layout but moves by up to ~0.3 % between layouts, so the figure is each variant's
median over the layouts, and the report gives the ratio's spread (min-max) beside it.

Two subjects are measured against bare httpx and guarded: ``ServiceClient`` /
``AsyncServiceClient`` with defaults (what users call; it remembers merged request URLs,
which saves more than the whole pipeline costs on an in-process transport) and svcclient's
transport with defaults inside a bare httpx client (the pipeline alone, with httpx's own
client layer exactly as bare httpx's).

CI (``.ci/run``) runs ``python -m benchmarks.callgrind_overhead --guard``: it fails when a
ratio is above its bound (``guard_bounds()``): the goal + ``SLACK`` where the goal is met,
else the figure measured before the work towards the goal + ``SLACK`` (``NOT_MET_YET``), so
a ratio may never get worse than it is. ``--components`` adds variants with one part of
the pipeline off each (their difference to the defaults is that part's cost; report only).
Needs valgrind and a CPython with symbols (``functools_reduce``), such as pyenv's builds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._callgrind import Batches, constant_clock, have_valgrind, pad_heap, per_call

__all__ = [
    "GOALS",
    "LAYOUTS",
    "NOT_MET_YET",
    "SCENARIOS",
    "SLACK",
    "evaluate",
    "guard_bounds",
    "main",
    "render",
    "run",
]

SCENARIOS = ("sync mock", "async mock", "sync real", "async real")
BARE = "bare httpx"
OURS = "svcclient defaults (ServiceClient)"
# The pipeline alone: svcclient's transport (defaults) inside a bare httpx client, so
# httpx's own client layer is the same as BARE's (ServiceClient remembers merged URLs,
# which a bare client does not; report only).
PIPELINE = "httpx client + svcclient transport"

# The goals (#16): svcclient with defaults / bare httpx, instructions per request.
GOALS: dict[str, float] = {
    "sync mock": 1.05,
    "async mock": 1.08,
    "sync real": 1.03,
    "async real": 1.03,
}
SLACK = 0.02
# Heap layouts each mode is counted under (filler objects allocated first): the figure is
# the median over them, so one lucky or unlucky layout cannot decide a guard.
LAYOUTS = (0, 333, 1009)
SUBJECTS = (OURS, PIPELINE)  # both guarded: the client users call, and the pipeline alone
# Goals not met yet, by subject: the ratio last measured (callgrind, this benchmark with
# -n 60, CPython 3.11.7). The guard holds such a scenario at this figure + SLACK, so it can
# only get better; lower it with each gain, and delete the entry once the goal is met and
# the guard becomes the goal + SLACK. 2026-12-02: the pipeline alone's sync mock went
# 1.068 -> 1.054 -> 1.047 and its entry was deleted (issue #16); every goal is met. A
# figure moves by up to ~0.3 % with the heap's layout (what ran before it in the process,
# the size of the code loaded): callgrind counts are exact for one layout, not across them.
NOT_MET_YET: dict[str, dict[str, float]] = {
    OURS: {},
    # The core redesign (#25) made each policy's step and each stage of a call a method of
    # its own again, where the previous round had pasted them into the drivers at 1.047;
    # plain code measures 1.064-1.070 over runs and layouts (median of three layouts on
    # main, 2026-12-08: 1.069), and a mypyc build was measured and not adopted
    # (benchmarks/results/mypyc.md). Open in #25: bring it back to the goal.
    PIPELINE: {"sync mock": 1.069},
}


def guard_bounds() -> dict[str, dict[str, float]]:
    """The CI bound for each subject's ratio in each scenario (see the module docstring)."""
    return {
        subject: {s: round(NOT_MET_YET[subject].get(s, GOALS[s]) + SLACK, 4) for s in SCENARIOS}
        for subject in SUBJECTS
    }


# -- the clients ----------------------------------------------------------------------------

PATH = "/users/1"
_BODY = b'{"ok":true}'
_MOCK_URL = "http://user-service:8080"


def _options(variant: str) -> dict[str, Any]:
    """ServiceClient keyword arguments for a variant (all but the clock and transport)."""
    from prometheus_client import CollectorRegistry

    from svcclient import PrometheusHooks, RetryPolicy, TracingHooks

    def registry() -> dict[str, Any]:
        return {"registry": CollectorRegistry()}

    table: dict[str, Callable[[], dict[str, Any]]] = {
        OURS: registry,
        "hooks=[]": lambda: {"hooks": []},
        "no Prometheus hooks": lambda: {"hooks": [TracingHooks()]},
        "no tracing hooks": lambda: {"hooks": [PrometheusHooks(registry=CollectorRegistry())]},
        "no breaker": lambda: {**registry(), "breaker": None},
        "no retry budget": lambda: {**registry(), "budget": None},
        "no bulkhead": lambda: {**registry(), "bulkhead": None},
        "no retries (attempts=1, no budget)": lambda: {
            **registry(),
            "retry": RetryPolicy(attempts=1),
            "budget": None,
        },
    }
    return table[variant]()


COMPONENT_VARIANTS = (
    "hooks=[]",
    "no Prometheus hooks",
    "no tracing hooks",
    "no breaker",
    "no retry budget",
    "no bulkhead",
    "no retries (attempts=1, no budget)",
)


def _handler(request: Any) -> Any:
    import httpx

    return httpx.Response(200, content=_BODY, headers={"content-type": "application/json"})


def _make_client(mode: str, wire: str, variant: str, url: str | None) -> Any:
    import httpx

    from svcclient import AsyncServiceClient, ServiceClient

    mock = httpx.MockTransport(_handler) if wire == "mock" else None
    base = url if wire == "real" else _MOCK_URL
    assert base is not None
    if variant == PIPELINE:
        from prometheus_client import CollectorRegistry

        from svcclient import AsyncResilientTransport, ResilientTransport

        kw: dict[str, Any] = {"url": base, "clock": constant_clock}
        if mode == "sync":
            sync = ResilientTransport("bench-callgrind", mock, registry=CollectorRegistry(), **kw)
            return httpx.Client(base_url=base, transport=sync)
        aio = AsyncResilientTransport("bench-callgrind", mock, registry=CollectorRegistry(), **kw)
        return httpx.AsyncClient(base_url=base, transport=aio)
    if variant == BARE:
        if mode == "sync":
            return httpx.Client(base_url=base, transport=mock)
        return httpx.AsyncClient(base_url=base, transport=mock)
    cls = ServiceClient if mode == "sync" else AsyncServiceClient
    return cls(
        "bench-callgrind", url=base, transport=mock, clock=constant_clock, **_options(variant)
    )


# -- the child (runs under valgrind) --------------------------------------------------------


def _child(spec: dict[str, Any]) -> int:
    pad_heap()  # first: this child's heap layout (per_call's ``layout``)
    mode, warm, url = spec["mode"], spec["warmup"], spec.get("url")
    batches = Batches(spec["n"])
    loop = asyncio.new_event_loop() if mode == "async" else None
    for index, (wire, variant) in enumerate(spec["jobs"]):
        client = _make_client(mode, wire, variant, url)
        if loop is None:
            get = client.get

            def sync_n(count: int, get: Any = get) -> Callable[[], None]:
                def go() -> None:
                    for _ in range(count):
                        if get(PATH).status_code != 200:
                            raise RuntimeError("request failed")

                return go

            sync_n(warm)()
            batches.measure(str(index), sync_n)
            client.close()
        else:
            aget = client.get

            async def many(count: int, aget: Any = aget) -> None:
                for _ in range(count):
                    if (await aget(PATH)).status_code != 200:
                        raise RuntimeError("request failed")

            def async_n(count: int, many: Any = many) -> Callable[[], None]:
                return lambda: loop.run_until_complete(many(count))

            async_n(warm)()
            batches.measure(str(index), async_n)
            loop.run_until_complete(client.aclose())
    if loop is not None:
        loop.close()
    batches.write()
    return 0


# -- the parent -----------------------------------------------------------------------------


def _valgrind(spec: dict[str, Any], timeout: float) -> list[float]:
    """Run one child under callgrind; per-request instructions for each of its jobs."""
    args = ["--child", json.dumps(spec)]
    per = per_call("benchmarks.callgrind_overhead", args, spec["n"], timeout, spec["layout"])
    return [per[str(i)] for i in range(len(spec["jobs"]))]


def run(
    n: int = 60, warmup: int = 20, components: bool = False, layouts: tuple[int, ...] = LAYOUTS
) -> dict[str, Any]:
    """Per-request instructions for every scenario and variant (each the median over
    ``layouts``), with ratios, their spread over the layouts, and guards."""
    from benchmarks._servers import ServerProcess

    variants = [BARE, OURS, PIPELINE, *(COMPONENT_VARIANTS if components else ())]
    t0 = time.perf_counter()
    with ServerProcess([{"kind": "canned", "host": "127.0.0.1"}], lifetime=3600.0) as srv:
        specs = [
            {
                "mode": mode,
                "n": n,
                "warmup": warmup,
                "url": srv.urls[0],
                "layout": layout,
                "jobs": [[wire, v] for wire in ("mock", "real") for v in variants],
            }
            for mode in ("async", "sync")  # the longer one first
            for layout in layouts
        ]
        # Generous: on a loaded shared machine one child took over 14 minutes; the figure
        # is an instruction count, so a slow run is no less exact.
        timeout = 1800.0 + 300.0 * len(variants) * n / 60
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(lambda s: _valgrind(s, timeout), specs))
    counts: dict[str, dict[str, dict[int, float]]] = {s: {} for s in SCENARIOS}
    for spec, part in zip(specs, parts, strict=True):
        for (wire, variant), value in zip(spec["jobs"], part, strict=True):
            counts[f"{spec['mode']} {wire}"].setdefault(variant, {})[spec["layout"]] = value
    per = {
        s: {v: statistics.median(by.values()) for v, by in variants_.items()}
        for s, variants_ in counts.items()
    }
    result = evaluate(per)
    # Each layout's ratio (subject and bare httpx counted in the same child).
    result["spread"] = {
        s: {
            v: [by[k] / counts[s][BARE][k] for k in layouts]
            for v, by in variants_.items()
            if v != BARE
        }
        for s, variants_ in counts.items()
    }
    result["meta"] = {
        "n": n,
        "warmup": warmup,
        "layouts": list(layouts),
        "python": sys.version.split()[0],
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    return result


def evaluate(per: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Ratios to bare httpx, goal status and guard verdicts for ``per[scenario][variant]``."""
    bounds = guard_bounds()
    ratios = {s: {v: x / per[s][BARE] for v, x in per[s].items()} for s in per if BARE in per[s]}
    guards = []
    for subject in SUBJECTS:
        for s in SCENARIOS:
            value = ratios.get(s, {}).get(subject)
            guards.append(
                {
                    "subject": subject,
                    "scenario": s,
                    "ratio": value,
                    "goal": GOALS[s],
                    "goal_met": value is not None and value <= GOALS[s],
                    "bound": bounds[subject][s],
                    "ok": value is not None and value <= bounds[subject][s],
                }
            )
    return {"instructions": per, "ratios": ratios, "guards": guards}


def render(result: dict[str, Any]) -> str:
    """Markdown: the four guarded ratios, then every variant's instructions per request."""
    lines = [
        "| scenario | subject | bare httpx | subject | ratio | over layouts "
        "| goal | CI bound | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    per = result["instructions"]
    spread = result.get("spread", {})
    for g in result["guards"]:
        s = g["scenario"]
        ratio = "n/a" if g["ratio"] is None else f"{g['ratio']:.3f}"
        each = spread.get(s, {}).get(g["subject"])
        over = f"{min(each):.3f}-{max(each):.3f}" if each else "n/a"
        status = ("goal met" if g["goal_met"] else "goal not met") + (
            "" if g["ok"] else " — **GUARD BROKEN**"
        )
        bare, value = per.get(s, {}).get(BARE), per.get(s, {}).get(g["subject"])
        lines.append(
            f"| {s} | {g['subject']} | {bare or 0:,.0f} | {value or 0:,.0f} | {ratio} | {over} "
            f"| ≤ {g['goal']:.2f} | ≤ {g['bound']:.3f} | {status} |"
        )
    variants = [v for v in next(iter(per.values()), {}) if v not in (BARE, OURS, PIPELINE)]
    if variants:
        lines += [
            "",
            "| variant | " + " | ".join(f"{s}: instr. (vs defaults)" for s in SCENARIOS) + " |",
            "| --- |" + " ---: |" * len(SCENARIOS),
        ]
        for v in variants:
            cells = []
            for s in SCENARIOS:
                x, base = per.get(s, {}).get(v), per.get(s, {}).get(OURS)
                cells.append("n/a" if x is None or base is None else f"{x:,.0f} ({x - base:+,.0f})")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=60, help="requests per batch (N; 2N follows)")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the batches")
    parser.add_argument("--components", action="store_true", help="one part off per variant")
    parser.add_argument("--guard", action="store_true", help="exit 1 when a ratio is too high")
    parser.add_argument(
        "--layouts",
        default=",".join(map(str, LAYOUTS)),
        help="heap layouts (filler objects) to count each mode under; the median is the figure",
    )
    parser.add_argument("--out", type=Path, help="write callgrind.json and callgrind.md here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))
    if not have_valgrind():
        return 2
    layouts = tuple(int(x) for x in args.layouts.split(","))
    result = run(args.n, args.warmup, args.components, layouts)
    markdown = render(result)
    print(markdown)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "callgrind.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "callgrind.md").write_text(markdown + "\n")
    broken = [f"{g['scenario']} ({g['subject']})" for g in result["guards"] if not g["ok"]]
    if args.guard and broken:
        print(f"\nINSTRUCTION GUARDS BROKEN: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
