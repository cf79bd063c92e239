"""Tests for svcclient._balancing.hashing: the consistent-hash ring behind affinity."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient._balancing.hashing import SLOT_BITS, VNODES, HashRing, key_hash
from svcclient._balancing.strategies import Affinity
from svcclient._endpoint import Endpoint


def keys_of(n: int, first: int = 0) -> list[str]:
    return [f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}:8080" for i in range(first, n)]


def owners(ring: HashRing, keys: list[str], allowed: set[int] | None = None) -> list[str]:
    return [ring.keys[ring.owner(key_hash(k), allowed)] for k in keys]


SAMPLE = [f"user-{i}" for i in range(20_000)]


def test_key_hash_is_stable_across_processes() -> None:
    """key_hash is a fixed function (CRC-32), not Python's per-process str hash."""
    assert key_hash("user-42") == 0x7D06B873 << SLOT_BITS


def test_ring_places_the_same_key_on_the_same_endpoint_in_any_ring_order() -> None:
    """A key's endpoint depends on the set, not on the order the endpoints were listed."""
    keys = keys_of(20)
    a, b = HashRing(keys), HashRing(list(reversed(keys)))
    assert owners(a, SAMPLE[:2000]) == owners(b, SAMPLE[:2000])


def test_ring_spreads_keys_within_the_vnode_bound() -> None:
    """20,000 keys over 10 endpoints: each gets 10 % ± 3.5 sigma (sigma ~ 1/sqrt(VNODES))."""
    counts = Counter(owners(HashRing(keys_of(10)), SAMPLE))
    assert len(counts) == 10
    share = len(SAMPLE) / 10
    sigma = share * (1 / VNODES + 10 / len(SAMPLE)) ** 0.5
    assert all(abs(c - share) <= 3.5 * sigma for c in counts.values()), counts


@pytest.mark.parametrize("n", [10, 100])
def test_adding_one_endpoint_moves_about_one_in_n_plus_one_keys(n: int) -> None:
    """The moved fraction on adding the (n+1)-th endpoint is ~1/(n+1), all to the new one."""
    before = owners(HashRing(keys_of(n)), SAMPLE)
    ring = HashRing(keys_of(n + 1))
    after = owners(ring, SAMPLE)
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert all(a == ring.keys[-1] for _, a in moved)
    fraction = len(moved) / len(SAMPLE)
    assert 0.4 / (n + 1) <= fraction <= 1.8 / (n + 1), fraction


@pytest.mark.parametrize("n", [10, 100])
def test_removing_one_endpoint_moves_only_its_keys(n: int) -> None:
    """Removing an endpoint moves exactly its keys (~1/n of them), each to its runner-up."""
    keys = keys_of(n)
    full = HashRing(keys)
    gone = keys[n // 2]
    before = owners(full, SAMPLE)
    after = owners(HashRing([k for k in keys if k != gone]), SAMPLE)
    moved = sum(b != a for b, a in zip(before, after, strict=True))
    assert moved == before.count(gone)
    assert 0.4 / n <= moved / len(SAMPLE) <= 1.8 / n
    for k, b, a in zip(SAMPLE[:500], before, after, strict=False):
        if b == gone:
            assert a == full.keys[full.owner(key_hash(k), skip=full.slots[gone])]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 15), drop=st.integers(0, 14), keys=st.lists(st.text(), max_size=60))
def test_skipping_an_endpoint_equals_a_ring_without_it(n: int, drop: int, keys: list[str]) -> None:
    """Skipping an ejected endpoint at lookup gives the same choice as rebuilding without it."""
    all_keys = keys_of(n)
    gone = all_keys[drop % n]
    ring = HashRing(all_keys)
    rest = HashRing([k for k in all_keys if k != gone])
    allowed = {s for k, s in ring.slots.items() if k != gone}
    assert owners(ring, keys, allowed) == owners(rest, keys)


def test_order_lists_every_slot_once_starting_with_the_owner() -> None:
    """order() starts at the owner, then the runner-up, and names each endpoint once."""
    ring = HashRing(keys_of(6))
    h = key_hash("abc")
    order = ring.order(h)
    assert sorted(order) == list(range(6))
    assert order[0] == ring.owner(h)
    assert order[1] == ring.owner(h, skip=order[0])
    assert HashRing([]).owner(h) == -1
    assert ring.owner(h, allowed=set()) == -1


def test_affinity_rebuilds_the_ring_only_for_new_endpoints() -> None:
    """Ejecting endpoints keeps the ring object; a new endpoint (or most skipped) rebuilds it."""
    import random

    eps = [Endpoint(f"10.0.0.{i}", 80) for i in range(1, 11)]
    aff = Affinity(random.Random(1), lambda: 0.0, timeout=10.0)
    aff.rebuild(tuple(eps))
    ring = aff._ring
    aff.rebuild(tuple(eps[:7]))
    assert aff._ring is ring
    assert aff.pick("k") in eps[:7]
    aff.rebuild(tuple(eps[:4]))  # 4 of 10: most skipped, rebuilt smaller
    assert aff._ring is not ring and len(aff._ring) == 4
    ring = aff._ring
    aff.rebuild((*eps[:4], Endpoint("10.0.0.99", 80)))
    assert aff._ring is not ring and len(aff._ring) == 5
