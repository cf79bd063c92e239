"""The default balancer (P2C over outstanding x peak EWMA) and its retry path (issue 13)."""

from __future__ import annotations

import random

import pytest

from svcclient import BalancingPolicy, OutlierPolicy, ServiceConfig
from svcclient._balancing.balancer import LoadBalancer
from svcclient._balancing.strategies import EndpointStats, LeastLoaded
from svcclient._endpoint import Endpoint

A, B, C = (Endpoint(f"10.0.0.{i}", 80) for i in (1, 2, 3))


def test_default_strategy_is_least_loaded() -> None:
    """A client built with defaults balances with P2C (Finagle's and Linkerd's default)."""
    assert ServiceConfig("x").balancing.strategy == "least_loaded"


@pytest.mark.parametrize("seed", range(20))
def test_retry_never_bounces_back_to_a_worse_pod(seed: int) -> None:
    """Avoiding B, P2C still compares: the slow A loses to C every time."""
    stats = {ep.key: EndpointStats() for ep in (A, B, C)}
    stats[A.key].ewma, stats[C.key].ewma = 0.1, 0.001
    stats[A.key].stamp = stats[C.key].stamp = 0.0
    ll = LeastLoaded(stats, random.Random(seed), lambda: 0.0, 10.0)
    ll.rebuild((A, B, C))
    assert ll.pick(None, B) == C


def test_avoid_with_two_endpoints_takes_the_other() -> None:
    """Two endpoints: the retry goes to the one it did not fail on."""
    stats = {ep.key: EndpointStats() for ep in (A, B)}
    ll = LeastLoaded(stats, random.Random(0), lambda: 0.0, 10.0)
    ll.rebuild((A, B))
    assert {ll.pick(None, A) for _ in range(10)} == {B}


def test_slow_pod_gets_little_traffic_after_one_slow_answer() -> None:
    """One 1 s answer from B: the next 100 sequential picks (1 ms each) avoid B."""
    now = [0.0]
    lb = LoadBalancer(BalancingPolicy(seed=3), OutlierPolicy(), clock=lambda: now[0])
    lb.set_endpoints([B, C])
    lb.on_start(B)
    lb.on_end(B, 1.0, False)
    lb.on_start(C)
    lb.on_end(C, 0.001, False)
    picks = []
    for _ in range(100):
        ep = lb.pick()
        lb.on_start(ep)
        now[0] += 0.001
        lb.on_end(ep, 0.001, False)
        picks.append(ep)
    assert picks.count(B) == 0
