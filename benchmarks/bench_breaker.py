"""Circuit breaker overhead: svcclient vs pybreaker (and ``circuitbreaker`` if installed).

Measures, in one process and interleaved round by round so that machine noise hits every
contender alike:

* closed-state cost per call - the wrapper (``breaker(x)``) and the pipeline's I/O-free
  path (``allow()`` + ``record_success()``), next to a bare call of the same function;
* open-state rejection cost - ``allow()`` returning False, the wrapper raising
  ``CircuitOpenError``, the wrapper answering from a fallback.

Run ``python benchmarks/bench_breaker.py [--quick]``; ``run(quick)`` returns the numbers
as a dict for ``python -m benchmarks``. Times are µs per call: min / median / max over the
rounds (min is the least disturbed figure; compare contenders by it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

from svcclient._exceptions import CircuitOpenError
from svcclient._policies.breaker.guard import CircuitBreaker

Case = tuple[str, str, dict[str, Any]]  # (label, statement, namespace)


def _target(x: int) -> int:
    return x


def _closed_cases() -> list[Case]:
    wrapper = CircuitBreaker(_target, name="bench-wrapper")
    pipeline = CircuitBreaker(name="bench-pipeline")
    cases: list[Case] = [
        ("bare call f(x)", "f(1)", {"f": _target}),
        ("svcclient breaker(x)", "b(1)", {"b": wrapper}),
        (
            "svcclient allow()+record_success()",
            "allow(); record(0.001)",
            {"allow": pipeline.allow, "record": pipeline.record_success},
        ),
    ]
    try:
        import pybreaker
    except ImportError:  # pragma: no cover - pybreaker is a dev dependency
        pass
    else:
        pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        cases.append(("pybreaker", "b(1)", {"b": pb(_target)}))
    try:
        circuitbreaker = importlib.import_module("circuitbreaker")  # optional, untyped
    except ImportError:
        pass
    else:
        cb = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30)
        cases.append(("circuitbreaker", "b(1)", {"b": cb(_target)}))
    return cases


def _raises() -> None:
    raise CircuitOpenError("x", 1.0)


def _open_cases() -> tuple[list[Case], list[CircuitBreaker]]:
    # A reset timeout longer than the run: the breakers must stay open throughout.
    forever = 1e9
    gate = CircuitBreaker(name="bench-open-gate", reset_timeout=forever)
    gate.open()
    raising = CircuitBreaker(_target, name="bench-open-raise", reset_timeout=forever)
    raising.open()
    answering = CircuitBreaker(_target, name="bench-open-fallback", reset_timeout=forever)
    answering.fallback(lambda x, *, cause: -1)
    answering.open()
    try_stmt = "try:\n    b(1)\nexcept E:\n    pass"
    cases: list[Case] = [
        (
            "CircuitOpenError alone: raise+catch",
            "try:\n    r()\nexcept E:\n    pass",
            {"r": _raises, "E": CircuitOpenError},
        ),
        ("svcclient allow() -> False", "allow()", {"allow": gate.allow}),
        ("svcclient breaker(x) raises", try_stmt, {"b": raising, "E": CircuitOpenError}),
        ("svcclient breaker(x) fallback", "b(1)", {"b": answering}),
    ]
    try:
        import pybreaker
    except ImportError:  # pragma: no cover
        pass
    else:
        pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=forever)
        pb.open()
        cases.append(
            ("pybreaker raises", try_stmt, {"b": pb(_target), "E": pybreaker.CircuitBreakerError})
        )
    try:
        circuitbreaker = importlib.import_module("circuitbreaker")  # optional, untyped
    except ImportError:
        pass
    else:
        cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=10**9)

        def boom(x: int) -> int:
            raise ValueError(x)

        wrapped = cb(boom)
        with contextlib.suppress(ValueError):
            wrapped(1)
        cases.append(
            (
                "circuitbreaker raises",
                try_stmt,
                {"b": wrapped, "E": circuitbreaker.CircuitBreakerError},
            )
        )
    return cases, [gate, raising, answering]


def _measure(cases: list[Case], number: int, rounds: int) -> dict[str, dict[str, float]]:
    timers = [(label, timeit.Timer(stmt, globals=ns)) for label, stmt, ns in cases]
    samples: dict[str, list[float]] = {label: [] for label, _ in timers}
    for _ in range(2):  # warm up caches and specialisation
        for _, timer in timers:
            timer.timeit(number // 10 or 1)
    for r in range(rounds):
        # Rotate the order each round so no contender always runs first or last.
        k = r % len(timers)
        for label, timer in timers[k:] + timers[:k]:
            samples[label].append(timer.timeit(number) / number * 1e6)
    return {
        label: {"min": min(v), "median": statistics.median(v), "max": max(v)}
        for label, v in samples.items()
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every case; return ``{"closed": {...}, "open": {...}, "meta": {...}}`` in µs."""
    number, rounds = (20_000, 5) if quick else (100_000, 15)
    open_cases, open_breakers = _open_cases()
    closed = _measure(_closed_cases(), number, rounds)
    rejected = _measure(open_cases, number, rounds)
    # Sanity: a breaker that half-opened mid-run would have timed closed calls instead.
    assert all(b.state == "open" for b in open_breakers), "an 'open' breaker closed"
    return {
        "closed": closed,
        "open": rejected,
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "calls_per_sample": number,
            "rounds": rounds,
        },
    }


def _table(title: str, rows: dict[str, dict[str, float]], baseline: str | None) -> str:
    head = "| case | min µs | median µs | max µs |"
    rule = "| --- | ---: | ---: | ---: |"
    if baseline is not None:
        head += " overhead (min) µs |"
        rule += " ---: |"
    lines = [f"### {title}", "", head, rule]
    for label, v in rows.items():
        line = f"| {label} | {v['min']:.3f} | {v['median']:.3f} | {v['max']:.3f} |"
        if baseline is not None:
            over = v["min"] - rows[baseline]["min"]
            line += " - |" if label == baseline else f" {over:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args(argv)
    result = run(args.quick)
    meta = result["meta"]
    out(
        f"CPython {meta['python']} on {meta['machine']}; {meta['rounds']} rounds x "
        f"{meta['calls_per_sample']} calls, contenders interleaved\n"
    )
    out(_table("Closed breaker, per call", result["closed"], "bare call f(x)"))
    out("")
    out(_table("Open breaker, per rejection", result["open"], None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
