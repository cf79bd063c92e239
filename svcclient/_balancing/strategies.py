"""The three endpoint-choice strategies behind ``LoadBalancer``.

Each strategy keeps its own snapshot of the eligible endpoints, replaced as a whole by
``rebuild`` (under the balancer's lock) whenever the endpoint set or the ejection state
changes, so ``pick`` reads one reference and never sees half an update. ``pick`` raises
``LookupError`` when the snapshot is empty.

* :class:`RoundRobin` -- one shared ``itertools.count`` (``next()`` on it is atomic in
  CPython), started at a random offset so that many clients do not march in step.
* :class:`LeastLoaded` -- Finagle's power of two choices over a peak-EWMA cost.
* :class:`Affinity` -- a consistent-hash ring plus a bounded LRU of sticky assignments
  that also implements the affinity timeout.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias
from zlib import crc32

from .._endpoint import Endpoint
from .hashing import HashRing, crc, key_hash
from .outlier import EndpointHealth

__all__ = ["FAILURE_LATENCY", "Affinity", "EndpointStats", "LeastLoaded", "RoundRobin", "Strategy"]

_EMPTY = "no endpoint to pick from"


class Strategy(Protocol):
    """What ``LoadBalancer`` needs from a strategy."""

    def rebuild(self, eligible: tuple[Endpoint, ...]) -> None:
        """Replace the snapshot of endpoints to choose from."""

    def pick(self, affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """Choose one endpoint; not ``avoid`` when another is eligible."""


class EndpointStats:
    """Load figures for one endpoint, kept by ``LoadBalancer``.

    ``ewma`` is a peak-sensitive moving average of latency in seconds (0.0 until the
    first response; ``LoadBalancer.on_end`` folds each response time in) and ``stamp``
    the clock reading of its last update. In-flight
    requests are tokens in the ``inflight`` deque: ``append`` and ``pop`` are atomic in
    CPython (see the Python FAQ on thread safety) and ``len`` reads it, so counting needs
    no lock on the request path. A deque, not a list: a list going from one token to none
    frees its storage and the next token allocates it again, on every request. ``live``
    turns False once the endpoint left the set (it then lingers only until its in-flight
    requests finish). ``health`` is the outlier detector's record for the endpoint.
    """

    __slots__ = ("ewma", "health", "inflight", "live", "stamp")

    def __init__(self, health: EndpointHealth | None = None) -> None:
        self.inflight: deque[None] = deque()
        self.ewma = 0.0
        self.stamp = 0.0
        self.live = True
        self.health = health

    @property
    def outstanding(self) -> int:
        """Requests to this endpoint in flight."""
        return len(self.inflight)

    def _after_fork_in_child(self) -> None:
        # Called by svcclient._transports.forksafe: the parent's requests never end here.
        self.inflight.clear()


# What a failed attempt counts as in the latency average (seconds): slow enough to lose
# P2C comparisons against healthy pods for a while, decaying like any other sample.
FAILURE_LATENCY = 0.1


class RoundRobin:
    """Every eligible endpoint in turn, from a random starting point.

    Over any window each endpoint is picked within one of its fair share (the counter is
    global, so that holds across threads too). ``affinity_key`` is ignored.

    >>> rr = RoundRobin(random.Random(1))
    >>> rr.rebuild((Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)))
    >>> rr.pick(None, None) != rr.pick(None, None)
    True
    """

    __slots__ = ("_counter", "_eligible")

    def __init__(self, rng: random.Random) -> None:
        self._counter = itertools.count(rng.randrange(1 << 30))
        self._eligible: tuple[Endpoint, ...] = ()

    def rebuild(self, eligible: tuple[Endpoint, ...]) -> None:
        """Replace the rotation; the position carries over."""
        self._eligible = eligible

    def pick(self, affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """The next endpoint in rotation (the one after, if that is ``avoid``)."""
        eligible = self._eligible
        n = len(eligible)
        if n == 0:
            raise LookupError(_EMPTY)
        i = next(self._counter) % n
        ep = eligible[i]
        if avoid is not None and n > 1 and ep.key == avoid.key:
            ep = eligible[(i + 1) % n]
        return ep


# Cost of an endpoint that has requests in flight but has never answered: we know nothing
# about it and it may be hanging, so it should lose to any measured endpoint (Finagle's
# penalty); among such endpoints fewer outstanding still wins.
_PENALTY = 1e9


class LeastLoaded:
    """Power of two random choices over ``(outstanding + 1) * ewma`` (Finagle's P2C).

    Two distinct eligible endpoints are drawn at random and the cheaper one wins. The
    latency average decays towards zero while an endpoint gets no responses (over
    ``decay`` seconds), so an endpoint that was slow is tried again later instead of being
    starved forever. An endpoint never measured costs 0 while idle (so it gets probed) and
    a large penalty once requests to it are in flight.
    """

    __slots__ = ("_clock", "_decay", "_random", "_stats", "_table")

    def __init__(
        self,
        stats: Mapping[str, EndpointStats],
        rng: random.Random,
        clock: Callable[[], float],
        decay: float,
    ) -> None:
        self._stats = stats
        self._random = rng.random
        self._clock = clock
        self._decay = decay
        self._table: tuple[tuple[Endpoint, ...], tuple[EndpointStats, ...]] = ((), ())

    def rebuild(self, eligible: tuple[Endpoint, ...]) -> None:
        """Replace the candidates; their stats objects are looked up once, here."""
        stats = self._stats
        self._table = (eligible, tuple(stats[ep.key] for ep in eligible))

    def cost(self, st: EndpointStats, now: float) -> float:
        """The load figure P2C compares (lower is better)."""
        ewma = st.ewma
        outstanding = len(st.inflight)
        if ewma == 0.0:
            return _PENALTY + outstanding if outstanding else 0.0
        elapsed = now - st.stamp
        if elapsed > 0.0:
            ewma *= math.exp(-elapsed / self._decay)
        return ewma * (outstanding + 1)

    def pick(self, affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """The less loaded of two random endpoints (the other one, if one is ``avoid``)."""
        eligible, stats = self._table
        n = len(eligible)
        if n < 2:
            if n == 0:
                raise LookupError(_EMPTY)
            return eligible[0]
        r = self._random
        if avoid is not None:
            return self._pick_avoiding(eligible, stats, avoid)
        i = int(r() * n)
        j = int(r() * (n - 1))
        if j >= i:
            j += 1  # two distinct indexes, uniformly
        a = eligible[i]
        b = eligible[j]
        now = self._clock()
        return a if self.cost(stats[i], now) <= self.cost(stats[j], now) else b

    def _pick_avoiding(
        self,
        eligible: tuple[Endpoint, ...],
        stats: tuple[EndpointStats, ...],
        avoid: Endpoint,
    ) -> Endpoint:
        """P2C among the endpoints other than ``avoid`` (a retry's previous pod): both
        draws come from the rest, so the comparison still happens (with two pods of three
        failing, a retry reaches the healthy one instead of bouncing back)."""
        n = len(eligible)
        k = -1
        for x, ep in enumerate(eligible):
            if ep.key == avoid.key:
                k = x
                break
        r = self._random
        if k < 0:
            i = int(r() * n)
            j = int(r() * (n - 1))
            if j >= i:
                j += 1
        elif n == 2:
            return eligible[1 - k]
        else:
            i = int(r() * (n - 1))
            j = int(r() * (n - 2))
            if j >= i:
                j += 1
            i += i >= k  # skip the avoided index
            j += j >= k
        now = self._clock()
        return eligible[i] if self.cost(stats[i], now) <= self.cost(stats[j], now) else eligible[j]


# The affinity strategy's snapshot: the ring, the eligible endpoints by slot, their keys,
# and the ring's lookup tables (HashRing.tables()) for the inlined new-key lookup.
_Table: TypeAlias = (
    "tuple[HashRing, dict[int, Endpoint], frozenset[str], array[int], array[int], array[int], int]"
)


class Affinity:
    """Session affinity: one key, one endpoint, while it is eligible and in use.

    A new key goes to its owner on the hash ring among the eligible endpoints and the
    choice is remembered. Later picks with the key return the remembered endpoint while it
    stays eligible and the key is used at least every ``timeout`` seconds. When the
    endpoint is ejected or removed the key moves to its next choice and stays there (like
    ``sessionAffinity: ClientIP``; it does not snap back when the old pod returns). After
    ``timeout`` idle seconds the key is hashed afresh -- which, unless the set changed,
    gives the same endpoint anyway.

    The memory holds at most ``max_keys`` keys in two generations of plain dicts (new
    and used keys go to the young one; when it holds half of ``max_keys`` it becomes the
    old one and the previous old one is dropped; a key found in the old one moves back to
    the young one), so the keys dropped are the ones unused for longest, as with an LRU,
    at a plain dict's cost. A key forgotten early is simply re-hashed, so the bound
    costs stickiness only after set changes. Picks without a key fall back to round
    robin. A retry (``avoid`` is the key's endpoint) goes to the key's runner-up without
    changing the remembered choice.
    """

    __slots__ = (
        "_clock",
        "_fallback",
        "_half",
        "_lock",
        "_old",
        "_ring",
        "_rotated",
        "_table",
        "_timeout",
        "_touched",
        "_young",
    )

    def __init__(
        self,
        rng: random.Random,
        clock: Callable[[], float],
        timeout: float,
        max_keys: int = 65536,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._half = max(1, max_keys // 2)
        self._fallback = RoundRobin(rng)
        # key -> [endpoint, last used]: a list, not an object, as a new key pays its build.
        self._young: dict[str, list[Any]] = {}
        self._old: dict[str, list[Any]] = {}
        # When the young generation became the old one, and when any key was last used:
        # every old key has been idle since _rotated, every key at all since _touched.
        self._rotated = self._touched = clock()
        self._lock = threading.Lock()
        self._ring = HashRing(())
        # The ring and, by slot, the eligible endpoints on it (a slot not in the dict is
        # skipped); replaced as one tuple so a pick never sees half an update.
        self._table: _Table = (self._ring, {}, frozenset(), *self._ring.tables())

    def rebuild(self, eligible: tuple[Endpoint, ...]) -> None:
        """Replace the candidates; the ring itself is rebuilt only for new endpoints.

        Ejected or removed endpoints stay on the ring and are skipped, which gives the same
        choices as a ring without them; once more than half the ring is skipped it is
        rebuilt to keep lookups short.
        """
        ring = self._ring
        slots = ring.slots
        if any(ep.key not in slots for ep in eligible) or 2 * len(eligible) < len(ring):
            ring = self._ring = HashRing([ep.key for ep in eligible])
            slots = ring.slots
        by_slot = {slots[ep.key]: ep for ep in eligible}
        self._table = (ring, by_slot, frozenset(ep.key for ep in eligible), *ring.tables())
        self._fallback.rebuild(eligible)

    def __len__(self) -> int:
        """Number of remembered keys."""
        return len(self._young) + len(self._old)

    def pick(self, affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """The key's endpoint (see the class docstring); round robin without a key."""
        if affinity_key is None:
            return self._fallback.pick(None, avoid)
        ring, by_slot, members, first, positions, owners, shift = self._table
        if not by_slot:
            raise LookupError(_EMPTY)
        now = self._clock()
        # acquire/release, not ``with``: half the cost of a lock on a CPython 3.11 pick.
        lock = self._lock
        lock.acquire()
        try:
            young = self._young
            entry = young.get(affinity_key)
            if entry is None:
                entry = self._old.pop(affinity_key, None)
                if entry is not None:  # used again: back to the young generation
                    young = self._room(now)
                    young[affinity_key] = entry
            if entry is not None:
                if now - entry[1] >= self._timeout or entry[0].key not in members:
                    entry[0] = by_slot[ring.owner_of(affinity_key, by_slot)]
                entry[1] = now
                ep: Endpoint = entry[0]
            else:
                # HashRing.owner_of inlined (a new key's hot path): the CRC-32 of the key,
                # its bucket, a step or two to the first point at or after it.
                try:
                    h = crc32(affinity_key.encode())
                except UnicodeEncodeError:
                    h = crc(affinity_key)
                i = first[h >> shift]
                while positions[i] < h:  # the sentinel stops it
                    i += 1
                slot = owners[i]
                ep = (
                    by_slot[slot]
                    if slot in by_slot
                    else by_slot[ring.owner_of(affinity_key, by_slot)]
                )
                if len(young) >= self._half or now - self._rotated >= self._timeout:
                    young = self._room(now)
                young[affinity_key] = [ep, now]
            self._touched = now
        finally:
            lock.release()
        if avoid is not None and len(by_slot) > 1 and ep.key == avoid.key:
            ep = by_slot[ring.owner(key_hash(affinity_key), by_slot, ring.slots[ep.key])]
        return ep

    def _room(self, now: float) -> dict[str, list[Any]]:
        """The young generation, with room for one more key (rotated or emptied as due)."""
        timeout = self._timeout
        if now - self._rotated >= timeout:  # the old keys all idle a whole timeout
            self._old = {}
            self._rotated = now  # (nothing old is left to age)
            if now - self._touched >= timeout:  # and the young ones too: forget all
                self._young = {}
        if len(self._young) >= self._half:
            self._old = self._young
            self._young = {}
            self._rotated = now
        return self._young
