"""Bulkhead: limits for threads and async tasks (asyncio, trio), no slot leaks."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import anyio
import anyio.abc
import pytest

from svcclient._exceptions import BulkheadFullError, ConfigError
from svcclient._policies.bulkhead import AsyncBulkhead, Bulkhead, BulkheadPolicy, _BulkheadCore


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- policy and core ----------------------------------------------------------------------


def test_policy_defaults_and_frozen() -> None:
    """Defaults are 1024 in flight, 1024 waiting, 1 s wait; the policy is immutable."""
    p = BulkheadPolicy()
    assert (p.max_concurrent, p.max_waiting, p.wait_timeout) == (1024, 1024, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_concurrent = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"wait_timeout": -0.1}, "wait_timeout"),
        ({"wait_timeout": float("nan")}, "wait_timeout"),
        ({"wait_timeout": float("inf")}, "wait_timeout"),
        ({"wait_timeout": "1"}, "wait_timeout"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], key: str) -> None:
    """Out-of-range or non-numeric limits raise ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        BulkheadPolicy(**kwargs)
    assert info.value.key == key


def test_core_hands_slot_to_oldest_waiter() -> None:
    """The core frees a slot only when nobody waits; otherwise it hands it over, FIFO."""
    core: _BulkheadCore[str] = _BulkheadCore(BulkheadPolicy(max_concurrent=1, max_waiting=2))
    assert core.try_acquire()
    assert not core.try_acquire()
    assert core.enqueue("a") and core.enqueue("b")
    assert not core.enqueue("c")
    assert core.release() == "a"
    assert core.in_flight == 1
    assert not core.withdraw("a")  # already handed a slot
    assert core.withdraw("b")  # gave up while queued
    assert core.release() is None
    assert core.in_flight == 0
    with pytest.raises(RuntimeError):
        core.release()


def test_core_no_barging() -> None:
    """A newcomer does not take a slot while others are queued."""
    core: _BulkheadCore[str] = _BulkheadCore(BulkheadPolicy(max_concurrent=2, max_waiting=2))
    assert core.try_acquire() and core.in_flight == 1
    core.enqueue("w")
    assert not core.try_acquire()
    assert core.in_flight == 1


def test_core_hand_over_serves_queued_waiters_from_free_tokens() -> None:
    """Tokens freed while waiters are queued (a lock-free release racing a queueing
    thread) go to the waiters, oldest first, as far as they reach."""
    core: _BulkheadCore[str] = _BulkheadCore(BulkheadPolicy(max_concurrent=3, max_waiting=3))
    for _ in range(3):
        assert core.try_acquire()
    for name in "abc":
        assert core.enqueue(name)
    core.free_slot()
    core.free_slot()
    assert core.hand_over() == ["a", "b"]
    assert (core.in_flight, list(core.waiters)) == (3, ["c"])
    assert core.hand_over() == []


class _ReleaseBeforeEnqueue(_BulkheadCore[threading.Lock]):
    """A lock-free release lands between a queueing thread's try and its enqueue."""

    def enqueue(self, waiter: threading.Lock) -> bool:
        self.free_slot()  # the releaser saw no waiter: it just put its token back
        return super().enqueue(waiter)


class _QueueOnAppend(list[None]):
    """Free tokens where a thread queues right after a lock-free release put one back,
    before that release looks for waiters."""

    def __init__(self, waiters: Any, waiter: threading.Lock) -> None:
        super().__init__()
        self.waiters, self.late = waiters, waiter

    def append(self, token: None) -> None:
        super().append(token)
        self.waiters.append(self.late)


def test_sync_lock_free_release_racing_a_queueing_thread_wakes_it() -> None:
    """Either interleaving of a lock-free release with a thread queueing for a slot ends
    with the slot handed to that thread: no waiter sleeps while a slot is free."""
    policy = BulkheadPolicy(max_concurrent=1, max_waiting=1, wait_timeout=30.0)
    bh = Bulkhead(policy)
    bh._core = _ReleaseBeforeEnqueue(policy)
    assert bh.try_acquire()
    started = time.perf_counter()
    bh.acquire()  # served at once from the token put back before it queued
    assert time.perf_counter() - started < 5.0  # generous; a lost wake-up waits 30 s
    assert (bh.in_flight, bh.waiting) == (1, 0)

    late = threading.Lock()
    late.acquire()
    bh = Bulkhead(policy)
    assert bh.try_acquire()
    bh._core.free = _QueueOnAppend(bh._core.waiters, late)
    bh.release()  # put its token back, then found the late waiter: handed over
    assert late.acquire(blocking=False)
    assert (bh.in_flight, bh.waiting) == (1, 0)


# --- threads ------------------------------------------------------------------------------


def test_sync_uncontended_and_context_manager() -> None:
    """acquire/release and the context manager count slots."""
    bh = Bulkhead(BulkheadPolicy(max_concurrent=2), service="users")
    bh.acquire()
    assert bh.in_flight == 1
    with bh as same:
        assert same is bh
        assert bh.in_flight == 2
    bh.release()
    assert bh.in_flight == 0 and bh.waiting == 0
    assert "users" in repr(bh)


def test_try_acquire_takes_only_a_free_unqueued_slot() -> None:
    """The fast path takes a free slot, says False when full or when a waiter is queued
    (no barging), and release hands the slot to that waiter, sync and async alike."""
    policy = BulkheadPolicy(max_concurrent=1, max_waiting=1, wait_timeout=5.0)
    for bh in (Bulkhead(policy), AsyncBulkhead(policy)):
        assert bh.try_acquire() and bh.in_flight == 1
        assert not bh.try_acquire() and bh.in_flight == 1
        bh._core.waiters.append(object())  # type: ignore[arg-type]  # a queued waiter
        bh._core.free.append(None)  # a slot frees up, but the waiter is first in line
        assert not bh.try_acquire()
        bh._core.waiters.clear()
        assert bh.try_acquire()
        bh.release()
        assert bh.in_flight == 0


def test_after_fork_the_child_s_bulkhead_starts_empty_and_works() -> None:
    """The fork hook's reset (forksafe calls ``_after_fork_in_child``): the parent's slots
    are forgotten and every way in and out uses the new state, sync and async."""
    policy = BulkheadPolicy(max_concurrent=2, max_waiting=1, wait_timeout=5.0)
    for bh in (Bulkhead(policy), AsyncBulkhead(policy)):
        assert bh.try_acquire() and bh.try_acquire() and not bh.try_acquire()
        bh._after_fork_in_child()
        assert bh.in_flight == 0
        assert bh.try_acquire() and bh.try_acquire() and not bh.try_acquire()
        assert bh.in_flight == 2
        bh.release()
        bh.release()
        assert bh.in_flight == 0
        with pytest.raises(RuntimeError):
            bh.release()


def test_sync_bulkhead_fork_reset_frees_what_try_acquire_takes() -> None:
    """``try_acquire`` is the core's own (one call on the hot path) and keeps working on
    the core's slots after the fork reset, which is in place."""
    bh = Bulkhead(BulkheadPolicy(max_concurrent=2))
    for _ in range(2):
        assert bh.try_acquire.__self__ is bh._core  # type: ignore[attr-defined]
        assert bh.try_acquire()
        assert bh.in_flight == 1
        bh._after_fork_in_child()
        assert bh.in_flight == 0 and len(bh._core.free) == 2


def test_sync_release_without_acquire_raises() -> None:
    """An unmatched release is a bug and is reported."""
    with pytest.raises(RuntimeError):
        Bulkhead().release()


def test_sync_full_rejects_at_once_with_service() -> None:
    """With the queue full, acquire raises BulkheadFullError immediately, naming the service."""
    bh = Bulkhead(BulkheadPolicy(max_concurrent=1, max_waiting=0, wait_timeout=30.0), "pay")
    bh.acquire()
    started = time.perf_counter()
    with pytest.raises(BulkheadFullError) as info:
        bh.acquire()
    assert time.perf_counter() - started < 5.0  # generous; waiting would take 30 s
    assert info.value.service == "pay"
    assert "pay: bulkhead full (1/1 in flight, 0/0 waiting)" in str(info.value)
    assert bh.in_flight == 1


def test_sync_zero_wait_timeout_rejects_at_once() -> None:
    """wait_timeout=0 refuses without queueing."""
    bh = Bulkhead(BulkheadPolicy(max_concurrent=1, max_waiting=5, wait_timeout=0.0))
    bh.acquire()
    with pytest.raises(BulkheadFullError):
        bh.acquire()
    assert bh.waiting == 0


def test_sync_wait_timeout_raises() -> None:
    """A waiter that gets no slot within wait_timeout raises and leaves the queue."""
    bh = Bulkhead(BulkheadPolicy(max_concurrent=1, max_waiting=1, wait_timeout=0.02), "inv")
    bh.acquire()
    with pytest.raises(BulkheadFullError) as info:
        bh.acquire()
    assert "no bulkhead slot freed within 0.02s" in str(info.value)
    assert info.value.service == "inv"
    assert (bh.in_flight, bh.waiting) == (1, 0)
    bh.release()
    bh.acquire()  # the slot was not leaked
    bh.release()


class _Interrupt(BaseException):
    pass


class _InterruptedToken:
    """Stands in for the per-waiter lock; its timed wait is interrupted."""

    def __init__(self, before: Any) -> None:
        self.before = before

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout == -1:
            return True  # the initial, non-waiting acquire
        self.before()
        raise _Interrupt

    def release(self) -> None:
        pass


@pytest.mark.parametrize("handed_over", [False, True])
def test_sync_interrupted_waiter_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, handed_over: bool
) -> None:
    """A waiter interrupted mid-wait leaves the queue, passing on a slot handed to it."""
    import svcclient._policies.bulkhead as mod

    bh = Bulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=30.0))
    bh.acquire()
    before = bh.release if handed_over else (lambda: None)

    class FakeThreading:
        Lock = staticmethod(lambda: _InterruptedToken(before))

    monkeypatch.setattr(mod, "threading", FakeThreading)
    with pytest.raises(_Interrupt):
        bh.acquire()
    monkeypatch.undo()
    assert bh.waiting == 0
    assert bh.in_flight == (0 if handed_over else 1)


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    # Polls a condition set by other threads; bounded in time, no fixed sleeps.
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def test_sync_threads_never_exceed_limit_and_queue_is_fifo() -> None:
    """Threads beyond the limit queue, are admitted in order, and in-flight never exceeds it."""
    limit, n = 3, 10
    bh = Bulkhead(BulkheadPolicy(max_concurrent=limit, max_waiting=n, wait_timeout=30.0))
    gate = [threading.Event() for _ in range(n)]
    admitted: list[int] = []
    peak = [0]
    guard = threading.Lock()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with bh:
                with guard:
                    admitted.append(i)
                    peak[0] = max(peak[0], bh.in_flight)
                gate[i].wait(timeout=30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = []
    for i in range(n):
        t = threading.Thread(target=worker, args=(i,))
        threads.append(t)
        t.start()
        # Start them one by one so queue order is known.
        _wait_until(lambda i=i: len(admitted) + bh.waiting == i + 1)
    assert bh.in_flight == limit and bh.waiting == n - limit
    assert admitted == [0, 1, 2]
    for i in range(n):
        gate[i].set()
        _wait_until(lambda i=i: len(admitted) == min(n, limit + i + 1))
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert admitted == list(range(n))
    assert peak[0] == limit
    assert bh.in_flight == 0 and bh.waiting == 0


def test_sync_many_threads_hammering() -> None:
    """Under heavy contention the in-flight count stays within the limit and ends at 0."""
    limit = 4
    bh = Bulkhead(BulkheadPolicy(max_concurrent=limit, max_waiting=64, wait_timeout=30.0))
    inside = [0]
    peak = [0]
    guard = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait(timeout=10)
        for _ in range(300):
            with bh:
                with guard:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert 1 <= peak[0] <= limit
    assert bh.in_flight == 0 and bh.waiting == 0


# --- async tasks (asyncio and trio) ------------------------------------------------------


async def _settle() -> None:
    """Let every ready task run until it blocks (both backends)."""
    for _ in range(10):
        await anyio.sleep(0)


class _Acquirer:
    """Holds a slot of ``bh`` in a task of ``tg`` until ``hold`` is set; cancellable.

    ``outcome``: "acquired" (it got the slot; a later cancellation gives it back through
    ``async with``), "full" or "cancelled" (cancelled while it waited)."""

    def __init__(self, tg: anyio.abc.TaskGroup, bh: AsyncBulkhead) -> None:
        self.scope = anyio.CancelScope()
        self.hold = anyio.Event()
        self.outcome: str | None = None
        self.acquired = anyio.Event()
        tg.start_soon(self._run, bh)

    async def _run(self, bh: AsyncBulkhead) -> None:
        with self.scope:
            try:
                async with bh:
                    self.outcome = "acquired"
                    self.acquired.set()
                    await self.hold.wait()
            except BulkheadFullError:
                self.outcome = "full"
        if self.outcome is None:
            self.outcome = "cancelled"


@pytest.mark.anyio
async def test_async_tasks_never_exceed_limit() -> None:
    """Tasks beyond the limit wait; in flight never exceeds it; all finish; nothing leaks."""
    limit = 3
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=limit, max_waiting=50), "svc")
    release = anyio.Event()
    inside = [0]
    peak = [0]

    async def task() -> None:
        async with bh:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            await release.wait()
            inside[0] -= 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(task)
            await _settle()
            assert (bh.in_flight, bh.waiting) == (limit, 17)
            release.set()
    assert peak[0] == limit
    assert (bh.in_flight, bh.waiting) == (0, 0)


@pytest.mark.anyio
async def test_async_full_rejects_at_once() -> None:
    """With the queue full, acquire raises BulkheadFullError without waiting."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, max_waiting=1, wait_timeout=30.0), "a")
    await bh.acquire()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            waiter = _Acquirer(tg, bh)
            await _settle()
            assert bh.waiting == 1
            started = time.perf_counter()
            with pytest.raises(BulkheadFullError) as info:
                await bh.acquire()
            assert time.perf_counter() - started < 5.0  # generous; waiting would take 30 s
            assert info.value.service == "a"
            bh.release()  # handed to the waiter
            await waiter.acquired.wait()
            assert bh.in_flight == 1
            waiter.hold.set()
    assert waiter.outcome == "acquired"
    assert bh.in_flight == 0


@pytest.mark.anyio
async def test_async_zero_wait_timeout_rejects_at_once() -> None:
    """wait_timeout=0 refuses without queueing."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=0.0))
    await bh.acquire()
    with pytest.raises(BulkheadFullError):
        await bh.acquire()
    assert bh.waiting == 0


@pytest.mark.anyio
async def test_async_wait_timeout_raises() -> None:
    """A task that gets no slot within wait_timeout raises and leaves the queue."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=0.02), "inv")
    await bh.acquire()
    with pytest.raises(BulkheadFullError) as info:
        await bh.acquire()
    assert "within 0.02s" in str(info.value)
    assert (bh.in_flight, bh.waiting) == (1, 0)
    bh.release()
    assert bh.in_flight == 0


@pytest.mark.anyio
async def test_async_cancelled_waiter_leaks_nothing() -> None:
    """A waiter cancelled while queued leaves the queue and takes no slot."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=30.0))
    await bh.acquire()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            waiter = _Acquirer(tg, bh)
            await _settle()
            waiter.scope.cancel()
    assert waiter.outcome == "cancelled"
    assert (bh.in_flight, bh.waiting) == (1, 0)
    bh.release()
    assert bh.in_flight == 0


@pytest.mark.anyio
async def test_async_cancel_after_handoff_passes_slot_on() -> None:
    """A waiter handed a slot and cancelled before it resumes gives the slot back."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=30.0))
    await bh.acquire()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            waiter = _Acquirer(tg, bh)
            await _settle()
            bh.release()  # hands the slot to the waiter ...
            waiter.scope.cancel()  # ... which is cancelled before it can run
    # Either way the slot comes back: passed on inside acquire, or by ``async with``.
    assert waiter.outcome in ("cancelled", "acquired")
    assert (bh.in_flight, bh.waiting) == (0, 0)


@pytest.mark.anyio
async def test_async_handoff_skips_a_cancelled_waiter() -> None:
    """A slot handed to a waiter that is then cancelled goes on to the next waiter."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=30.0))
    await bh.acquire()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            first = _Acquirer(tg, bh)
            await _settle()
            second = _Acquirer(tg, bh)
            await _settle()
            assert bh.waiting == 2
            bh.release()  # to first ...
            first.scope.cancel()  # ... cancelled before it resumes: the slot goes on
            await second.acquired.wait()
            assert (bh.in_flight, bh.waiting) == (1, 0)
            second.hold.set()
    assert first.outcome in ("cancelled", "acquired") and second.outcome == "acquired"
    assert (bh.in_flight, bh.waiting) == (0, 0)


@pytest.mark.anyio
async def test_async_timeout_around_acquire() -> None:
    """A caller's own timeout cancelling a queued acquire leaves the bulkhead consistent."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=1, wait_timeout=30.0))
    async with bh:
        with anyio.move_on_after(0.01):
            await bh.acquire()
        assert bh.waiting == 0
    assert bh.in_flight == 0
    async with bh:
        assert bh.in_flight == 1


@pytest.mark.anyio
async def test_async_waits_running_out_as_slots_are_handed_over_leak_nothing() -> None:
    """Waits that run out around the moments releases hand slots over (timer and
    hand-over racing on one loop): every acquire either gets a slot or is refused, and
    nothing is left taken or queued."""
    bh = AsyncBulkhead(BulkheadPolicy(max_concurrent=2, max_waiting=1000, wait_timeout=0.004))
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            await bh.acquire()
        except BulkheadFullError:
            outcomes.append("refused")
            return
        try:
            outcomes.append("acquired")
            await anyio.sleep(0.001 * (i % 3))
        finally:
            bh.release()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(one, i)
                if i % 20 == 0:
                    await anyio.sleep(0.002)
    assert len(outcomes) == 300 and "acquired" in outcomes
    assert (bh.in_flight, bh.waiting) == (0, 0)
    async with bh, bh:  # both slots still there
        assert bh.in_flight == 2
