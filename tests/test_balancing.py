"""Tests for svcclient._balancing: endpoint choice, strategies, hashing and health."""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import random
import threading
from collections import Counter

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient._balancing.balancer import BalancingPolicy, LoadBalancer
from svcclient._balancing.outlier import OutlierPolicy
from svcclient._balancing.strategies import Affinity, LeastLoaded, RoundRobin
from svcclient._endpoint import Endpoint
from svcclient._exceptions import ConfigError


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def eps(n: int, port: int = 8080) -> list[Endpoint]:
    return [Endpoint(f"10.0.{i // 250}.{i % 250 + 1}", port) for i in range(n)]


def make_lb(
    n: int = 3,
    strategy: str = "round_robin",
    *,
    clock: FakeClock | None = None,
    seed: int = 7,
    outlier: OutlierPolicy | None = None,
    events: list[tuple[Endpoint, bool]] | None = None,
    **policy: object,
) -> tuple[LoadBalancer, list[Endpoint], FakeClock]:
    clock = clock or FakeClock()
    lb = LoadBalancer(
        BalancingPolicy(strategy, seed=seed, **policy),  # type: ignore[arg-type]
        outlier or OutlierPolicy(),
        clock=clock,
        on_ejection=None if events is None else (lambda ep, out: events.append((ep, out))),
    )
    endpoints = eps(n)
    lb.set_endpoints(endpoints)
    return lb, endpoints, clock


def fail_n(lb: LoadBalancer, ep: Endpoint, n: int) -> None:
    for _ in range(n):
        lb.on_start(ep)
        lb.on_end(ep, 0.001, failure=True)


# -- policy --------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    """P2C least loaded, 3600 s affinity timeout, no header/cookie, 10 s EWMA decay, no seed."""
    p = BalancingPolicy()
    assert (p.strategy, p.affinity_timeout, p.ewma_decay, p.seed) == (
        "least_loaded",
        3600.0,
        10.0,
        None,
    )
    assert p.affinity_header is None and p.affinity_cookie is None


def test_unknown_strategy_names_the_value() -> None:
    """An unknown strategy raises ConfigError whose message names the bad value and options."""
    with pytest.raises(ConfigError) as info:
        BalancingPolicy("random")  # type: ignore[arg-type]
    assert info.value.key == "strategy" and info.value.value == "random"
    assert "'random'" in str(info.value) and "least_loaded" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("affinity_timeout", 0),
        ("affinity_timeout", -5.0),
        ("affinity_timeout", math.inf),
        ("affinity_timeout", "1h"),
        ("ewma_decay", 0.0),
        ("ewma_decay", math.nan),
        ("seed", 1.5),
        ("seed", True),
        ("affinity_header", ""),
        ("affinity_header", "X User"),
        ("affinity_header", "X:Y"),
        ("affinity_cookie", "a=b"),
        ("affinity_cookie", 5),
    ],
)
def test_policy_rejects_bad_values_naming_the_key(key: str, value: object) -> None:
    """Each invalid field raises ConfigError with that key."""
    with pytest.raises(ConfigError) as info:
        BalancingPolicy(**{key: value})  # type: ignore[arg-type]
    assert info.value.key == key


def test_policy_is_frozen() -> None:
    """BalancingPolicy cannot be mutated; replace() revalidates."""
    p = BalancingPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.strategy = "affinity"  # type: ignore[misc]
    with pytest.raises(ConfigError):
        dataclasses.replace(p, strategy="nope")  # type: ignore[arg-type]


def test_affinity_key_from_header_then_cookie() -> None:
    """The header wins over the cookie; cookies are parsed from the Cookie header."""
    p = BalancingPolicy("affinity", affinity_header="X-User-Id", affinity_cookie="sid")
    both = httpx.Headers({"x-user-id": "u1", "Cookie": "a=1; sid=s9"})
    assert p.affinity_key(both) == "u1"
    assert p.affinity_key(httpx.Headers({"Cookie": 'a=1; sid="s9"'})) == "s9"
    assert p.affinity_key({"X-User-Id": "u2"}) == "u2"
    assert p.affinity_key({"x-user-id": "u3"}) == "u3"
    assert p.affinity_key({"cookie": "sidx=1; a=2"}) is None
    assert p.affinity_key({}) is None


def test_affinity_key_is_none_for_other_strategies() -> None:
    """Non-affinity strategies never extract a key, even with a header configured."""
    p = BalancingPolicy("round_robin", affinity_header="X-User-Id")
    assert p.affinity_key({"X-User-Id": "u1"}) is None


# -- the endpoint set ----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "affinity"])
def test_empty_set_raises_lookup_error(strategy: str) -> None:
    """pick() raises LookupError before any endpoint is known and after the set empties."""
    lb = LoadBalancer(BalancingPolicy(strategy, seed=1), OutlierPolicy())  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        lb.pick("k")
    lb.set_endpoints(eps(2))
    lb.pick("k")
    lb.set_endpoints([])
    with pytest.raises(LookupError):
        lb.pick("k")


def test_duplicates_are_dropped_and_order_kept() -> None:
    """set_endpoints keeps the first occurrence of each endpoint, in order."""
    lb, (a, b, c), _ = make_lb(3)
    lb.set_endpoints([b, a, b, Endpoint("10.0.0.2", 8080)])
    assert lb.endpoints == (b, a)


def test_removed_endpoint_is_not_picked_and_on_end_is_safe() -> None:
    """A removed endpoint vanishes from picks; its in-flight request ends without error."""
    lb, (a, b, c), _ = make_lb(3)
    lb.on_start(c)
    lb.set_endpoints([a, b])
    assert {lb.pick() for _ in range(20)} == {a, b}
    stats = lb.stats(c)
    assert stats is not None and stats.outstanding == 1  # kept while in flight
    lb.on_end(c, 0.5, failure=True)
    assert lb.stats(c) is None
    lb.on_end(c, 0.5, failure=True)  # a late duplicate is harmless too
    lb.on_start(c)


def test_survivors_keep_stats_and_ejection() -> None:
    """Endpoints present before and after set_endpoints keep their figures and ejection."""
    lb, (a, b, c), _ = make_lb(3, outlier=OutlierPolicy(consecutive_failures=1))
    lb.on_start(b)
    lb.on_end(b, 0.25, failure=False)
    fail_n(lb, a, 1)
    assert lb.ejected() == (a,)
    new = Endpoint("10.0.0.50", 8080)
    lb.set_endpoints([a, b, new])
    assert lb.ejected() == (a,)
    assert lb.healthy() == (b, new)
    stats = lb.stats(b)
    assert stats is not None and stats.ewma == 0.25


def test_readded_endpoint_in_flight_keeps_counting() -> None:
    """Removed then re-added while a request is in flight: the count stays right."""
    lb, (a, b, c), _ = make_lb(3)
    lb.on_start(c)
    lb.set_endpoints([a, b])
    lb.set_endpoints([a, b, c])
    stats = lb.stats(c)
    assert stats is not None and stats.outstanding == 1
    lb.on_end(c, 0.1, failure=False)
    assert stats.outstanding == 0 and lb.stats(c) is stats


# -- round robin ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 30), picks=st.integers(0, 400), seed=st.integers(0, 2**32))
def test_round_robin_is_within_one_of_fair(n: int, picks: int, seed: int) -> None:
    """Over any number of picks, every endpoint gets floor or ceil of its share."""
    lb, endpoints, _ = make_lb(n, seed=seed)
    counts = Counter(lb.pick() for _ in range(picks))
    got = [counts[ep] for ep in endpoints]
    assert max(got) - min(got) <= 1
    assert sum(got) == picks


def test_round_robin_starts_at_a_random_offset() -> None:
    """Different seeds start at different endpoints; the same seed repeats itself."""
    firsts = {make_lb(10, seed=s)[0].pick() for s in range(20)}
    assert len(firsts) > 3
    assert make_lb(10, seed=3)[0].pick() == make_lb(10, seed=3)[0].pick()


def test_round_robin_avoid_goes_elsewhere() -> None:
    """With avoid set, a different endpoint is returned whenever one exists."""
    lb, endpoints, _ = make_lb(3)
    for ep in endpoints:
        assert all(lb.pick(avoid=ep) != ep for _ in range(6))
    lb.set_endpoints(endpoints[:1])
    assert lb.pick(avoid=endpoints[0]) == endpoints[0]


def test_round_robin_skips_ejected_and_brings_them_back() -> None:
    """Ejected endpoints get no picks until their time passes; on_ejection reports both."""
    events: list[tuple[Endpoint, bool]] = []
    lb, (a, b, c), clock = make_lb(3, events=events)
    fail_n(lb, a, 5)
    assert events == [(a, True)]
    assert lb.eligible == (b, c)
    assert a not in {lb.pick() for _ in range(30)}
    clock.advance(29.9)
    assert a not in {lb.pick() for _ in range(30)}
    clock.advance(0.1)
    assert Counter(lb.pick() for _ in range(30)) == {a: 10, b: 10, c: 10}
    assert events == [(a, True), (a, False)]
    assert lb.ejected() == ()


def test_least_loaded_over_one_endpoint_picks_it_then_p2c_once_there_are_two() -> None:
    """One endpoint: every pick (avoid or not) is it, with no draw, no clock read and
    counts kept as usual; a second endpoint brings P2C back, and an ejection due to
    expire the expiry check."""
    clock = FakeClock()
    reads = []
    lb, (only,), _ = make_lb(1, "least_loaded", clock=clock)
    rng_state = lb._strategy._random.__self__.getstate()  # type: ignore[attr-defined]
    lb._clock = lambda: reads.append(1) or clock()  # type: ignore[assignment]
    assert lb.pick() is only and lb.pick("key", only) is only
    assert lb._strategy._random.__self__.getstate() == rng_state  # type: ignore[attr-defined]
    lb.on_start(only)
    assert lb.stats(only).outstanding == 1  # type: ignore[union-attr]
    lb.on_end(only, 0.05, False, clock())
    assert lb.stats(only).outstanding == 0 and lb.stats(only).ewma == 0.05  # type: ignore[union-attr]
    assert reads == []
    two = [only, eps(2)[1]]
    lb.set_endpoints(two)
    assert lb.pick == lb._strategy.pick
    assert lb.pick() == two[1]  # P2C: the unmeasured idle endpoint beats a measured one
    lb, (only,), clock = make_lb(
        1, "least_loaded", outlier=OutlierPolicy(consecutive_failures=1, max_ejection_percent=100.0)
    )
    fail_n(lb, only, 1)
    assert lb.pick == lb._pick_refreshing and lb.pick() is only  # panic mode, expiry due


def test_panic_mode_uses_every_endpoint() -> None:
    """When every endpoint is excluded, all of them are picked rather than none."""
    lb, endpoints, _ = make_lb(
        3, outlier=OutlierPolicy(consecutive_failures=1, max_ejection_percent=100.0)
    )
    for ep in endpoints:
        fail_n(lb, ep, 1)
    assert set(lb.ejected()) == set(endpoints)
    assert lb.panic
    assert lb.eligible == tuple(endpoints)
    assert {lb.pick() for _ in range(9)} == set(endpoints)


def test_cap_keeps_half_in_rotation() -> None:
    """Default 50 % cap: of 4 failing endpoints only 2 are ejected."""
    lb, endpoints, _ = make_lb(4)
    for ep in endpoints:
        fail_n(lb, ep, 5)
    assert len(lb.ejected()) == 2 and len(lb.healthy()) == 2
    assert not lb.panic


def test_on_ejection_errors_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A raising on_ejection hook never breaks on_end; it is logged."""

    def boom(ep: Endpoint, out: bool) -> None:
        raise RuntimeError("hook bug")

    clock = FakeClock()
    lb = LoadBalancer(
        BalancingPolicy(seed=1),
        OutlierPolicy(consecutive_failures=1),
        clock=clock,
        on_ejection=boom,
    )
    a, b = eps(2)
    lb.set_endpoints([a, b])
    with caplog.at_level(logging.WARNING, logger="svcclient"):
        fail_n(lb, a, 1)
    assert lb.ejected() == (a,)
    assert "on_ejection hook failed" in caplog.text


def test_success_resets_failure_run_through_balancer() -> None:
    """on_end(success) between failures prevents ejection at the threshold."""
    lb, (a, *_), _ = make_lb(3)
    fail_n(lb, a, 4)
    lb.on_start(a)
    lb.on_end(a, 0.01, failure=False)
    fail_n(lb, a, 4)
    assert lb.ejected() == ()


def test_health_checks_through_balancer() -> None:
    """due_health_checks follows the interval; mark_health excludes and restores."""
    events: list[tuple[Endpoint, bool]] = []
    lb, (a, b, c), clock = make_lb(
        3,
        outlier=OutlierPolicy(health_check_path="/healthz", health_check_interval=5),
        events=events,
    )
    assert lb.due_health_checks() == [a, b, c]
    assert lb.due_health_checks() == []
    lb.mark_health(b, False)
    assert b not in {lb.pick() for _ in range(12)}
    clock.advance(5)
    assert lb.due_health_checks() == [a, b, c]
    lb.mark_health(b, True)
    assert b in {lb.pick() for _ in range(3)}
    assert events == [(b, True), (b, False)]


# -- least loaded --------------------------------------------------------------------------


def simulate(
    lb: LoadBalancer, clock: FakeClock, latency: dict[Endpoint, float], requests: int, rate: float
) -> Counter[Endpoint]:
    """Open-loop discrete-event run: a request every 1/rate s, each ends after its latency."""
    counts: Counter[Endpoint] = Counter()
    pending: list[tuple[float, int, Endpoint]] = []
    for i in range(requests):
        clock.now = 1000.0 + i / rate
        while pending and pending[0][0] <= clock.now:
            done, _, ep = heapq.heappop(pending)
            saved, clock.now = clock.now, done
            lb.on_end(ep, latency[ep], failure=False)
            clock.now = saved
        ep = lb.pick()
        lb.on_start(ep)
        counts[ep] += 1
        heapq.heappush(pending, (clock.now + latency[ep], i, ep))
    return counts


def test_p2c_sends_a_slow_endpoint_much_less_than_its_share() -> None:
    """3 endpoints, one 10x slower: under least_loaded it gets well under a third."""
    lb, (a, b, slow), clock = make_lb(3, "least_loaded", seed=42)
    lat = {a: 0.02, b: 0.02, slow: 0.2}
    counts = simulate(lb, clock, lat, requests=6000, rate=100.0)
    assert counts[slow] < 0.10 * 6000, counts
    assert counts[a] > 0.4 * 6000 and counts[b] > 0.4 * 6000
    rr, (ra, rb, rslow), rclock = make_lb(3, "round_robin", seed=42)
    rr_counts = simulate(rr, rclock, {ra: 0.02, rb: 0.02, rslow: 0.2}, requests=6000, rate=100.0)
    assert rr_counts[rslow] == 2000  # the control: round robin ignores latency


def test_p2c_prefers_fewer_outstanding() -> None:
    """With equal latency, an endpoint with many requests in flight loses the comparison."""
    lb, (a, b), _ = make_lb(2, "least_loaded")
    for ep in (a, b):
        lb.on_start(ep)
        lb.on_end(ep, 0.05, failure=False)
    for _ in range(5):
        lb.on_start(a)
    assert {lb.pick() for _ in range(20)} == {b}


def test_p2c_unmeasured_busy_endpoint_loses_idle_unmeasured_wins() -> None:
    """A never-answered endpoint is tried while idle but avoided once requests hang on it."""
    lb, (a, b), _ = make_lb(2, "least_loaded")
    lb.on_start(a)
    lb.on_end(a, 0.05, failure=False)
    assert lb.pick() == b  # unmeasured and idle: probe it
    lb.on_start(b)
    assert lb.pick() == a  # in flight, still no answer: penalised


def test_p2c_slow_endpoint_is_retried_after_decay() -> None:
    """A slow endpoint's cost decays while idle, so it is picked again eventually."""
    lb, (fast, slow), clock = make_lb(2, "least_loaded", ewma_decay=10.0)
    lb.on_start(slow)
    lb.on_end(slow, 1.0, failure=False)
    clock.advance(1)
    lb.on_start(fast)
    lb.on_end(fast, 0.1, failure=False)
    assert lb.pick() == fast
    for _ in range(30):  # fast keeps answering at 0.1 s; slow is left alone
        clock.advance(1)
        lb.on_start(fast)
        lb.on_end(fast, 0.1, failure=False)
    assert lb.pick() == slow  # 1.0 * exp(-31/10) < 0.1


def test_failures_never_make_an_endpoint_look_faster() -> None:
    """A fast connection refusal does not lower the latency estimate."""
    lb, (a, _), clock = make_lb(2, "least_loaded")
    lb.on_start(a)
    lb.on_end(a, 0.3, failure=False)
    clock.advance(5)
    lb.on_start(a)
    lb.on_end(a, 0.0001, failure=True)
    stats = lb.stats(a)
    assert stats is not None and stats.ewma == pytest.approx(0.3)


def test_ewma_is_peak_sensitive_and_decays_towards_lower_samples() -> None:
    """A higher sample replaces the average; lower ones pull it down by elapsed time."""
    lb, (a, _), clock = make_lb(2, "least_loaded", ewma_decay=10.0)
    lb.on_start(a)
    lb.on_end(a, 0.1, failure=False)
    lb.on_start(a)
    lb.on_end(a, 0.5, failure=False)
    stats = lb.stats(a)
    assert stats is not None and stats.ewma == 0.5
    clock.advance(10.0)
    lb.on_start(a)
    lb.on_end(a, 0.1, failure=False)
    w = math.exp(-1.0)
    assert stats.ewma == pytest.approx(0.5 * w + 0.1 * (1 - w))


def test_p2c_avoid_and_two_distinct_candidates() -> None:
    """least_loaded honours avoid and never compares an endpoint with itself."""
    lb, (a, b), _ = make_lb(2, "least_loaded")
    assert {lb.pick(avoid=a) for _ in range(10)} == {b}
    lb3, endpoints, _ = make_lb(5, "least_loaded", seed=3)
    counts = Counter(lb3.pick() for _ in range(5000))
    assert set(counts) == set(endpoints)  # all unmeasured and idle: a fair coin
    assert min(counts.values()) > 800


# -- affinity and hashing ------------------------------------------------------------------


def assign(lb: LoadBalancer, keys: list[str]) -> dict[str, Endpoint]:
    return {k: lb.pick(k) for k in keys}


KEYS = [f"user-{i}" for i in range(10_000)]


def test_affinity_same_key_same_endpoint() -> None:
    """Repeated picks with one key return one endpoint; different keys use them all."""
    lb, endpoints, _ = make_lb(5, "affinity")
    assert len({lb.pick("alice") for _ in range(50)}) == 1
    assert set(assign(lb, KEYS[:500]).values()) == set(endpoints)


def test_affinity_is_the_same_across_balancers() -> None:
    """Two clients (different seeds, different endpoint order) map keys identically."""
    lb1, endpoints, _ = make_lb(8, "affinity", seed=1)
    lb2 = LoadBalancer(BalancingPolicy("affinity", seed=2), OutlierPolicy(), clock=FakeClock())
    lb2.set_endpoints(list(reversed(endpoints)))
    assert assign(lb1, KEYS[:2000]) == assign(lb2, KEYS[:2000])


def test_removing_one_of_n_moves_about_one_nth() -> None:
    """Removing 1 of 10 endpoints moves only its keys: about 1/10 of 10,000."""
    lb, endpoints, _ = make_lb(10, "affinity")
    before = assign(lb, KEYS)
    gone = endpoints[3]
    lb.set_endpoints([ep for ep in endpoints if ep != gone])
    after = assign(lb, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == gone for k in moved)
    assert all(after[k] != gone for k in KEYS)
    assert 800 <= len(moved) <= 1200, len(moved)
    # The orphans spread over the survivors instead of piling onto one.
    spread = Counter(after[k] for k in moved)
    assert len(spread) == 9 and max(spread.values()) < 0.25 * len(moved)


def test_adding_one_endpoint_moves_about_one_in_n_plus_one() -> None:
    """Adding an 11th endpoint moves ~1/11 of keys, all to it (pure HRW, fresh balancer)."""
    lb10, endpoints, _ = make_lb(10, "affinity")
    before = assign(lb10, KEYS)
    lb11 = LoadBalancer(BalancingPolicy("affinity"), OutlierPolicy(), clock=FakeClock())
    new = Endpoint("10.0.9.9", 8080)
    lb11.set_endpoints([*endpoints, new])
    after = assign(lb11, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == new for k in moved)
    assert 720 <= len(moved) <= 1100, len(moved)  # expected 10,000 / 11 = 909


def test_affinity_is_sticky_after_add_until_timeout() -> None:
    """Keys stay put when an endpoint is added, and move (~1/(N+1)) only after going idle."""
    lb, endpoints, clock = make_lb(10, "affinity", affinity_timeout=60.0)
    before = assign(lb, KEYS)
    new = Endpoint("10.0.9.9", 8080)
    lb.set_endpoints([*endpoints, new])
    clock.advance(59)
    assert assign(lb, KEYS) == before  # still pinned (and use refreshed the pins)
    clock.advance(59)
    assert assign(lb, KEYS) == before
    clock.advance(60)  # idle for a whole timeout: re-hashed
    after = assign(lb, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == new for k in moved)
    assert 720 <= len(moved) <= 1100


def test_affinity_moves_off_ejected_endpoint_and_stays() -> None:
    """When a key's endpoint is ejected it moves, and keeps its new endpoint on return."""
    lb, endpoints, clock = make_lb(4, "affinity", outlier=OutlierPolicy(consecutive_failures=1))
    home = lb.pick("alice")
    fail_n(lb, home, 1)
    moved = lb.pick("alice")
    assert moved != home
    clock.advance(31)
    assert lb.healthy() == tuple(endpoints)
    assert lb.pick("alice") == moved


def test_affinity_retry_uses_runner_up_without_repinning() -> None:
    """A retry (avoid = the key's endpoint) goes to the next choice; the pin is unchanged."""
    lb, _, _ = make_lb(5, "affinity")
    home = lb.pick("bob")
    retry = lb.pick("bob", avoid=home)
    assert retry != home
    assert lb.pick("bob", avoid=home) == retry
    assert lb.pick("bob") == home


def test_affinity_without_key_is_round_robin() -> None:
    """No affinity key: picks rotate evenly."""
    lb, endpoints, _ = make_lb(4, "affinity")
    assert Counter(lb.pick() for _ in range(40)) == dict.fromkeys(endpoints, 10)


def test_affinity_memory_is_bounded_and_expires() -> None:
    """The pin table never exceeds max_keys and drops idle keys first."""
    clock = FakeClock()
    aff = Affinity(random.Random(1), clock, timeout=10.0, max_keys=100)
    aff.rebuild(tuple(eps(3)))
    for i in range(1000):
        aff.pick(f"k{i}", None)
    assert len(aff) == 100
    clock.advance(11)
    aff.pick("fresh", None)
    assert len(aff) == 1


# -- concurrency ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "affinity"])
def test_concurrent_use_keeps_counts_exact(strategy: str) -> None:
    """8 threads x 2,000 pick/start/end cycles (with set changes) end with 0 outstanding."""
    lb = LoadBalancer(
        BalancingPolicy(strategy, seed=5),  # type: ignore[arg-type]
        OutlierPolicy(consecutive_failures=3),
    )
    endpoints = eps(6)
    lb.set_endpoints(endpoints)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(2000):
                ep = lb.pick(f"k{i % 50}")
                lb.on_start(ep)
                lb.on_end(ep, 0.001 * (t + 1), failure=(i + t) % 7 == 0)
                if t == 0 and i % 400 == 0:
                    lb.set_endpoints(endpoints[: 3 + (i // 400) % 4])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    assert not any(th.is_alive() for th in threads)
    lb.set_endpoints(endpoints)
    for ep in endpoints:
        stats = lb.stats(ep)
        assert stats is not None and stats.outstanding == 0


def test_strategy_classes_are_usable_directly() -> None:
    """RoundRobin and LeastLoaded work on their own snapshot (for custom compositions)."""
    rr = RoundRobin(random.Random(0))
    rr.rebuild(tuple(eps(3)))
    assert len({rr.pick() for _ in range(3)}) == 3
    ll = LeastLoaded({}, random.Random(0), FakeClock(), 10.0)
    ll.rebuild(())
    with pytest.raises(LookupError):
        ll.pick()


@pytest.mark.parametrize("strategy", ["least_loaded", "round_robin", "affinity"])
@pytest.mark.parametrize("count", [1, 3])
def test_start_is_pick_then_on_start(strategy: str, count: int) -> None:
    """start() answers what pick() would and counts the attempt in flight once, over one
    endpoint (least loaded: one function) and several; on_end takes it off again."""
    eps = [Endpoint(f"10.0.0.{i}", 80) for i in range(1, count + 1)]
    lb = LoadBalancer(BalancingPolicy(strategy, seed=3), OutlierPolicy())  # type: ignore[arg-type]
    twin = LoadBalancer(BalancingPolicy(strategy, seed=3), OutlierPolicy())  # type: ignore[arg-type]
    lb.set_endpoints(eps)
    twin.set_endpoints(eps)
    for _ in range(5):
        ep = lb.start("key", None)
        assert ep == twin.pick("key", None)
        twin.on_start(ep)
        st = lb.stats(ep)
        assert st is not None and st.outstanding == 1
        lb.on_end(ep, 0.01, False)
        twin.on_end(ep, 0.01, False)
        assert st.outstanding == 0
