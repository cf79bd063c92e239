"""An adaptive concurrency limit (Netflix concurrency-limits: Vegas and Gradient2).

Theory of operation
-------------------
A static bulkhead needs someone to know the right number of calls in flight. By Little's
law the right number is ``throughput x no-load latency``; above it, extra calls only wait
in a queue somewhere (the server's accept backlog, its worker pool) and latency grows with
no gain in throughput. A :class:`ConcurrencyLimiter` finds that number from the latencies
it measures, as TCP congestion control does:

* every attempt's round-trip time is a *sample*, with the calls in flight when it ended;
  samples are pooled into windows (``sample_window`` seconds and ``window_samples``
  samples at least: Netflix's ``WindowedLimit``), and each window - its mean RTT, the most
  calls in flight, whether any call dropped - is one update. Updating on every sample would
  let the burst of samples from calls admitted together grow the limit many times before
  a single RTT can show what the growth did;
* an algorithm turns updates into an estimated limit; calls beyond ``int(limit)`` are
  refused at once (:class:`~svcclient.ConcurrencyLimitError`), never queued - a queue is
  exactly what the limit exists to prevent;
* a *drop* (an overload status, 429/503 by default, or a timeout) lowers the limit. Its
  round-trip time is not used as a latency sample: a shed is fast and a timeout is capped,
  so neither says how long a served request waits. (Netflix feeds drops to Vegas as
  samples too, which lets a server that sheds quickly drag the no-load RTT down.) Other
  transport errors (refused, reset) carry no information about queueing and are ignored.

Two algorithms, as Netflix describes them:

``vegas`` (default) - TCP Vegas. ``rtt_noload`` is the smallest RTT seen, starting with
a probe (below). The queue the limit causes is estimated as
``queue = ceil(limit x (1 - rtt_noload / rtt))``; with ``lg = max(1, int(log10(limit)))``:
queue <= lg grows the limit by ``6 lg``, queue < ``3 lg`` by ``lg``, queue > ``6 lg`` shrinks
it by ``lg``; a drop shrinks it by ``lg``. Samples taken while fewer than half the limit are
in flight do not grow it (the client, not the server, was the bottleneck).
Every ``probe_multiplier x limit`` samples (times a random 0.5-1) ``rtt_noload`` is measured
again, so it can rise when the service really got slower. Netflix takes the next sample as
the new no-load RTT; a client that keeps its limit full never sees a sample without
queueing, so that baseline ratchets up at every probe and the limit with it. Instead, as
Envoy's adaptive-concurrency filter and BBR's ProbeRTT do, the limit drops to a quarter
of the estimate (at least ``min_limit``) until ``PROBE_SAMPLES`` calls have run with no
more than that in flight (sample by sample, not windowed), and their fastest becomes
``rtt_noload``. A quarter: low enough to be below the server's own concurrency whenever
the estimate is near it, high enough that a probe costs a couple of RTTs, not a
throughput collapse.

``gradient2`` - the gradient between a long-term exponential average RTT (``long_window``
samples) and the latest one: ``gradient = clamp(rtt_tolerance x long_rtt / rtt, 0.5, 1)``,
``new = limit x gradient + queue_size``, smoothed by ``smoothing``. When the long average
is more than twice the latest sample (recovery after a long overload) it decays by 5 % per
sample. A drop counts as the smallest gradient, 0.5.

The limiter does no I/O and takes no clock (the pipeline measures RTTs); a lock makes it
safe for threads, and the async driver uses the same object: nothing ever waits on it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from .._exceptions import ConfigError
from .._validate import check_choice, check_count, check_number, check_seconds
from .throttle import DEFAULT_OVERLOAD_STATUSES, status_set

__all__ = [
    "ALGORITHMS",
    "PROBE_SAMPLES",
    "ConcurrencyLimiter",
    "ConcurrencyPolicy",
    "Gradient2Limit",
    "VegasLimit",
]

ALGORITHMS: Final = ("vegas", "gradient2")
_DEFAULT_SMOOTHING: Final = {"vegas": 1.0, "gradient2": 0.2}
_DROP_ERRORS: Final = frozenset({"read_timeout", "connect_timeout"})
PROBE_SAMPLES: Final = 5
"""Samples at ``min_limit`` in flight whose minimum becomes Vegas' new no-load RTT."""


@dataclass(frozen=True, slots=True)
class ConcurrencyPolicy:
    """Settings of an adaptive concurrency limit, used instead of the static bulkhead.

    * ``algorithm`` (``"vegas"``): ``"vegas"`` or ``"gradient2"`` (see the module docs).
    * ``initial_limit`` (20), ``min_limit`` (1), ``max_limit`` (100): the limit starts at
      ``initial_limit`` and stays within ``[min_limit, max_limit]``.
    * ``smoothing`` (None: 1.0 for vegas, 0.2 for gradient2): how much of a new estimate is
      taken at once, in (0, 1].
    * ``probe_multiplier`` (30, vegas): re-measure the no-load RTT every
      ``probe_multiplier x limit`` samples (times a random 0.5-1).
    * ``rtt_tolerance`` (1.5, gradient2): latency growth accepted before shrinking, >= 1.
    * ``queue_size`` (4, gradient2): how far the limit may grow per estimate.
    * ``long_window`` (600, gradient2): samples in the long-term RTT average.
    * ``sample_window`` (1.0 s) and ``window_samples`` (10): samples are pooled into windows
      of at least this long and this many; each window feeds the algorithm once (its mean
      RTT, the most calls in flight, whether anything dropped).
    * ``overload_statuses`` ({429, 503}): responses that count as drops.

    >>> ConcurrencyPolicy(algorithm="gradient2", max_limit=50).smoothing_factor
    0.2
    """

    algorithm: Literal["vegas", "gradient2"] = "vegas"
    initial_limit: int = 20
    min_limit: int = 1
    max_limit: int = 100
    smoothing: float | None = None
    probe_multiplier: int = 30
    rtt_tolerance: float = 1.5
    queue_size: int = 4
    long_window: int = 600
    sample_window: float = 1.0
    window_samples: int = 10
    overload_statuses: frozenset[int] = DEFAULT_OVERLOAD_STATUSES

    def __post_init__(self) -> None:
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        check_count("min_limit", self.min_limit)
        check_count("max_limit", self.max_limit, low=self.min_limit)
        check_count("initial_limit", self.initial_limit, low=self.min_limit)
        if self.initial_limit > self.max_limit:
            raise ConfigError(
                None, "initial_limit", self.initial_limit, f"exceeds max_limit {self.max_limit}"
            )
        if self.smoothing is not None:
            check_number("smoothing", self.smoothing, low=0.0, low_open=True, high=1.0)
        check_count("probe_multiplier", self.probe_multiplier)
        check_number("rtt_tolerance", self.rtt_tolerance, low=1.0)
        check_count("queue_size", self.queue_size, low=0)
        check_count("long_window", self.long_window)
        check_seconds("sample_window", self.sample_window, zero=True)
        check_count("window_samples", self.window_samples)
        frozen = status_set("overload_statuses", self.overload_statuses)
        object.__setattr__(self, "overload_statuses", frozen)

    @property
    def smoothing_factor(self) -> float:
        """``smoothing``, or the algorithm's default when it is None."""
        return (
            float(self.smoothing)
            if self.smoothing is not None
            else _DEFAULT_SMOOTHING[self.algorithm]
        )


def _lg(limit: float) -> int:
    """Netflix's ``log10`` step: ``max(1, int(log10(limit)))``."""
    return max(1, int(math.log10(limit))) if limit >= 1.0 else 1


class VegasLimit:
    """The Vegas estimate (see the module docstring); ``update`` returns the limit to apply.

    >>> v = VegasLimit(ConcurrencyPolicy(initial_limit=12), rng=lambda: 0.999)
    >>> v.limit                      # probing first: a quarter of the limit
    3.0
    >>> for _ in range(PROBE_SAMPLES):
    ...     _ = v.update(0.010, 1, False)
    >>> v.rtt_noload, v.update(0.010, 12, False)   # no queueing: grow by 6 x lg(12)
    (0.01, 18.0)
    """

    __slots__ = (
        "_hi",
        "_jitter",
        "_lo",
        "_mult",
        "_rng",
        "_smooth",
        "estimate",
        "probe_min",
        "probe_seen",
        "probes",
        "probing",
        "rtt_noload",
    )

    def __init__(self, policy: ConcurrencyPolicy, *, rng: Callable[[], float]) -> None:
        self.estimate = float(policy.initial_limit)
        self.rtt_noload = 0.0
        self.probes = 0
        # Start with a probe: the first calls may already queue at the server if
        # initial_limit is above its concurrency, and a queued RTT taken as the no-load
        # one would let the limit grow past the server's knee until the next probe.
        self.probing = True
        self.probe_min = math.inf
        self.probe_seen = 0
        self._lo = float(policy.min_limit)
        self._hi = float(policy.max_limit)
        self._mult = policy.probe_multiplier
        self._smooth = policy.smoothing_factor
        self._rng = rng
        self._jitter = 0.5 + 0.5 * rng()

    @property
    def limit(self) -> float:
        """The limit to apply now: the probe's limit while probing, else the estimate."""
        return self._probe_limit() if self.probing else self.estimate

    def _probe_limit(self) -> float:
        return max(self._lo, float(int(self.estimate / 4)))

    def update(self, rtt: float, inflight: int, dropped: bool) -> float:
        """Feed one sample: ``rtt`` seconds, ``inflight`` calls, and whether it was a drop."""
        est = self.estimate
        lg = _lg(est)
        if dropped:
            new = est - lg
        elif self.probing:
            # Only calls that ran with at most the probe's limit in flight measure the
            # no-load RTT; the others were admitted before the probe began.
            if inflight <= self._probe_limit():
                self.probe_seen += 1
                self.probe_min = min(self.probe_min, rtt)
                if self.probe_seen >= PROBE_SAMPLES:
                    self.rtt_noload = self.probe_min
                    self.probing = False
                    self.probes = 0
                    self._jitter = 0.5 + 0.5 * self._rng()
            return self.limit
        else:
            self.probes += 1
            if self._jitter * self._mult * est <= self.probes:
                # Re-measure the no-load RTT: the service may have got slower for good.
                self.probing = True
                self.probe_min = math.inf
                self.probe_seen = 0
                return self.limit
            if self.rtt_noload == 0.0 or rtt < self.rtt_noload:
                self.rtt_noload = rtt
                return est
            if inflight * 2 < est:
                return est  # the client is the bottleneck: this sample says nothing
            queue = math.ceil(est * (1.0 - self.rtt_noload / rtt))
            if queue <= lg:
                new = est + 6 * lg
            elif queue < 3 * lg:
                new = est + lg
            elif queue > 6 * lg:
                new = est - lg
            else:
                return est
        new = min(self._hi, max(self._lo, new))
        self.estimate = (1.0 - self._smooth) * est + self._smooth * new
        return self.limit


class Gradient2Limit:
    """The Gradient2 estimate (see the module docstring); ``update`` returns the new limit.

    >>> g = Gradient2Limit(ConcurrencyPolicy(algorithm="gradient2", initial_limit=10))
    >>> g.update(0.010, 10, True)    # a drop: gradient 0.5, smoothed by 0.2
    9.8
    """

    __slots__ = (
        "_factor",
        "_hi",
        "_lo",
        "_queue",
        "_smooth",
        "_tol",
        "_warm",
        "estimate",
        "long_rtt",
        "samples",
    )

    _WARMUP: Final = 10  # samples averaged plainly before the exponential average starts

    def __init__(self, policy: ConcurrencyPolicy) -> None:
        self.estimate = float(policy.initial_limit)
        self.long_rtt = 0.0
        self.samples = 0
        self._lo = float(policy.min_limit)
        self._hi = float(policy.max_limit)
        self._smooth = policy.smoothing_factor
        self._tol = float(policy.rtt_tolerance)
        self._queue = float(policy.queue_size)
        self._factor = 2.0 / (policy.long_window + 1)

    def update(self, rtt: float, inflight: int, dropped: bool) -> float:
        """Feed one sample: ``rtt`` seconds, ``inflight`` calls, and whether it was a drop."""
        est = self.estimate
        if dropped:
            gradient = 0.5
        else:
            if self.samples < self._WARMUP:
                self.samples += 1
                self.long_rtt += (rtt - self.long_rtt) / self.samples
            else:
                self.long_rtt += (rtt - self.long_rtt) * self._factor
            long_rtt = self.long_rtt
            if long_rtt / rtt > 2.0:
                # Latency is back to normal after a long overload: let the baseline follow
                # faster than the average would.
                self.long_rtt = long_rtt * 0.95
            if inflight < est / 2:
                return est
            gradient = max(0.5, min(1.0, self._tol * long_rtt / rtt))
        new = est * gradient + self._queue
        new = est * (1.0 - self._smooth) + new * self._smooth
        self.estimate = est = min(self._hi, max(self._lo, new))
        return est


class ConcurrencyLimiter:
    """Calls in flight under an adaptive limit, shared by threads and tasks (never waits).

    ``on_limit(limit)`` is called (outside the lock) whenever the integer limit changes;
    ``clock`` (monotonic seconds) times the sample windows.

    >>> limiter = ConcurrencyLimiter(ConcurrencyPolicy(initial_limit=1))
    >>> limiter.try_acquire(), limiter.try_acquire()
    (True, False)
    >>> limiter.release(); limiter.in_flight
    0
    """

    __slots__ = (
        "_algo",
        "_lock",
        "_min_n",
        "_statuses",
        "_w_drop",
        "_w_good",
        "_w_inflight",
        "_w_n",
        "_w_start",
        "_w_sum",
        "_width",
        "clock",
        "in_flight",
        "limit",
        "on_limit",
        "policy",
    )

    def __init__(
        self,
        policy: ConcurrencyPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_limit: Callable[[int], None] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else ConcurrencyPolicy()
        self._algo: VegasLimit | Gradient2Limit = (
            VegasLimit(self.policy, rng=rng)
            if self.policy.algorithm == "vegas"
            else Gradient2Limit(self.policy)
        )
        self._statuses = self.policy.overload_statuses
        self._width = float(self.policy.sample_window)
        self._min_n = self.policy.window_samples
        self._lock = threading.Lock()
        self.clock = clock
        self.in_flight = 0
        self.limit = self.policy.initial_limit
        self.on_limit = on_limit
        self._open_window(math.nan)

    def _open_window(self, now: float) -> None:
        self._w_start = now
        self._w_n = self._w_good = self._w_inflight = 0
        self._w_sum = 0.0
        self._w_drop = False

    def try_acquire(self) -> bool:
        """Take a slot if fewer than ``limit`` calls are in flight."""
        with self._lock:
            if self.in_flight < self.limit:
                self.in_flight += 1
                return True
            return False

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            if self.in_flight <= 0:
                raise RuntimeError("concurrency limiter released more times than acquired")
            self.in_flight -= 1

    def sample(self, rtt: float, dropped: bool) -> None:
        """Feed one attempt's round-trip time (seconds) and whether it was a drop."""
        if not rtt > 0.0:
            return
        with self._lock:
            old = self.limit
            algo = self._algo
            if isinstance(algo, VegasLimit) and algo.probing:
                new = int(algo.update(rtt, self.in_flight, dropped))
            else:
                now = self.clock()
                if self._w_n == 0:
                    self._w_start = now
                self._w_n += 1
                self._w_inflight = max(self._w_inflight, self.in_flight)
                if dropped:
                    self._w_drop = True
                else:
                    self._w_good += 1
                    self._w_sum += rtt
                if self._w_n < self._min_n or now - self._w_start < self._width:
                    return
                mean = self._w_sum / self._w_good if self._w_good else 0.0
                new = int(algo.update(mean, self._w_inflight, self._w_drop or not self._w_good))
                self._open_window(now)
            self.limit = new
        if new != old and self.on_limit is not None:
            self.on_limit(new)

    def record_status(self, rtt: float, status: int) -> None:
        """Feed a response: a drop when ``status`` is an overload status."""
        self.sample(rtt, status in self._statuses)

    def record_error(self, rtt: float, error_type: str) -> None:
        """Feed a transport error: timeouts are drops, other errors say nothing."""
        if error_type in _DROP_ERRORS:
            self.sample(rtt, True)

    @property
    def estimate(self) -> float:
        """The algorithm's unrounded limit."""
        return self._algo.estimate

    def _after_fork_in_child(self) -> None:
        # Called by svcclient._transports.forksafe: the parent's calls never end here.
        self.in_flight = 0

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter(limit={self.limit}, in_flight={self.in_flight}, "
            f"algorithm={self.policy.algorithm!r})"
        )
