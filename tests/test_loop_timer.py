"""The async attempt timer on a caller's transport (asyncio: the shared LoopTimer; trio:
a cancel scope): every attempt ends by its bound, an earlier bound re-arms the timer, a
cancellation from outside stays a cancellation, a swallowed one leaves no debt."""

from __future__ import annotations

import asyncio
import time

import anyio
import httpx
import pytest

from svcclient import (
    AsyncServiceClient,
    BulkheadPolicy,
    DeadlineExceeded,
    RetryPolicy,
    ServiceConfig,
)
from svcclient._loop_timer import LoopTimer

URL = "http://user-service:3000"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(handler: object, **overrides: object) -> AsyncServiceClient:
    return AsyncServiceClient(
        ServiceConfig("user-service", url=URL),
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        hooks=[],
        **overrides,
    )


@pytest.mark.anyio
async def test_each_hanging_attempt_ends_at_its_timeout_and_is_retried() -> None:
    """A handler that never answers: each of the 3 attempts ends at the 0.2 s attempt
    timeout (a retryable read timeout), and the call fails in well under the deadline."""
    seen: list[float] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        await anyio.sleep(30)
        return httpx.Response(200)

    async with _client(
        hang, timeout=0.2, deadline=20.0, retry=RetryPolicy(attempts=3, backoff_base=0.001)
    ) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await client.get("/x")
        took = time.monotonic() - started
        bulkhead = client.resilient.runtime.bulkhead
        assert bulkhead is not None and bulkhead.in_flight == 0
    assert len(seen) == 3, "every attempt was bounded and retried"
    assert 0.55 <= took < 10.0, f"took {took:.3f} s"


@pytest.mark.anyio
async def test_a_shorter_bound_than_the_armed_timer_still_ends_on_time() -> None:
    """A call with a 4 s bound arms the timer first; a call started after it with a
    0.3 s deadline must still end at its own deadline (the timer re-arms earlier)."""
    release = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        with anyio.move_on_after(30):
            await release.wait()
        return httpx.Response(200)

    async with _client(hang, timeout=4.0, deadline=8.0) as client:
        long_result: list[int] = []

        async def long_call() -> None:
            long_result.append((await client.get("/long")).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            await anyio.sleep(0.05)  # the long call's attempt is in flight: timer armed
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await client.get("/short", extensions={"deadline": 0.3})
            took = time.monotonic() - started
            release.set()
    assert long_result == [200], "the long call was left alone"
    assert took < 3.0, f"the 0.3 s call took {took:.3f} s"


@pytest.mark.anyio
async def test_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    """Cancelled from outside while the attempt hangs: the caller sees the cancellation
    (no timeout error, no retry), and the bulkhead slot comes back."""
    started = anyio.Event()
    attempts = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        started.set()
        await anyio.sleep(30)
        return httpx.Response(200)

    errors: list[BaseException] = []
    async with _client(
        hang, timeout=2.0, bulkhead=BulkheadPolicy(max_concurrent=1, max_waiting=0)
    ) as client:

        async def call() -> None:
            try:
                await client.get("/x")
            except BaseException as exc:
                errors.append(exc)
                raise

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()
            tg.cancel_scope.cancel()
        bulkhead = client.resilient.runtime.bulkhead
        assert bulkhead is not None and bulkhead.in_flight == 0
    assert attempts == 1
    assert len(errors) == 1 and isinstance(errors[0], anyio.get_cancelled_exc_class())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_timer_cancellation_swallowed_by_the_transport_leaves_no_debt() -> None:
    """A handler that swallows the timer's cancellation and answers late: the response
    is returned and the task is not left cancelled (its next await runs normally)."""

    async def stubborn(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # the attempt's timer fired; this handler answers anyway
        return httpx.Response(203)

    async with _client(stubborn, timeout=0.1, deadline=5.0) as client:
        response = await client.get("/x")
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)  # would raise CancelledError with a pending cancel
    assert response.status_code == 203


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_the_timer_fires_about_once_per_timeout_not_per_attempt() -> None:
    """Many quick timed attempts arm one timer (no TimerHandle per attempt)."""

    async def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    loop = asyncio.get_running_loop()
    armed = 0
    real_call_at = loop.call_at

    def counting_call_at(when: float, callback: object, *args: object) -> asyncio.TimerHandle:
        nonlocal armed
        if getattr(callback, "__self__", None).__class__ is LoopTimer:
            armed += 1
        return real_call_at(when, callback, *args)  # type: ignore[arg-type]

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    try:
        async with _client(ok, timeout=2.0) as client:
            for _ in range(50):
                assert (await client.get("/x")).status_code == 200
            timer = client.resilient._timer
            assert timer is not None and timer.calls == {}
    finally:
        del loop.call_at
    assert armed == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_loop_timer_cancels_only_the_overdue_and_rearms_for_the_rest() -> None:
    """Entries out of deadline order: a firing cancels the due ones only and re-arms
    for the earliest deadline left."""
    loop = asyncio.get_running_loop()
    timer = LoopTimer(loop)

    async def sleeper() -> None:
        await asyncio.sleep(30)

    tasks = [asyncio.ensure_future(sleeper()) for _ in range(3)]
    await asyncio.sleep(0)
    now = timer.now()
    deadlines = [now + 10.0, now + 0.05, now + 5.0]
    for key, (task, at) in enumerate(zip(tasks, deadlines, strict=True)):
        timer.calls[key] = (task, at, task.cancelling())
        if at < timer.when:
            timer.arm(at)
    assert timer.when == deadlines[1]
    await asyncio.sleep(0.2)
    assert [t.cancelled() for t in tasks] == [False, True, False]
    assert sorted(timer.calls) == [0, 2]
    assert timer.when == deadlines[2]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    timer.calls.clear()


def test_within_returns_times_out_and_lets_other_cancellations_through() -> None:
    """``within``: the awaited value when in time; TimeoutError when the timer fired;
    a cancellation from elsewhere stays a CancelledError; no entry is ever left."""
    from svcclient._loop_timer import within

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timer = LoopTimer(loop)
        task = asyncio.current_task()
        assert task is not None
        assert await within(timer, task, asyncio.sleep(0, "v"), 5.0) == "v"
        with pytest.raises(TimeoutError):
            await within(timer, task, asyncio.sleep(30), 0.05)
        assert task.cancelling() == 0 and timer.calls == {}

        async def waits() -> None:
            await within(timer, asyncio.current_task(), asyncio.sleep(30), 10.0)  # type: ignore[arg-type]

        other = asyncio.ensure_future(waits())
        await asyncio.sleep(0.01)
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other
        assert timer.calls == {}

    asyncio.run(main())
