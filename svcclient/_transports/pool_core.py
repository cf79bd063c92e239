"""The accounting of svcclient's HTTP/1.1 connection pools, without I/O.

Why not httpcore's pool
-----------------------
httpcore 1.0.9's pool counts *every* connection, busy or idle, against
``max_keepalive_connections``, so with 100 connections and a keep-alive limit of 20 nearly
every connection is closed after one request (800-930 new TCP connections per burst of
1,000); and on every change it rescans every connection and every queued request, asking
each idle socket whether it is readable (quadratic over a burst). A burst of 1,000 calls
then spends its 3 s deadline dialling and scanning.

Theory of operation
-------------------
A pool owns ``max_connections`` *slots*; a slot is a connection that is open, being
opened, or busy. Idle connections sit on a stack (LIFO: the most recently used is the
warmest and the least likely to have been closed by the server); callers that find no
idle connection and no free slot queue as *waiters*, first come first served.

* :meth:`take`: pop idle connections until one is ``usable`` (the only connection whose
  socket is asked anything); the dead ones give their slot back. Else take a free slot
  (the caller dials), else return None (the caller queues a waiter with :meth:`enqueue`).
* :meth:`give_back`: a reusable connection goes to the first waiter, else onto the stack
  when fewer than ``max_idle`` are idle (the keep-alive limit counts idle connections
  only), else it is closed. A connection that is not reusable frees its slot, which goes
  to the first waiter (who dials). So while anyone waits there is no idle connection and
  no free slot, and hand-out and return are O(1).
* :meth:`abandon`: a waiter that gives up (cancelled, timed out) leaves the queue; if it
  was granted something meanwhile, that connection or slot is given back as above, so a
  cancelled waiter never leaks either.
* Idle connections older than ``keepalive_expiry`` are dropped from the bottom of the
  stack, one look per :meth:`give_back` (arithmetic on the time they went idle).

The drivers (:mod:`.pool`) hold a lock around these calls (threads) or none (one event
loop), and do the I/O: dialling, closing what these calls return, waking waiters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["NEW", "PoolCore", "Waiter"]

C = TypeVar("C")


class _New:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEW"


NEW = _New()
"""What :meth:`PoolCore.take` returns for "a slot is yours: dial a new connection"."""


class Waiter(Generic[C]):
    """A queued caller. ``granted`` once given a connection (``conn``) or a slot
    (``conn`` None); the driver then wakes it (``wake`` is the driver's, e.g. an event)."""

    __slots__ = ("conn", "granted", "wake")

    def __init__(self, wake: object = None) -> None:
        self.conn: C | None = None
        self.granted = False
        self.wake = wake


class PoolCore(Generic[C]):
    """Slots, the idle stack and the waiter queue of one pool (see the module docs)."""

    __slots__ = (
        "closed",
        "idle",
        "idle_since",
        "keepalive_expiry",
        "linger",
        "max_connections",
        "max_idle",
        "slots",
        "waiters",
    )

    def __init__(
        self,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float | None,
        linger: float = 0.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.max_idle = max(0, min(max_idle, max_connections))
        self.keepalive_expiry = keepalive_expiry
        self.linger = linger
        self.slots = 0
        self.idle: deque[C] = deque()
        self.idle_since: deque[float] = deque()
        self.waiters: deque[Waiter[C]] = deque()
        self.closed = False

    def take(self, usable: Callable[[C], bool], dead: list[C]) -> C | _New | None:
        """An idle connection that is ``usable``, :data:`NEW` (a slot: dial), or None
        (queue). Idle connections found unusable are appended to ``dead`` (to close)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            self.idle_since.pop()
            if usable(conn):
                return conn
            dead.append(conn)
            self.slots -= 1
        if self.slots < self.max_connections:
            self.slots += 1
            return NEW
        return None

    def enqueue(self, waiter: Waiter[C]) -> None:
        """Queue ``waiter`` (after :meth:`take` returned None, under the same lock)."""
        self.waiters.append(waiter)

    def give_back(self, conn: C, reusable: bool, now: float, dead: list[C]) -> Waiter[C] | None:
        """Return a connection after use. Returns the waiter to wake, if any; what must
        be closed is appended to ``dead``."""
        if self.closed:
            self.slots -= 1
            dead.append(conn)
            return None
        self._expire(now, dead)
        waiters = self.waiters
        if not reusable:
            self.slots -= 1
            if waiters:
                waiter = waiters.popleft()
                waiter.granted = True  # a slot: the waiter dials
                self.slots += 1
                return waiter
            return None
        if waiters:
            waiter = waiters.popleft()
            waiter.conn = conn
            waiter.granted = True
            return waiter
        self.idle.append(conn)
        self.idle_since.append(now)
        if len(self.idle) > self.max_idle:
            self._trim(now, dead)
        return None

    def release_slot(self) -> Waiter[C] | None:
        """Give back a slot :meth:`take` granted that never became a connection (the dial
        failed or was cancelled). Returns the waiter to wake, if any."""
        self.slots -= 1
        if self.waiters and not self.closed:
            waiter = self.waiters.popleft()
            waiter.granted = True
            self.slots += 1
            return waiter
        return None

    def abandon(self, waiter: Waiter[C], now: float, dead: list[C]) -> Waiter[C] | None:
        """``waiter`` gives up. Whatever it was granted meanwhile is given back; returns
        the next waiter to wake, if any."""
        if not waiter.granted:
            self.waiters.remove(waiter)  # O(n), only on cancellation
            return None
        conn, waiter.conn = waiter.conn, None
        if conn is None:
            return self.release_slot()
        return self.give_back(conn, True, now, dead)

    def close(self) -> tuple[list[C], list[Waiter[C]]]:
        """Close the pool: the idle connections to close, the waiters to wake (each
        ``granted`` with no connection and no slot: they see the pool is closed)."""
        self.closed = True
        idle = list(self.idle)
        self.idle.clear()
        self.idle_since.clear()
        self.slots -= len(idle)
        waiters = list(self.waiters)
        self.waiters.clear()
        for waiter in waiters:
            waiter.granted = True
        return idle, waiters

    def _trim(self, now: float, dead: list[C]) -> None:
        # Surplus idle connections (above max_idle) close once idle for ``linger``: a
        # burst's returns bunch up for an instant (many answers read in one loop turn
        # before the callers queued behind them run), and closing the surplus then would
        # make those callers dial again.
        since, idle, linger = self.idle_since, self.idle, self.linger
        while len(idle) > self.max_idle and now - since[0] >= linger:
            since.popleft()
            dead.append(idle.popleft())
            self.slots -= 1

    def _expire(self, now: float, dead: list[C]) -> None:
        expiry = self.keepalive_expiry
        since = self.idle_since
        if expiry is not None and since and now - since[0] > expiry:
            since.popleft()
            dead.append(self.idle.popleft())
            self.slots -= 1
