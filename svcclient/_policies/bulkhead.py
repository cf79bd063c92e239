"""A per-service bulkhead: a limit on calls in flight and on calls waiting for a slot.

Theory of operation
-------------------
One I/O-free core (:class:`_BulkheadCore`) keeps the free slots as a list of tokens and a
FIFO queue of waiters; two short drivers give it a thread flavour (:class:`Bulkhead`, a
lock and one ``threading.Lock`` per waiter as its wake-up call) and an async flavour for
any library anyio runs on, asyncio or trio (:class:`AsyncBulkhead`, one ``anyio.Event``
per waiter).

Free slots are tokens in a list, not a count, because ``list.pop()`` and
``list.append()`` are each atomic under the GIL: the thread flavour takes and gives back
an uncontended slot without its lock (a lock round trip costs more than the rest of the
bulkhead together). Only queueing, handing over and giving up take the lock. A lock-free
release appends its token *first* and looks for waiters *second*, while a thread that
queues enqueues first and looks for tokens second, each step atomic: one of the two sees
the other, so no waiter sleeps while a slot is free.

* A caller takes a free slot at once, unless someone is already queued (no barging: a
  newcomer must not overtake a waiter).
* Otherwise it queues if fewer than ``max_waiting`` wait, and else is refused at once
  with :class:`~svcclient.BulkheadFullError`.
* A release with waiters queued hands the slot directly to the oldest waiter (the count
  of calls in flight does not change); with nobody queued the slot is freed.
* A waiter that gives up (timeout, cancellation) removes its token. If the token is gone,
  a release has already handed it a slot, and it must use or release that slot: this is
  what makes timeouts and cancellation leak-free.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from .. import _loop_timer as _lt
from .._exceptions import BulkheadFullError
from .._validate import check_count, check_seconds

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncBulkhead", "Bulkhead", "BulkheadPolicy"]

_W = TypeVar("_W")


@dataclass(frozen=True, slots=True)
class BulkheadPolicy:
    """Limits for a :class:`Bulkhead` / :class:`AsyncBulkhead`.

    * ``max_concurrent`` (1024): calls in flight at once; at least 1.
    * ``max_waiting`` (1024): calls allowed to queue for a slot; 0 refuses at once when full.
    * ``wait_timeout`` (1.0 s): how long a queued call waits before it is refused;
      0 refuses at once when full.

    >>> BulkheadPolicy(max_concurrent=10, max_waiting=0).max_waiting
    0
    """

    max_concurrent: int = 1024
    max_waiting: int = 1024
    wait_timeout: float = 1.0

    def __post_init__(self) -> None:
        check_count("max_concurrent", self.max_concurrent)
        check_count("max_waiting", self.max_waiting, low=0)
        check_seconds("wait_timeout", self.wait_timeout, zero=True)


def _wait(policy: BulkheadPolicy, timeout: float | None) -> float:
    wait = policy.wait_timeout
    return wait if timeout is None or timeout >= wait else max(timeout, 0.0)


class _BulkheadCore(Generic[_W]):
    """Free-slot tokens and the waiter queue; no locking, no waiting, no clock.

    The async driver calls it from its event loop; the thread driver under its lock,
    except :meth:`try_acquire` and the :meth:`free_slot` / :meth:`hand_over` pair, which
    are safe without it (see the module docstring).
    """

    __slots__ = ("free", "max_concurrent", "max_waiting", "waiters")

    def __init__(self, policy: BulkheadPolicy) -> None:
        self.max_concurrent = policy.max_concurrent
        self.max_waiting = policy.max_waiting
        self.free: list[None] = [None] * policy.max_concurrent  # one token per free slot
        self.waiters: deque[_W] = deque()

    @property
    def in_flight(self) -> int:
        """Slots taken (held by a call, or handed to a waiter)."""
        return self.max_concurrent - len(self.free)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody is queued ahead."""
        if self.waiters:
            return False
        try:
            self.free.pop()
        except IndexError:
            return False
        return True

    def forget(self) -> None:
        """Every slot free and nobody queued, in place (a forked child: the slots and
        queue places are the parent's callers', who are not in the child). In place, so
        whatever holds the core or its bound methods sees the reset."""
        self.free[:] = [None] * self.max_concurrent
        self.waiters.clear()

    def enqueue(self, waiter: _W) -> bool:
        """Queue ``waiter`` for the next free slot; False when the queue is full."""
        if len(self.waiters) >= self.max_waiting:
            return False
        self.waiters.append(waiter)
        return True

    def release(self) -> _W | None:
        """Give up a slot: returns the waiter it was handed to, or None if it was freed."""
        if self.waiters:
            return self.waiters.popleft()
        self.free_slot()
        return None

    def free_slot(self) -> None:
        """Put a slot's token back (with nobody queued, or before :meth:`hand_over`)."""
        free = self.free
        if len(free) >= self.max_concurrent:
            raise RuntimeError("bulkhead released more times than acquired")
        free.append(None)

    def hand_over(self) -> list[_W]:
        """Give free tokens to queued waiters, oldest first; returns the waiters served."""
        served = []
        free, waiters = self.free, self.waiters
        while waiters and free:
            free.pop()
            served.append(waiters.popleft())
        return served

    def withdraw(self, waiter: _W) -> bool:
        """Remove a waiter that gives up; False if it was already handed a slot."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return False
        return True


def _full(service: str | None, core: _BulkheadCore[_W]) -> BulkheadFullError:
    return BulkheadFullError(
        f"{service or 'call'}: bulkhead full "
        f"({core.in_flight}/{core.max_concurrent} in flight, "
        f"{len(core.waiters)}/{core.max_waiting} waiting)",
        service=service,
    )


def _timed_out(service: str | None, timeout: float) -> BulkheadFullError:
    return BulkheadFullError(
        f"{service or 'call'}: no bulkhead slot freed within {timeout:g}s", service=service
    )


class Bulkhead:
    """A thread-safe bulkhead for synchronous code.

    >>> bulkhead = Bulkhead(BulkheadPolicy(max_concurrent=2), service="users")
    >>> with bulkhead:
    ...     bulkhead.in_flight
    1
    """

    __slots__ = ("_core", "_lock", "policy", "service", "try_acquire")

    try_acquire: Callable[[], bool]
    """Take a free slot if there is one and nobody is queued; never waits, takes no lock
    (one atomic ``pop``; see the module docstring). The core's own method: one call.
    ``acquire()`` is for when this says False."""

    def __init__(self, policy: BulkheadPolicy | None = None, service: str | None = None) -> None:
        self.policy = policy if policy is not None else BulkheadPolicy()
        self.service = service
        self._core: _BulkheadCore[threading.Lock] = _BulkheadCore(self.policy)
        self.try_acquire = self._core.try_acquire
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._core.in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for a slot now."""
        return len(self._core.waiters)

    def acquire(self, timeout: float | None = None) -> None:
        """Take a slot, waiting up to ``wait_timeout`` if the queue has room.

        ``timeout`` (e.g. the caller's deadline) can only shorten ``wait_timeout``.
        Raises :class:`~svcclient.BulkheadFullError` at once when the queue is full, or
        when no slot is handed over within the wait.
        """
        core = self._core
        with self._lock:
            if core.try_acquire():
                return
            timeout = _wait(self.policy, timeout)
            if timeout <= 0:
                raise _full(self.service, core)
            token = threading.Lock()
            token.acquire()  # held until a release hands us the slot
            if not core.enqueue(token):
                raise _full(self.service, core)
            # A lock-free release may have put a token back after our try and before our
            # enqueue, without seeing us: serve the queue (perhaps us) from it now.
            for waiter in core.hand_over():
                waiter.release()
        try:
            got = token.acquire(timeout=timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt in the main thread): leave the queue, and pass
            # the slot on if a release handed it to us meanwhile.
            with self._lock:
                handed_over = not core.withdraw(token)
            if handed_over:
                self.release()
            raise
        if got:
            return
        with self._lock:
            if core.withdraw(token):
                raise _timed_out(self.service, timeout)
        # A release handed us the slot between our timeout and taking the lock: keep it.

    def release(self) -> None:
        """Give the slot back (to the oldest waiter if any).

        With nobody queued (the common case) the token goes back without the lock; a
        waiter that queued meanwhile is then served from the free tokens under the lock.
        """
        core = self._core
        if core.waiters:
            with self._lock:
                token = core.release()
            if token is not None:
                token.release()
            return
        core.free_slot()
        if core.waiters:  # queued after we looked: serve it from the token just freed
            with self._lock:
                served = core.hand_over()
            for waiter in served:
                waiter.release()

    def __enter__(self) -> Bulkhead:
        if not self.try_acquire():
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _after_fork_in_child(self) -> None:
        # Called by svcclient._transports.forksafe (with a fresh lock in place): the slots
        # and queue places belong to the parent's threads, which the child does not have.
        self._core.forget()

    def __repr__(self) -> str:
        return (
            f"Bulkhead(service={self.service!r}, in_flight={self.in_flight}, "
            f"waiting={self.waiting}, policy={self.policy!r})"
        )


class _Waiter:
    """One queued task, woken by :meth:`wake` once a release handed it a slot
    (``granted``) or, on asyncio, by its timer (not granted).

    On asyncio it waits on a plain future with one timer handle: anyio's event and
    cancel scope cost several times more, and in a burst most calls queue here (the
    pool's bulkhead holds them to the connection limit). Elsewhere (trio) it waits on
    an anyio event under a cancel scope.
    """

    __slots__ = ("event", "future", "granted")

    def __init__(self, future: asyncio.Future[None] | None) -> None:
        self.future = future
        if future is None:
            import anyio  # with the async driver, not with svcclient; only when a task queues

            self.event: anyio.Event | None = anyio.Event()
        else:
            self.event = None
        self.granted = False

    def wake(self) -> None:
        """Hand this waiter the slot just released."""
        self.granted = True
        if self.future is not None:
            if not self.future.done():  # its timer may have fired first
                self.future.set_result(None)
        else:
            assert self.event is not None
            self.event.set()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)  # not granted: the waiter gives up


class AsyncBulkhead:
    """A bulkhead for the tasks of one event loop, asyncio or trio (not thread-safe).

    A task cancelled while it waits never leaks a slot: if the slot had already been
    handed over, it is passed on before the cancellation propagates.

    >>> async def call(bulkhead: AsyncBulkhead) -> None:
    ...     async with bulkhead:
    ...         ...  # at most policy.max_concurrent tasks run this at once
    """

    __slots__ = ("_core", "policy", "service", "try_acquire")

    try_acquire: Callable[[], bool]
    """Take a free slot if there is one and nobody is queued; never waits (no coroutine
    to create and await on the uncontended path). The core's own method: one call."""

    def __init__(self, policy: BulkheadPolicy | None = None, service: str | None = None) -> None:
        self.policy = policy if policy is not None else BulkheadPolicy()
        self.service = service
        self._core: _BulkheadCore[_Waiter] = _BulkheadCore(self.policy)
        self.try_acquire = self._core.try_acquire

    @property
    def in_flight(self) -> int:
        """Tasks holding a slot now."""
        return self._core.in_flight

    @property
    def waiting(self) -> int:
        """Tasks queued for a slot now."""
        return len(self._core.waiters)

    async def acquire(self, timeout: float | None = None) -> None:
        """Take a slot, waiting up to ``wait_timeout`` if the queue has room.

        ``timeout`` (e.g. the caller's deadline) can only shorten ``wait_timeout``.
        Raises :class:`~svcclient.BulkheadFullError` at once when the queue is full, or
        when no slot is handed over within the wait.
        """
        core = self._core
        if core.try_acquire():
            return
        timeout = _wait(self.policy, timeout)
        if timeout <= 0:
            raise _full(self.service, core)
        loop = _lt.running_loop()  # None off asyncio (trio)
        waiter = _Waiter(None if loop is None else loop.create_future())
        if not core.enqueue(waiter):
            raise _full(self.service, core)
        # release() and this task run on one event loop, so "hand over" and "give up"
        # never interleave: ``granted`` says which came first.
        try:
            if waiter.future is not None:
                assert loop is not None
                timer = loop.call_later(timeout, _expire, waiter.future)
                try:
                    await waiter.future
                finally:
                    timer.cancel()
            else:
                import anyio

                assert waiter.event is not None
                with anyio.move_on_after(timeout):
                    await waiter.event.wait()
        except BaseException:
            if not core.withdraw(waiter) and waiter.granted:
                # Handed a slot, then cancelled before we could run: pass the slot on.
                self.release()
            raise
        if waiter.granted:
            return
        core.withdraw(waiter)
        raise _timed_out(self.service, timeout)

    def release(self) -> None:
        """Give the slot back (to the oldest waiting task if any)."""
        waiter = self._core.release()
        if waiter is not None:
            waiter.wake()

    async def __aenter__(self) -> AsyncBulkhead:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _after_fork_in_child(self) -> None:
        # The parent's tasks (and their events, of the parent's loop) are not in the child.
        self._core.forget()

    def __repr__(self) -> str:
        return (
            f"AsyncBulkhead(service={self.service!r}, in_flight={self.in_flight}, "
            f"waiting={self.waiting}, policy={self.policy!r})"
        )
