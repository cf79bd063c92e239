"""Interleaved, repeated measurement: the only fair way to compare on a shared machine.

Theory of operation
-------------------
A *contender* is a batch runner ``run(n) -> seconds``: it performs ``n`` operations and
returns how long they took (so it decides what is inside the timed region, e.g. an async
runner times inside the event loop). :func:`interleave` runs every contender once per
*round*, rotating the order each round so no contender always goes first or last, and
keeps every sample. Noise from other processes then hits all contenders alike, and the
per-round *ratios* to a baseline (each round's contender time over the same round's
baseline time) cancel most of it. Results are min / median / max over the rounds.

Every loop here is bounded in count (``rounds``) and in time (``max_seconds``: no new
round starts after it, once ``min_rounds`` are done).

>>> fast = sync_runner(lambda: None)
>>> cmp = interleave({"a": fast, "b": fast}, number=100, rounds=3, baseline="a")
>>> sorted(cmp.per_op)
['a', 'b']
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Comparison",
    "Runner",
    "Summary",
    "async_runner",
    "interleave",
    "percentile",
    "quantiles",
    "summarize",
    "sync_runner",
]

Runner = Callable[[int], float]
_perf = time.perf_counter


@dataclass(frozen=True, slots=True)
class Summary:
    """min / median / max of a list of samples (and how many there were)."""

    min: float
    median: float
    max: float
    n: int

    def scaled(self, factor: float) -> Summary:
        """The same summary in other units (e.g. ``1e6`` for seconds to µs)."""
        return Summary(self.min * factor, self.median * factor, self.max * factor, self.n)

    def as_dict(self) -> dict[str, float]:
        """``{"min", "median", "max", "n"}`` for JSON."""
        return {"min": self.min, "median": self.median, "max": self.max, "n": self.n}


def summarize(values: Sequence[float]) -> Summary:
    """Summarise ``values`` (at least one)."""
    if not values:
        raise ValueError("summarize() needs at least one value")
    return Summary(min(values), statistics.median(values), max(values), len(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 100]; ``values`` need not be sorted.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def quantiles(values: Sequence[float], points: int = 101) -> list[float]:
    """``points`` evenly spaced nearest-rank quantiles (0 %, 1 %, ... 100 % by default)."""
    if not values:
        return []
    ordered = sorted(values)
    n = len(ordered)
    out = []
    for i in range(points):
        q = i / (points - 1)
        rank = max(1, math.ceil(q * n))
        out.append(ordered[min(rank, n) - 1])
    return out


def sync_runner(fn: Callable[[], object]) -> Runner:
    """A runner calling ``fn()`` ``n`` times back to back."""

    def run(n: int) -> float:
        t0 = _perf()
        for _ in range(n):
            fn()
        return _perf() - t0

    return run


def async_runner(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[object]]) -> Runner:
    """A runner awaiting ``fn()`` ``n`` times inside ``loop`` (timed inside the loop)."""

    async def batch(n: int) -> float:
        t0 = _perf()
        for _ in range(n):
            await fn()
        return _perf() - t0

    def run(n: int) -> float:
        return loop.run_until_complete(batch(n))

    return run


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of :func:`interleave`.

    ``per_op``: seconds per operation for each contender; ``ratio`` and ``added``: per round,
    contender over / minus the baseline (only when a baseline was named; the baseline
    itself is left out); ``rounds``: rounds completed; ``time_bound_hit``: stopped early
    by ``max_seconds``.
    """

    per_op: dict[str, Summary]
    ratio: dict[str, Summary] = field(default_factory=dict)
    added: dict[str, Summary] = field(default_factory=dict)
    baseline: str | None = None
    number: int = 0
    rounds: int = 0
    time_bound_hit: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; times in µs per operation."""
        return {
            "unit": "us/op",
            "baseline": self.baseline,
            "number": self.number,
            "rounds": self.rounds,
            "time_bound_hit": self.time_bound_hit,
            "per_op_us": {k: v.scaled(1e6).as_dict() for k, v in self.per_op.items()},
            "ratio": {k: v.as_dict() for k, v in self.ratio.items()},
            "added_us": {k: v.scaled(1e6).as_dict() for k, v in self.added.items()},
        }


def interleave(
    contenders: Mapping[str, Runner],
    *,
    number: int,
    rounds: int,
    baseline: str | None = None,
    warmup: int = 1,
    max_seconds: float = 30.0,
    min_rounds: int = 3,
    clock: Callable[[], float] = _perf,
) -> Comparison:
    """Run each contender ``number`` operations per round, ``rounds`` rounds, interleaved.

    ``warmup`` untimed rounds of ``max(number // 5, 1)`` operations come first (caches,
    connection pools, the specialising interpreter). The rotation of the order each round
    means every contender runs first, middle and last equally often.
    """
    if not contenders:
        raise ValueError("interleave() needs at least one contender")
    if number < 1 or rounds < 1:
        raise ValueError("number and rounds must be >= 1")
    if baseline is not None and baseline not in contenders:
        raise ValueError(f"baseline {baseline!r} is not a contender")
    names = list(contenders)
    for _ in range(max(warmup, 0)):
        for name in names:
            contenders[name](max(number // 5, 1))
    samples: dict[str, list[float]] = {name: [] for name in names}
    stop_at = clock() + max_seconds
    done = 0
    hit = False
    for r in range(rounds):
        if done >= min_rounds and clock() > stop_at:
            hit = True
            break
        k = r % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(contenders[name](number) / number)
        done += 1
    per_op = {name: summarize(v) for name, v in samples.items()}
    ratio: dict[str, Summary] = {}
    added: dict[str, Summary] = {}
    if baseline is not None:
        base = samples[baseline]
        for name in names:
            if name == baseline:
                continue
            mine = samples[name]
            ratios = [m / b for m, b in zip(mine, base, strict=True) if b > 0]
            ratio[name] = summarize(ratios or [math.nan])
            added[name] = summarize([m - b for m, b in zip(mine, base, strict=True)])
    return Comparison(per_op, ratio, added, baseline, number, done, hit)
