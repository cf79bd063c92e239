"""Happy-path cost of retries: a tenacity-decorated call vs what our pipeline pays.

The pipeline keeps tenacity's loop off the first attempt: a call that succeeds pays only for
``Deadline(...)`` and ``RetryBudget.record_request()`` (and, when configured, a bulkhead
slot). This script measures those next to a plain call and a ``@tenacity.retry`` call of the
same function, interleaved round by round so machine noise hits every case alike. It also
reports the failure-path cost of ``decide_retry`` (paid only before a backoff sleep).

Run ``python benchmarks/bench_retry.py [--quick]``; ``run(quick)`` returns the numbers as a
dict. Times are µs per call: min / median / max over the rounds (compare by min).
Targets: Deadline < 0.5 µs, record_request < 0.5 µs, bulkhead acquire+release < 1 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import tenacity

from svcclient._policies.budget import RetryBudget
from svcclient._policies.bulkhead import AsyncBulkhead, Bulkhead, BulkheadPolicy
from svcclient._policies.deadline import Deadline
from svcclient._policies.retry import RetryPolicy, decide_retry

Case = tuple[str, str, dict[str, Any]]  # (label, statement, namespace)


def _target(x: int) -> int:
    return x


def _happy_cases() -> list[Case]:
    decorated = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )(_target)
    budget = RetryBudget()
    deadline = Deadline(3600.0)
    bulkhead = Bulkhead(BulkheadPolicy())
    return [
        ("plain call f(x)", "f(1)", {"f": _target}),
        ("tenacity @retry f(x)", "f(1)", {"f": decorated}),
        ("Deadline(3.0)", "D(3.0)", {"D": Deadline}),
        ("budget.record_request()", "r()", {"r": budget.record_request}),
        (
            "first attempt: Deadline + record_request",
            "D(3.0); r()",
            {"D": Deadline, "r": budget.record_request},
        ),
        ("deadline.attempt_timeout(1.0)", "t(1.0)", {"t": deadline.attempt_timeout}),
        (
            "bulkhead acquire()+release()",
            "a(); r()",
            {"a": bulkhead.acquire, "r": bulkhead.release},
        ),
        ("with bulkhead:", "with b:\n    pass", {"b": bulkhead}),
    ]


def _failure_cases() -> list[Case]:
    policy = RetryPolicy()
    kwargs: dict[str, Any] = {
        "method": "GET",
        "has_idempotency_key": False,
        "opt_in": None,
        "replayable": True,
        "retry_number": 1,
        "error_type": None,
        "remaining": 3.0,
        "now_wall": time.time(),
    }
    return [
        ("policy.backoff(1)", "b(1)", {"b": policy.backoff}),
        (
            "decide_retry(503)",
            "d(p, status=503, response_headers=None, **k)",
            {"d": decide_retry, "p": policy, "k": kwargs},
        ),
        (
            "decide_retry(503, Retry-After: 1)",
            "d(p, status=503, response_headers=h, **k)",
            {"d": decide_retry, "p": policy, "k": kwargs, "h": {"Retry-After": "1"}},
        ),
        (
            "decide_retry(POST 503) -> no",
            "d(p, status=503, response_headers=None, **k)",
            {"d": decide_retry, "p": policy, "k": {**kwargs, "method": "POST"}},
        ),
    ]


def _measure(cases: list[Case], number: int, rounds: int) -> dict[str, dict[str, float]]:
    timers = [(label, timeit.Timer(stmt, globals=ns)) for label, stmt, ns in cases]
    samples: dict[str, list[float]] = {label: [] for label, _ in timers}
    for _ in range(2):  # warm up caches and the specialising interpreter
        for _, timer in timers:
            timer.timeit(number // 10 or 1)
    for r in range(rounds):
        k = r % len(timers)  # rotate so no case always runs first or last
        for label, timer in timers[k:] + timers[:k]:
            samples[label].append(timer.timeit(number) / number * 1e6)
    return {
        label: {"min": min(v), "median": statistics.median(v), "max": max(v)}
        for label, v in samples.items()
    }


async def _async_samples(number: int, rounds: int) -> dict[str, dict[str, float]]:
    bulkhead = AsyncBulkhead(BulkheadPolicy())

    async def noop() -> None:
        return None

    async def baseline() -> float:
        start = time.perf_counter()
        for _ in range(number):
            await noop()
        return (time.perf_counter() - start) / number * 1e6

    async def guarded() -> float:
        acquire, release = bulkhead.acquire, bulkhead.release
        start = time.perf_counter()
        for _ in range(number):
            await acquire()
            release()
        return (time.perf_counter() - start) / number * 1e6

    samples: dict[str, list[float]] = {"await noop()": [], "await acquire(); release()": []}
    for _ in range(rounds):
        samples["await noop()"].append(await baseline())
        samples["await acquire(); release()"].append(await guarded())
    return {
        label: {"min": min(v), "median": statistics.median(v), "max": max(v)}
        for label, v in samples.items()
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every case; return ``{"happy": ..., "failure": ..., "async": ..., "meta": ...}``.

    Each case maps to ``{"min", "median", "max"}`` in µs per call.
    """
    number, rounds = (20_000, 5) if quick else (100_000, 9)
    return {
        "happy": _measure(_happy_cases(), number, rounds),
        "failure": _measure(_failure_cases(), number // 20, rounds),
        "async": asyncio.run(_async_samples(number, rounds)),
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "calls_per_sample": number,
            "rounds": rounds,
        },
    }


def _table(title: str, rows: dict[str, dict[str, float]], baseline: str | None) -> str:
    base = rows[baseline]["min"] if baseline else 0.0
    lines = [
        f"### {title}",
        "",
        "| case | min µs | median µs | max µs | min overhead µs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, v in rows.items():
        over = "-" if label == baseline or baseline is None else f"{v['min'] - base:.3f}"
        lines.append(f"| {label} | {v['min']:.3f} | {v['median']:.3f} | {v['max']:.3f} | {over} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args(argv)
    result = run(args.quick)
    meta = result["meta"]
    out(
        f"{meta['implementation']} {meta['python']} on {meta['machine']}; {meta['rounds']} "
        f"rounds x {meta['calls_per_sample']} calls, cases interleaved\n"
    )
    out(_table("Happy path (first attempt succeeds), per call", result["happy"], "plain call f(x)"))
    out("")
    out(_table("Async bulkhead, per call", result["async"], "await noop()"))
    out("")
    out(_table("Failure path (before a backoff sleep), per call", result["failure"], None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
