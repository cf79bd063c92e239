"""Tests for the affinity strategy's key memory: two dict generations, a cap, a timeout.

A key the memory still holds keeps its remembered endpoint; a forgotten one is re-hashed.
The tests make the two observable by adding an endpoint that becomes the key's hash owner:
a remembered key stays where it was, a forgotten (or expired) key moves to the newcomer.
"""

from __future__ import annotations

import random
import threading

from svcclient._balancing.hashing import HashRing
from svcclient._balancing.strategies import Affinity
from svcclient._endpoint import Endpoint


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


BASE = tuple(Endpoint(f"10.1.0.{i}", 8080) for i in range(1, 6))
NEWCOMER = Endpoint("10.1.0.99", 8080)


def keys_owned_by_newcomer(count: int) -> list[str]:
    """Keys whose hash owner is NEWCOMER once it joins BASE (so they move on a re-hash)."""
    ring = HashRing([ep.key for ep in (*BASE, NEWCOMER)])
    found = [
        k
        for k in (f"moving-{i}" for i in range(5000))
        if ring.owner_of(k, ring.slots.values()) == len(BASE)
    ]
    assert len(found) >= count
    return found[:count]


def fillers(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def make(max_keys: int, timeout: float = 60.0) -> tuple[Affinity, FakeClock]:
    clock = FakeClock()
    aff = Affinity(random.Random(1), clock, timeout=timeout, max_keys=max_keys)
    aff.rebuild(BASE)
    return aff, clock


def test_memory_never_exceeds_max_keys_and_keeps_at_least_a_generation() -> None:
    """1,000 new keys through max_keys=100: never more than 100 held, never fewer than 50
    once full (the young generation turns into the old one, the older one is dropped)."""
    aff, _ = make(max_keys=100)
    for i, key in enumerate(fillers("k", 1000)):
        aff.pick(key)
        assert len(aff) <= 100
        if i >= 100:
            assert len(aff) >= 50


def test_a_reused_key_survives_generation_flips_an_unused_one_does_not() -> None:
    """A key used once per generation outlives any number of flips; one not used since two
    flips is forgotten and re-hashed (here: to the newcomer that now owns its hash)."""
    kept, dropped = keys_owned_by_newcomer(2)
    aff, _ = make(max_keys=10)  # 5 keys per generation
    home_kept, home_dropped = aff.pick(kept), aff.pick(dropped)
    aff.rebuild((*BASE, NEWCOMER))  # both keys' hash owner is now NEWCOMER
    for flip in range(6):
        for key in fillers(f"gen{flip}", 5):  # a generation's worth of new keys
            aff.pick(key)
        assert aff.pick(kept) == home_kept  # remembered: still where it was pinned
    assert home_dropped != NEWCOMER
    assert aff.pick(dropped) == NEWCOMER  # forgotten after the flips: re-hashed


def test_a_key_idle_past_the_timeout_is_rehashed_to_its_new_owner() -> None:
    """Pinned keys stay put after a membership change until they sit idle for a whole
    timeout; then they are re-hashed, onto the new endpoint that owns their hash."""
    keys = keys_owned_by_newcomer(3)
    aff, clock = make(max_keys=1000, timeout=60.0)
    homes = [aff.pick(k) for k in keys]
    assert NEWCOMER not in homes
    aff.rebuild((*BASE, NEWCOMER))
    clock.now += 59.0
    assert [aff.pick(k) for k in keys] == homes  # used within the timeout: refreshed
    clock.now += 59.0
    assert [aff.pick(k) for k in keys] == homes
    clock.now += 60.0  # idle for exactly the timeout
    assert [aff.pick(k) for k in keys] == [NEWCOMER] * 3


def test_expiry_empties_a_memory_idle_for_a_whole_timeout() -> None:
    """While any key was used within the timeout the young generation is kept (idle keys
    in it are re-hashed when used, not dropped); once every key has been idle a whole
    timeout, the next new key finds the memory emptied."""
    aff, clock = make(max_keys=100, timeout=10.0)
    for key in fillers("old", 40):
        aff.pick(key)
    clock.now += 5.0
    aff.pick("recent")
    clock.now += 6.0  # "old-*" idle 11 s, "recent" 6 s
    aff.pick("new-1")
    assert len(aff) == 42
    clock.now += 10.0  # every key idle a whole timeout now
    aff.pick("new-2")
    assert len(aff) == 1


def test_expired_key_in_the_old_generation_is_rehashed_when_used() -> None:
    """A key found in the old generation after its timeout moves back to the young one
    re-hashed (not with its stale pin)."""
    (key,) = keys_owned_by_newcomer(1)
    aff, clock = make(max_keys=10, timeout=60.0)
    home = aff.pick(key)
    for filler in fillers("f", 5):  # the key's generation becomes the old one
        aff.pick(filler)
    aff.rebuild((*BASE, NEWCOMER))
    clock.now += 30.0
    for filler in fillers("g", 2):  # keep the memory in use, the key idle
        aff.pick(filler)
    clock.now += 30.0  # the key has been idle 60 s
    assert home != NEWCOMER
    assert aff.pick(key) == NEWCOMER


def test_eight_threads_share_the_memory_safely() -> None:
    """8 threads x 3,000 picks over shared and private keys, with rebuilds: no error, the
    cap holds, every pick is eligible, and a key keeps one endpoint while the set stands."""
    aff, clock = make(max_keys=64)
    errors: list[BaseException] = []
    seen: dict[str, set[Endpoint]] = {}
    done = threading.Barrier(8)

    def worker(t: int) -> None:
        mine: dict[str, set[Endpoint]] = {}
        try:
            for i in range(3000):
                key = f"shared-{i % 20}" if i % 2 else f"t{t}-{i % 300}"
                ep = aff.pick(key, None)
                assert ep in BASE
                mine.setdefault(key, set()).add(ep)
                assert len(aff) <= 64
                if t == 0 and i % 500 == 0:
                    aff.rebuild(BASE)  # same set: must not move anything
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.wait(timeout=60)
        for key, eps in mine.items():
            seen.setdefault(key, set()).update(eps)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    assert len(aff) <= 64
    # With the set unchanged, forgetting a key only re-hashes it to the same endpoint.
    assert all(len(eps) == 1 for eps in seen.values()), seen
    assert clock.now == 1000.0
