"""CircuitBreaker around callables: sync/async calls, timeouts, fallbacks, decorators."""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from svcclient._exceptions import CallTimeoutError, CircuitOpenError
from svcclient._policies.breaker.guard import CircuitBreaker
from svcclient._policies.breaker.machine import CLOSED, DISABLED, HALF_OPEN, OPEN


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test here runs under asyncio and under trio."""
    return str(request.param)


class Interrupt(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit without stopping pytest."""


def double(x: int, *, plus: int = 0) -> int:
    return 2 * x + plus


# -- sync ---------------------------------------------------------------------------------


def test_sync_call_passes_arguments_and_counts_success() -> None:
    """breaker(x) calls the function with the same arguments and counts a success."""
    b = CircuitBreaker(double, clock=FakeClock())
    assert b(3, plus=1) == 7
    assert (b.stats.calls, b.stats.failures) == (1, 0)
    assert b.name == "double"


def test_sync_failure_propagates_and_counts() -> None:
    """Without a fallback the function's exception reaches the caller and is counted."""
    clock = FakeClock()

    def fails(x: int) -> int:
        clock.advance(0.5)
        raise Boom(x)

    b = CircuitBreaker(fails, clock=clock)
    durations: list[tuple[float, Any]] = []
    b.on("failure", lambda d, cause: durations.append((d, cause)))
    with pytest.raises(Boom):
        b(1)
    assert b.stats.failures == 1
    assert durations[0][0] == 0.5 and isinstance(durations[0][1], Boom)


def test_fallback_gets_args_and_cause_on_failure() -> None:
    """The fallback receives the call's arguments plus cause= and its result is returned."""
    seen: list[Any] = []

    def fails(x: int, *, plus: int = 0) -> int:
        raise Boom("down")

    b = CircuitBreaker(fails, clock=FakeClock())
    b.on("fallback", lambda result, cause: seen.append(("event", result, type(cause))))

    @b.fallback
    def cached(x: int, *, plus: int = 0, cause: BaseException) -> int:
        seen.append((x, plus, type(cause)))
        return -1

    assert b(5, plus=2) == -1
    assert seen == [(5, 2, Boom), ("event", -1, Boom)]


def test_rejection_raises_circuit_open_without_calling() -> None:
    """An open breaker raises CircuitOpenError(name, retry_after) and never calls."""
    clock = FakeClock()
    called: list[int] = []
    b = CircuitBreaker(called.append, name="users", clock=clock, reset_timeout=30.0)
    b.open()
    clock.advance(10.0)
    with pytest.raises(CircuitOpenError) as info:
        b(1)
    assert called == []
    assert info.value.service == "users"
    assert info.value.retry_after == pytest.approx(20.0)
    assert b.stats.rejects == 1


def test_rejection_uses_fallback_with_circuit_open_cause() -> None:
    """With a fallback, a rejected call returns the fallback's answer."""
    b = CircuitBreaker(double, clock=FakeClock(), fallback=lambda x, cause: ("cached", x, cause))
    rejects: list[str] = []
    b.on("reject", lambda: rejects.append("reject"))
    b.open()
    tag, x, cause = b(4)
    assert (tag, x) == ("cached", 4)
    assert isinstance(cause, CircuitOpenError)
    assert rejects == ["reject"]


def test_not_a_failure_counts_as_success_and_still_raises() -> None:
    """is_failure=False: the exception propagates, counted as a success, no fallback."""

    def not_found(x: int) -> int:
        raise LookupError(x)

    b = CircuitBreaker(
        not_found,
        clock=FakeClock(),
        is_failure=lambda exc: not isinstance(exc, LookupError),
        fallback=lambda x, cause: "fallback",
    )
    with pytest.raises(LookupError):
        b(1)
    assert (b.stats.calls, b.stats.failures) == (1, 0)


def test_is_failure_that_raises_counts_as_failure(caplog: pytest.LogCaptureFixture) -> None:
    """A buggy is_failure predicate is logged and the exception counts as a failure."""

    def bad_predicate(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    def fails() -> None:
        raise Boom

    b = CircuitBreaker(fails, clock=FakeClock(), is_failure=bad_predicate)
    with caplog.at_level(logging.ERROR, logger="svcclient"), pytest.raises(Boom):
        b()
    assert b.stats.failures == 1
    assert any(r.name == "svcclient" for r in caplog.records)


def test_sync_trips_after_enough_failures_then_rejects_fast() -> None:
    """Failures through the wrapper open it; later calls are rejected without calling."""
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    b = CircuitBreaker(flaky, clock=FakeClock(), volume_threshold=3)
    for _ in range(3):
        with pytest.raises(Boom):
            b()
    assert b.state == OPEN
    with pytest.raises(CircuitOpenError):
        b()
    assert calls == 3


def test_half_open_probe_through_wrapper_closes() -> None:
    """After reset_timeout one call goes through as the probe and closes the breaker."""
    clock = FakeClock()
    b = CircuitBreaker(double, clock=clock, reset_timeout=5.0)
    b.open()
    clock.advance(5.0)
    assert b(2) == 4
    assert b.state == CLOSED


def test_half_open_probe_interrupted_frees_its_slot() -> None:
    """A BaseException (no verdict) releases the probe slot and propagates."""
    clock = FakeClock()
    mode = ["interrupt"]

    def fn() -> str:
        if mode[0] == "interrupt":
            raise Interrupt
        return "ok"

    b = CircuitBreaker(fn, clock=clock, reset_timeout=5.0)
    b.open()
    clock.advance(5.0)
    with pytest.raises(Interrupt):
        b()
    assert b.state == HALF_OPEN
    mode[0] = "ok"
    assert b() == "ok"
    assert b.state == CLOSED


def test_slow_sync_call_is_counted_slow() -> None:
    """A call slower than slow_call_duration (but within timeout) counts as slow."""
    clock = FakeClock()

    def slow() -> str:
        clock.advance(2.0)
        return "done"

    b = CircuitBreaker(slow, clock=clock, slow_call_duration=1.0, timeout=None)
    assert b() == "done"
    assert (b.stats.calls, b.stats.slow_calls, b.stats.failures) == (1, 1, 0)


def test_disabled_calls_straight_through_uncounted() -> None:
    """A disabled breaker calls the function and counts nothing, failures included."""

    def fails() -> None:
        raise Boom

    b = CircuitBreaker(fails, clock=FakeClock(), volume_threshold=1)
    b.disable()
    for _ in range(3):
        with pytest.raises(Boom):
            b()
    assert b.state == DISABLED and b.stats.calls == 0


def test_success_event_from_the_wrapper() -> None:
    """The wrapper's fast path still announces success with the duration."""
    clock = FakeClock()

    def work() -> int:
        clock.advance(0.25)
        return 1

    b = CircuitBreaker(work, clock=clock)
    got: list[float] = []
    b.on("success", got.append)
    b()
    assert got == [0.25]


# -- sync timeouts ------------------------------------------------------------------------


def test_sync_timeout_without_executor_is_judged_after_the_call() -> None:
    """A sync call that ran past timeout: result discarded, CallTimeoutError, no thread."""
    clock = FakeClock()

    def slow() -> str:
        clock.advance(3.5)
        return "late"

    b = CircuitBreaker(slow, clock=clock, timeout=3.0)
    events: list[str] = []
    b.on("timeout", lambda d: events.append(f"timeout {d}"))
    threads_before = threading.active_count()
    with pytest.raises(CallTimeoutError) as info:
        b()
    assert isinstance(info.value, TimeoutError)
    assert (
        info.value.timeout == 3.0
        and info.value.service
        == "test_sync_timeout_without_executor_is_judged_after_the_call.<locals>.slow"
    )
    assert b.stats.failures == 1
    assert events == ["timeout 3.5"]
    assert threading.active_count() == threads_before


def test_sync_error_after_timeout_is_a_timeout() -> None:
    """An exception raised after the timeout surfaces as CallTimeoutError from it."""
    clock = FakeClock()

    def slow_fail() -> None:
        clock.advance(4.0)
        raise Boom

    b = CircuitBreaker(slow_fail, clock=clock, timeout=3.0)
    with pytest.raises(CallTimeoutError) as info:
        b()
    assert isinstance(info.value.__cause__, Boom)


def test_sync_timeout_uses_fallback() -> None:
    """With a fallback, a timed-out call returns the fallback's answer."""
    clock = FakeClock()

    def slow() -> str:
        clock.advance(10.0)
        return "late"

    def kind(*, cause: BaseException) -> type[BaseException]:
        return type(cause)

    b = CircuitBreaker(slow, clock=clock, timeout=1.0, fallback=kind)
    assert b() is CallTimeoutError


def test_executor_bounds_the_wait_and_threads() -> None:
    """With executor=, the caller gets CallTimeoutError at the deadline; threads stay bounded."""
    release = threading.Event()

    def blocks(i: int) -> int:
        release.wait(10)
        return i

    before = threading.active_count()
    with ThreadPoolExecutor(max_workers=2) as pool:
        b = CircuitBreaker(blocks, timeout=0.05, executor=pool, volume_threshold=100)
        for i in range(6):
            with pytest.raises(CallTimeoutError):
                b(i)
        assert threading.active_count() <= before + 2
        assert b.stats.failures == 6
        release.set()
    assert threading.active_count() == before


def test_executor_success_and_failure_paths() -> None:
    """Calls in the executor return results and propagate errors like direct calls."""

    def maybe(x: int) -> int:
        if x < 0:
            raise Boom
        return x

    with ThreadPoolExecutor(max_workers=1) as pool:
        b = CircuitBreaker(maybe, timeout=5.0, executor=pool)
        assert b(3) == 3
        with pytest.raises(Boom):
            b(-1)
        assert (b.stats.calls, b.stats.failures) == (2, 1)


def test_executor_shut_down_releases_and_raises() -> None:
    """A submit to a shut-down executor raises and leaves no probe slot taken."""
    clock = FakeClock()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    b = CircuitBreaker(double, clock=clock, timeout=1.0, executor=pool, reset_timeout=1.0)
    b.open()
    clock.advance(1.0)
    with pytest.raises(RuntimeError):
        b(1)
    assert b.allow()  # the probe slot was given back


# -- decorators ---------------------------------------------------------------------------


def test_decorator_on_def_keeps_name_and_doc() -> None:
    """@CircuitBreaker(...) returns the breaker, named and documented like the function."""

    @CircuitBreaker(timeout=None, clock=FakeClock())
    def get_user(user_id: int) -> dict[str, int]:
        """Fetch a user."""
        return {"id": user_id}

    assert isinstance(get_user, CircuitBreaker)
    assert get_user(7) == {"id": 7}
    assert get_user.__name__ == "get_user"  # type: ignore[attr-defined]
    assert get_user.__doc__ == "Fetch a user."
    assert get_user.name.endswith("get_user")
    assert get_user.stats.calls == 1


def test_decorator_on_method_binds_self() -> None:
    """Decorating a method works like the method it replaced."""

    class Service:
        def __init__(self) -> None:
            self.base = 10

        @CircuitBreaker(clock=FakeClock())
        def add(self, x: int) -> int:
            return self.base + x

    svc = Service()
    assert svc.add(5) == 15
    assert Service.add.stats.calls == 1


def test_breaker_without_function_cannot_be_called() -> None:
    """Calling a function-less breaker with arguments is a TypeError."""
    b = CircuitBreaker(name="bare")
    with pytest.raises(TypeError, match="no function"):
        b(1, 2)


def test_breaker_binds_only_once() -> None:
    """A breaker guards one function."""
    b = CircuitBreaker(double)
    with pytest.raises(TypeError):
        b._bind(double)


def test_async_fallback_for_sync_function_is_refused() -> None:
    """An async fallback cannot answer for a sync function."""

    async def fb(*, cause: BaseException) -> None:
        return None

    b = CircuitBreaker(double)
    with pytest.raises(TypeError, match="async fallback"):
        b.fallback(fb)
    with pytest.raises(TypeError, match="async fallback"):
        CircuitBreaker(fallback=fb)(double)


# -- fallback signatures ------------------------------------------------------------------


def _open(b: CircuitBreaker) -> CircuitBreaker:
    b.open()
    return b


def test_seed_style_fallback_takes_no_arguments() -> None:
    """breaker.fallback(lambda: {...}) answers a rejection and a failure with no arguments."""

    def fails(user_id: int) -> dict[str, object]:
        raise Boom

    b = CircuitBreaker(fails, clock=FakeClock())
    b.fallback(lambda: {"id": 0, "cached": True})
    assert b(7) == {"id": 0, "cached": True}  # failure
    assert _open(b)(7) == {"id": 0, "cached": True}  # rejection


def test_fallback_with_the_calls_arguments_only() -> None:
    """A fallback with the function's arity gets the call's arguments and keywords."""
    b = _open(CircuitBreaker(double, clock=FakeClock()))
    b.fallback(lambda x, plus=0: ("fb", x, plus))
    assert b(3, plus=2) == ("fb", 3, 2)


def test_fallback_with_arguments_then_cause_opossum_order() -> None:
    """One positional more than the function: the cause comes last, positionally."""
    seen: list[object] = []

    def fb(x: int, err: BaseException, *, plus: int = 0) -> str:
        seen.append((x, type(err), plus))
        return "fb"

    b = _open(CircuitBreaker(double, clock=FakeClock(), fallback=fb))
    assert b(4, plus=1) == "fb"
    assert seen == [(4, CircuitOpenError, 1)]


def test_fallback_with_star_args_gets_arguments_and_cause() -> None:
    """A *args fallback receives the call's arguments and the cause last."""
    b = _open(CircuitBreaker(double, clock=FakeClock()))
    b.fallback(lambda *args: args)
    x, cause = b(5)
    assert x == 5 and isinstance(cause, CircuitOpenError)


def test_fallback_signature_read_at_bind_when_given_first() -> None:
    """A fallback given before the function (decorator use) is fitted once the function binds."""
    guard = CircuitBreaker(clock=FakeClock(), fallback=lambda x, err: ("fb", x, type(err)))

    @guard
    def fails(x: int) -> int:
        raise Boom

    assert fails(2) == ("fb", 2, Boom)


def test_fallback_that_cannot_fit_is_refused_at_registration() -> None:
    """A fallback needing more than the arguments and the cause is a TypeError at once."""
    b = CircuitBreaker(double, clock=FakeClock())
    with pytest.raises(TypeError, match="needs 3 positional arguments"):
        b.fallback(lambda a, b, c: None)


@pytest.mark.anyio
async def test_async_seed_style_fallback() -> None:
    """An async breaker accepts a zero-argument fallback, sync or async."""

    async def fails(x: int) -> int:
        raise Boom

    b = CircuitBreaker(fails, clock=FakeClock())
    b.fallback(lambda: "sync")
    assert await b(1) == "sync"

    async def answer() -> str:
        return "async"

    b.fallback(answer)
    assert await _open(b)(1) == "async"


# -- async --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_call_and_decorator() -> None:
    """await breaker(x) on a coroutine function; works as a decorator on async def."""

    @CircuitBreaker(clock=FakeClock())
    async def fetch(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x * 3

    assert await fetch(2) == 6
    assert fetch.stats.calls == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="inspect.markcoroutinefunction is 3.12+")
def test_async_breaker_looks_like_a_coroutine_function() -> None:
    """Frameworks that check inspect.iscoroutinefunction see a decorated async def as async."""

    @CircuitBreaker()
    async def fetch() -> None:
        return None

    assert inspect.iscoroutinefunction(fetch)
    assert not inspect.iscoroutinefunction(CircuitBreaker(double))


@pytest.mark.anyio
async def test_async_failure_with_async_fallback() -> None:
    """An async fallback is awaited and answers for a failed call."""

    async def fails(x: int) -> int:
        raise Boom

    b = CircuitBreaker(fails, clock=FakeClock())

    @b.fallback
    async def fb(x: int, *, cause: BaseException) -> str:
        await anyio.lowlevel.checkpoint()
        return f"fallback {x} {type(cause).__name__}"

    assert await b(1) == "fallback 1 Boom"
    assert b.stats.failures == 1


@pytest.mark.anyio
async def test_async_rejection_raises_and_sync_fallback_answers() -> None:
    """An open async breaker raises CircuitOpenError, or returns a sync fallback's value."""

    async def never(x: int) -> int:
        raise AssertionError("must not be called")

    b = CircuitBreaker(never, clock=FakeClock())
    b.open()
    with pytest.raises(CircuitOpenError):
        await b(1)
    b.fallback(lambda x, cause: "cached")
    assert await b(1) == "cached"
    assert b.stats.rejects == 2


@pytest.mark.anyio
async def test_async_timeout_cancels_the_call() -> None:
    """Past the timeout the coroutine is cancelled and CallTimeoutError is raised."""
    cancelled = anyio.Event()
    never = anyio.Event()

    async def hangs() -> None:
        try:
            await never.wait()
        finally:
            cancelled.set()

    b = CircuitBreaker(hangs, timeout=0.01)
    with anyio.fail_after(5):
        with pytest.raises(CallTimeoutError):
            await b()
    assert cancelled.is_set()
    assert b.stats.failures == 1


@pytest.mark.anyio
async def test_async_timeout_judged_on_the_breaker_clock() -> None:
    """A fake clock that says the call ran past timeout makes it a timeout too."""
    clock = FakeClock()

    async def slow() -> str:
        clock.advance(5.0)
        return "late"

    b = CircuitBreaker(slow, clock=clock, timeout=1.0, fallback=lambda cause: "fallback")
    assert await b() == "fallback"
    assert b.stats.failures == 1


@pytest.mark.anyio
async def test_async_not_a_failure_and_no_timeout() -> None:
    """timeout=None runs without a cancel scope; non-failures count as successes."""

    async def missing() -> None:
        raise KeyError("x")

    b = CircuitBreaker(missing, clock=FakeClock(), timeout=None, is_failure=lambda e: False)
    with pytest.raises(KeyError):
        await b()
    assert (b.stats.calls, b.stats.failures) == (1, 0)


@pytest.mark.anyio
async def test_async_outer_cancellation_releases_probe() -> None:
    """A probe cancelled from outside gives no verdict and frees its slot."""
    clock = FakeClock()
    started = anyio.Event()
    never = anyio.Event()

    async def probe() -> str:
        started.set()
        await never.wait()
        return "unreachable"

    b = CircuitBreaker(probe, clock=clock, reset_timeout=1.0, timeout=None)
    b.open()
    clock.advance(1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(b)
        with anyio.fail_after(5):
            await started.wait()
        assert not b.allow()  # the only probe slot is taken
        tg.cancel_scope.cancel()
    assert b.state == HALF_OPEN
    assert b.allow()


@pytest.mark.anyio
async def test_async_disabled_passes_through() -> None:
    """A disabled async breaker awaits the function and counts nothing."""

    async def work() -> int:
        return 1

    b = CircuitBreaker(work, clock=FakeClock())
    b.disable()
    assert await b() == 1
    assert b.stats.calls == 0


@pytest.mark.anyio
async def test_async_timeouts_hit_only_the_calls_that_overrun() -> None:
    """Concurrent calls share the timer: the hung ones time out, the quick ones succeed."""
    never = anyio.Event()
    results: list[str] = []

    async def work(hang: bool) -> str:
        if hang:
            await never.wait()
        await anyio.lowlevel.checkpoint()
        return "ok"

    b = CircuitBreaker(work, timeout=0.05, fallback=lambda hang, cause: type(cause).__name__)

    async def one(hang: bool) -> None:
        results.append(await b(hang))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i % 2 == 0)
    assert sorted(results) == ["CallTimeoutError"] * 3 + ["ok"] * 3
    assert (b.stats.calls, b.stats.failures) == (6, 3)
    with anyio.fail_after(5):  # and the timer re-arms for later calls
        assert await b(True) == "CallTimeoutError"
        assert await b(False) == "ok"


@pytest.mark.anyio
async def test_async_outer_cancel_under_timeout_is_not_a_timeout() -> None:
    """Cancelled from outside while a timeout is armed: no verdict, the cancel goes on."""
    started = anyio.Event()
    never = anyio.Event()

    async def hangs() -> None:
        started.set()
        await never.wait()

    b = CircuitBreaker(hangs, timeout=30.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(b)
            await started.wait()
            tg.cancel_scope.cancel()
    assert (b.stats.calls, b.stats.failures) == (0, 0)


@pytest.mark.anyio
async def test_async_call_that_swallows_the_timeout_still_times_out() -> None:
    """A function that catches the cancellation and returns is still a timeout."""

    async def stubborn() -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            return "swallowed"
        return "slept"

    b = CircuitBreaker(stubborn, timeout=0.05)
    with anyio.fail_after(5):
        with pytest.raises(CallTimeoutError):
            await b()
        # The task itself is not left cancelled: it goes on awaiting.
        await anyio.lowlevel.checkpoint()
    assert b.stats.failures == 1


@pytest.mark.anyio
async def test_async_slow_call_rule_on_the_fake_clock() -> None:
    """The slow-call rule reads the breaker's clock: a fake clock trips it, no sleeping."""
    clock = FakeClock()

    async def slow() -> None:
        clock.advance(2.0)

    b = CircuitBreaker(slow, clock=clock, timeout=None, slow_call_duration=1.0, volume_threshold=2)
    await b()
    await b()
    assert b.state == OPEN and b.stats.slow_calls == 2
