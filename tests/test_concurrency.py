"""Adaptive concurrency limit: validation, the Vegas and Gradient2 arithmetic step by step,
drops, the limiter's slots and change notifications, and convergence against a model
server whose latency grows with the queue."""

from __future__ import annotations

import dataclasses
import math
import threading

import pytest

from svcclient._exceptions import ConfigError
from svcclient._policies.concurrency import (
    PROBE_SAMPLES,
    ConcurrencyLimiter,
    ConcurrencyPolicy,
    Gradient2Limit,
    VegasLimit,
)

NO_PROBE = 0.999  # a jitter draw that puts the next probe far away
PER_SAMPLE = {"sample_window": 0.0, "window_samples": 1}  # every sample is a window


def _vegas(**kw: object) -> VegasLimit:
    return VegasLimit(ConcurrencyPolicy(**kw), rng=lambda: NO_PROBE)  # type: ignore[arg-type]


def _warm(v: VegasLimit, rtt: float = 0.010) -> None:
    """Complete the initial probe: PROBE_SAMPLES calls with one in flight."""
    assert v.probing
    for _ in range(PROBE_SAMPLES):
        v.update(rtt, 1, False)
    assert v.rtt_noload == rtt and not v.probing


def _gradient(**kw: object) -> Gradient2Limit:
    return Gradient2Limit(ConcurrencyPolicy(algorithm="gradient2", **kw))  # type: ignore[arg-type]


# --- policy -------------------------------------------------------------------------------


def test_policy_defaults_and_frozen() -> None:
    """Defaults: Vegas, limit 20 within [1, 100], Netflix's tuning constants."""
    p = ConcurrencyPolicy()
    assert (p.algorithm, p.initial_limit, p.min_limit, p.max_limit) == ("vegas", 20, 1, 100)
    assert (p.probe_multiplier, p.rtt_tolerance, p.queue_size, p.long_window) == (30, 1.5, 4, 600)
    assert p.smoothing_factor == 1.0
    assert ConcurrencyPolicy(algorithm="gradient2").smoothing_factor == 0.2
    assert ConcurrencyPolicy(smoothing=0.5).smoothing_factor == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"algorithm": "aimd"}, "algorithm"),
        ({"min_limit": 0}, "min_limit"),
        ({"max_limit": 0}, "max_limit"),
        ({"min_limit": 10, "max_limit": 5, "initial_limit": 10}, "max_limit"),
        ({"initial_limit": 200}, "initial_limit"),
        ({"initial_limit": True}, "initial_limit"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"smoothing": 1.5}, "smoothing"),
        ({"probe_multiplier": 0}, "probe_multiplier"),
        ({"rtt_tolerance": 0.9}, "rtt_tolerance"),
        ({"queue_size": -1}, "queue_size"),
        ({"long_window": 0}, "long_window"),
        ({"overload_statuses": [99]}, "overload_statuses"),
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, object], key: str) -> None:
    """Each out-of-range setting raises ConfigError naming that setting."""
    with pytest.raises(ConfigError) as info:
        ConcurrencyPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


# --- Vegas --------------------------------------------------------------------------------


def test_vegas_starts_by_probing_the_no_load_rtt() -> None:
    """At first the limit is a quarter of initial_limit, until PROBE_SAMPLES calls ran with
    at most that many in flight; their fastest is rtt_noload; a faster one later replaces it."""
    v = _vegas(initial_limit=10)
    assert v.limit == 2.0
    assert v.update(0.005, 10, False) == 2.0  # too many in flight: not a no-load sample
    for rtt in (0.030, 0.020, 0.025, 0.040):
        assert v.update(rtt, 2, False) == 2.0
    assert v.update(0.050, 1, False) == 10.0
    assert v.rtt_noload == 0.020 and not v.probing
    assert v.update(0.010, 10, False) == 10.0
    assert v.rtt_noload == 0.010


def test_vegas_grows_fast_without_queueing_and_slowly_with_little() -> None:
    """queue <= lg grows by 6 lg; lg < queue < 3 lg grows by lg (limit 10: lg = 1)."""
    v = _vegas(initial_limit=10)
    _warm(v)
    assert v.update(0.010, 10, False) == 16.0  # queue = ceil(10 x 0) = 0
    v.estimate = 10.0
    # queue = ceil(10 x (1 - 10/12)) = 2: between lg = 1 and 3 lg = 3
    assert v.update(0.012, 10, False) == 11.0


def test_vegas_holds_in_the_sweet_spot_and_shrinks_beyond_beta() -> None:
    """3 lg <= queue <= 6 lg keeps the limit; queue > 6 lg shrinks it by lg."""
    v = _vegas(initial_limit=20)
    _warm(v)
    # queue = ceil(20 x (1 - 10/14)) = 6: within [3, 6]
    assert v.update(0.014, 20, False) == 20.0
    # queue = ceil(20 x (1 - 10/20)) = 10 > 6
    assert v.update(0.020, 20, False) == 19.0


def test_vegas_uses_log10_steps_at_high_limits() -> None:
    """At limit 200, lg = 2: no queueing grows it by 12."""
    v = _vegas(initial_limit=200, max_limit=1000)
    _warm(v)
    assert v.update(0.010, 200, False) == 212.0


def test_vegas_drop_shrinks_and_leaves_the_no_load_rtt_alone() -> None:
    """A drop lowers the limit by lg, and its (fast) RTT does not become rtt_noload."""
    v = _vegas(initial_limit=10)
    _warm(v)
    assert v.update(0.0001, 10, True) == 9.0
    assert v.rtt_noload == 0.010


def test_vegas_does_not_grow_when_the_client_is_the_bottleneck() -> None:
    """With fewer than half the limit in flight, a sample leaves the limit alone."""
    v = _vegas(initial_limit=20)
    _warm(v)
    assert v.update(0.010, 9, False) == 20.0
    assert v.update(0.010, 10, False) == 26.0  # lg(20) = 1


def test_vegas_clamps_and_smooths() -> None:
    """The new limit is clamped to [min, max], then smoothed toward the old one."""
    v = _vegas(initial_limit=95, max_limit=100)
    _warm(v)
    assert v.update(0.010, 95, False) == 100.0  # 95 + 6 clamped
    s = _vegas(initial_limit=10, smoothing=0.5)
    _warm(s)
    assert s.update(0.010, 10, False) == 13.0  # 0.5 x 10 + 0.5 x 16
    low = _vegas(initial_limit=2, min_limit=2)
    _warm(low)
    assert low.update(0.010, 2, True) == 2.0


def test_vegas_probes_the_no_load_rtt_again() -> None:
    """After jitter x probe_multiplier x limit samples the limit drops to a quarter (at
    least min_limit) until PROBE_SAMPLES calls ran at that concurrency; their fastest is
    the new rtt_noload."""
    # jitter 0.5 after the initial probe: the next one after 0.5 x 2 x 10 = 10 samples
    draws = iter([NO_PROBE, 0.0, NO_PROBE])
    v = VegasLimit(
        ConcurrencyPolicy(initial_limit=10, min_limit=2, max_limit=10, probe_multiplier=2),
        rng=lambda: next(draws),
    )
    _warm(v)
    for _ in range(9):
        assert v.update(0.050, 1, False) == 10.0  # app-limited: the limit stays
    assert v.rtt_noload == 0.010 and not v.probing
    assert v.update(0.050, 10, False) == 2.0  # the tenth sample starts the probe
    assert v.probing
    assert v.update(0.030, 10, False) == 2.0  # admitted before the probe: ignored
    for rtt in (0.040, 0.031, 0.035, 0.045):
        assert v.update(rtt, 2, False) == 2.0
    assert v.probing and v.probe_seen == 4 == PROBE_SAMPLES - 1
    assert v.update(0.060, 1, False) == 10.0  # the fifth: the probe ends
    assert v.rtt_noload == 0.031 and not v.probing and v.probes == 0


# --- Gradient2 ----------------------------------------------------------------------------


def test_gradient2_warms_up_with_a_plain_average() -> None:
    """The first ten samples are averaged plainly, then exponentially (factor 2/601)."""
    g = _gradient(initial_limit=10, queue_size=0)
    for rtt in (0.010, 0.020, 0.030):
        g.update(rtt, 10, False)
    assert g.long_rtt == pytest.approx(0.020)
    for _ in range(7):
        g.update(0.020, 10, False)
    before = g.long_rtt
    g.update(0.030, 10, False)
    assert g.long_rtt == pytest.approx(before + (0.030 - before) * 2 / 601)


def test_gradient2_formula() -> None:
    """new = limit x clamp(1.5 long/rtt, 0.5, 1) + 4, smoothed by 0.2."""
    g = _gradient(initial_limit=20)
    assert g.update(0.010, 20, False) == pytest.approx(20 * 0.8 + (20 * 1.0 + 4) * 0.2)
    g = _gradient(initial_limit=20)
    g.long_rtt, g.samples = 0.010, 10
    # long becomes 0.010 + (0.020 - 0.010) x 2/601; gradient = 1.5 x long / 0.020
    long_rtt = 0.010 + 0.010 * 2 / 601
    gradient = 1.5 * long_rtt / 0.020
    assert g.update(0.020, 20, False) == pytest.approx(20 * 0.8 + (20 * gradient + 4) * 0.2)


def test_gradient2_drop_is_the_smallest_gradient() -> None:
    """A drop counts as gradient 0.5 and does not touch the long-term RTT."""
    g = _gradient(initial_limit=10)
    assert g.update(0.001, 10, True) == pytest.approx(10 * 0.8 + (10 * 0.5 + 4) * 0.2)
    assert g.long_rtt == 0.0 and g.samples == 0


def test_gradient2_baseline_decays_after_overload() -> None:
    """When the long RTT is over twice the latest, it is cut by 5 % on top of averaging."""
    g = _gradient(initial_limit=10)
    g.long_rtt, g.samples = 0.100, 10
    g.update(0.010, 10, False)
    assert g.long_rtt == pytest.approx((0.100 + (0.010 - 0.100) * 2 / 601) * 0.95)


def test_gradient2_app_limited_and_min_limit() -> None:
    """Few calls in flight leave the limit; a long run of drops stops at min_limit."""
    g = _gradient(initial_limit=20, min_limit=5, queue_size=0)
    assert g.update(0.010, 9, False) == 20.0
    for _ in range(200):
        g.update(0.010, 20, True)
    assert g.estimate == 5.0


# --- limiter ------------------------------------------------------------------------------


def test_limiter_admits_up_to_the_limit() -> None:
    """try_acquire succeeds limit times, then refuses until a slot is released."""
    limiter = ConcurrencyLimiter(ConcurrencyPolicy(initial_limit=3))
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    limiter.release()
    assert limiter.try_acquire()
    for _ in range(3):
        limiter.release()
    with pytest.raises(RuntimeError):
        limiter.release()


def test_limiter_reports_integer_limit_changes() -> None:
    """on_limit sees each new integer limit once; fractional moves are not reported."""
    seen: list[int] = []
    limiter = ConcurrencyLimiter(
        ConcurrencyPolicy(algorithm="gradient2", initial_limit=10, **PER_SAMPLE),
        on_limit=seen.append,
    )
    for _ in range(10):
        limiter.try_acquire()
    limiter.record_status(0.010, 503)  # 10 -> 9.8: int 9
    limiter.record_status(0.010, 503)  # 9.8 -> 9.62: still 9
    assert seen == [9] and limiter.limit == 9


def test_limiter_classifies_outcomes() -> None:
    """429/503 and timeouts are drops; a refused connection and a zero RTT are ignored."""
    limiter = ConcurrencyLimiter(
        ConcurrencyPolicy(initial_limit=10, **PER_SAMPLE), rng=lambda: NO_PROBE
    )
    limiter.record_status(0.010, 200)  # sets rtt_noload
    limiter.record_status(0.010, 429)
    limiter.record_error(0.010, "read_timeout")
    assert limiter.estimate == 8.0
    limiter.record_error(0.010, "connect_refused")
    limiter.record_status(0.0, 503)
    assert limiter.estimate == 8.0


def test_limiter_is_thread_safe() -> None:
    """Threads acquiring and releasing concurrently never exceed the limit or leak slots."""
    limiter = ConcurrencyLimiter(ConcurrencyPolicy(initial_limit=4, min_limit=4, max_limit=4))
    peak = [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(2000):
            if limiter.try_acquire():
                with lock:
                    peak[0] = max(peak[0], limiter.in_flight)
                limiter.record_status(0.001, 200)
                limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert limiter.in_flight == 0 and peak[0] <= 4


@pytest.mark.parametrize("workers", [2, 10, 40])
def test_vegas_settles_near_the_servers_concurrency(workers: int) -> None:
    """Against a model server (W workers, latency = S x max(1, in flight / W)) that the
    client keeps saturated, Vegas settles just above W (little queueing, no starvation) and
    probing the no-load RTT does not ratchet it up."""
    service = 0.010
    limiter = ConcurrencyLimiter(
        ConcurrencyPolicy(initial_limit=20, max_limit=200, **PER_SAMPLE), rng=lambda: NO_PROBE
    )
    history = []
    probing = 0
    for _ in range(3000):
        inflight = limiter.limit
        limiter.in_flight = inflight  # saturated: every slot is taken
        limiter.sample(service * max(1.0, inflight / workers), False)
        history.append(int(limiter.estimate))
        probing += limiter.limit < limiter.estimate
    tail = history[-500:]
    assert probing < 0.05 * len(history)  # probes cost little throughput
    lg = max(1, int(math.log10(workers + 6)))
    assert min(tail) >= workers
    assert max(tail) <= workers + 6 * lg + 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _warm_limiter(limiter: ConcurrencyLimiter, rtt: float = 0.020) -> None:
    """Complete the initial probe (sample by sample, not windowed)."""
    for _ in range(PROBE_SAMPLES):
        limiter.sample(rtt, False)
    assert limiter.limit == limiter.policy.initial_limit


def test_samples_are_pooled_into_windows() -> None:
    """Nothing changes until a window is both sample_window long and window_samples full;
    then its mean RTT and largest in-flight count make one update."""
    clock = FakeClock()
    limiter = ConcurrencyLimiter(
        ConcurrencyPolicy(initial_limit=10, sample_window=1.0, window_samples=3),
        clock=clock,
        rng=lambda: NO_PROBE,
    )
    _warm_limiter(limiter)
    limiter.in_flight = 10
    for t, rtt in ((0.0, 0.010), (0.5, 0.020), (0.9, 0.030)):
        clock.now = t
        limiter.sample(rtt, False)
    assert limiter.limit == 10  # three samples, but only 0.9 s: still open
    clock.now = 1.0
    limiter.sample(0.020, False)
    assert limiter.limit == 16  # mean 0.020 = rtt_noload: no queueing, grown by 6
    for t in (1.1, 1.2):
        clock.now = t
        limiter.sample(0.040, False)
    assert limiter.limit == 16  # two samples only: still open
    clock.now = 2.5
    limiter.sample(0.040, False)
    assert limiter.limit == 15  # queue = ceil(16 x (1 - 20/40)) = 8 > 6: shrink by 1


def test_a_drop_in_the_window_shrinks_the_limit() -> None:
    """One drop among a window's samples makes that window's update a drop."""
    clock = FakeClock()
    limiter = ConcurrencyLimiter(
        ConcurrencyPolicy(initial_limit=10, sample_window=1.0, window_samples=2),
        clock=clock,
        rng=lambda: NO_PROBE,
    )
    _warm_limiter(limiter)
    limiter.record_status(0.020, 200)
    limiter.record_status(0.020, 503)
    clock.now = 1.0
    limiter.record_status(0.020, 200)
    assert limiter.limit == 9
