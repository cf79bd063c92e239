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

``--callgrind`` counts instructions per closed call instead (``valgrind --tool=callgrind``,
``PYTHONHASHSEED=0``; each case runs with 0 and N calls after the same warm-up and the
difference divided by N is its cost), sync and async (asyncio), next to a bare call,
pybreaker and aiobreaker when installed. Breakers get a constant C-level clock so window
roll-overs do not land inside the sample. Instruction counts are deterministic, unlike
wall time on a shared machine. Needs valgrind; not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


# -- instructions per closed call (callgrind) -----------------------------------------------

# case -> the statement awaited/called per iteration, set up by _CHILD_SETUP.
CALLGRIND_CASES: dict[str, tuple[str, str]] = {
    "sync: bare call f(x)": ("sync", "f(1)"),
    "sync: svcclient breaker(x)": ("sync", "sync_breaker(1)"),
    "sync: pybreaker": ("sync", "pybreaker_wrapped(1)"),
    "async: bare await af(x)": ("async", "await af(1)"),
    "async: svcclient breaker(x), timeout 3 s (default)": ("async", "await async_breaker(1)"),
    "async: svcclient breaker(x), timeout=None": ("async", "await async_untimed(1)"),
    "async: svcclient breaker(x), timeout 3 s, monotonic clock": (
        "async",
        "await async_monotonic(1)",
    ),
    "async: aiobreaker": ("async", "await aiobreaker_cb.call_async(af, 1)"),
}

_CHILD_SETUP = """
import asyncio, itertools
from svcclient import CircuitBreaker
CONST = itertools.repeat(0.0).__next__  # a constant clock in C: no window roll-overs
def f(x): return x
async def af(x): return x
sync_breaker = CircuitBreaker(f, name="s", clock=CONST)
async_breaker = CircuitBreaker(af, name="a", clock=CONST)
async_untimed = CircuitBreaker(af, name="u", clock=CONST, timeout=None)
async_monotonic = CircuitBreaker(af, name="m")  # the default clock
try:
    import pybreaker
    pybreaker_wrapped = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)(f)
except ImportError:
    pybreaker_wrapped = None
try:
    import aiobreaker
    aiobreaker_cb = aiobreaker.CircuitBreaker()
except ImportError:
    aiobreaker_cb = None
"""

_CHILD_SYNC = """
for _ in range(300):
    {stmt}
for _ in range({n}):
    {stmt}
"""

_CHILD_ASYNC = """
async def main():
    for _ in range(300):
        {stmt}
    for _ in range({n}):
        {stmt}
asyncio.run(main())
"""


def _available(stmt: str) -> bool:
    needs = {"pybreaker_wrapped": "pybreaker", "aiobreaker_cb": "aiobreaker"}
    for name, module in needs.items():
        if name in stmt and importlib.util.find_spec(module) is None:
            return False
    return True


def _instructions(kind: str, stmt: str, n: int) -> int:
    body = (_CHILD_SYNC if kind == "sync" else _CHILD_ASYNC).format(stmt=stmt, n=n)
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _CHILD_SETUP + body,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=900,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode or found is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(found.group(1))


def callgrind(n: int = 2000, workers: int = 2) -> dict[str, float]:
    """Instructions per closed call for every available case (see the module docstring)."""
    cases = {k: v for k, v in CALLGRIND_CASES.items() if _available(v[1])}
    jobs = [(label, kind, stmt, calls) for label, (kind, stmt) in cases.items() for calls in (0, n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(lambda j: _instructions(j[1], j[2], j[3]), jobs))
    per: dict[str, float] = {}
    for (label, _, _, calls), count in zip(jobs, counts, strict=True):
        per[label] = per.get(label, 0.0) + (count if calls else -count) / n
    return per


# -- registry memory ----------------------------------------------------------------------


def registry_memory(names: int = 20_000, capacity: int = 1024) -> dict[str, float]:
    """Bytes per breaker the registry keeps, and what ``names`` one-off names leave behind.

    Each breaker is used (two calls recorded, one ``state_change`` subscriber), then
    dropped by its user; only the registry holds it afterwards.
    """
    import gc
    import tracemalloc

    from svcclient import BreakerRegistry

    def fill(reg: BreakerRegistry, count: int, prefix: str) -> float:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            b = reg.get_or_create(f"{prefix}-{i:06d}")
            b.on("state_change", lambda old, new: None)
            b.record_success(0.001)
            b.record_failure(0.002)
        gc.collect()
        return float(tracemalloc.get_traced_memory()[0] - start)

    tracemalloc.start()
    try:
        per_name = fill(BreakerRegistry(capacity=capacity), capacity, "held") / capacity
        bounded = BreakerRegistry(capacity=capacity)
        total = fill(bounded, names, "one-off")
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_name": per_name,
        "capacity": float(capacity),
        "names_created": float(names),
        "names_kept": float(len(bounded)),
        "kib_retained": total / 1024,
    }


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per closed call (valgrind)"
    )
    parser.add_argument("-n", type=int, default=2000, help="calls per callgrind case")
    parser.add_argument("--memory", action="store_true", help="registry bytes per name")
    args = parser.parse_args(argv)
    if args.memory:
        mem = registry_memory()
        out(
            f"registry: {mem['bytes_per_name']:,.0f} bytes per breaker kept; "
            f"{mem['names_created']:,.0f} one-off names -> {mem['names_kept']:,.0f} kept "
            f"(capacity {mem['capacity']:,.0f}), {mem['kib_retained']:,.0f} KiB retained"
        )
        return 0
    if args.callgrind:
        if shutil.which("valgrind") is None:
            out("valgrind not found (apt-get install valgrind)")
            return 2
        out(f"Instructions per closed call, CPython {platform.python_version()}, n={args.n}\n")
        out("| case | instructions |\n| --- | ---: |")
        for label, value in callgrind(args.n).items():
            out(f"| {label} | {value:,.0f} |")
        return 0
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
