"""Throttle and adaptive limit inside the pipeline, on in-process transports: what reaches
the breaker, the retry loop, the fallback and the observers, and that no slot ever leaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from svcclient import (
    AsyncServiceClient,
    BreakerPolicy,
    ConcurrencyLimitError,
    ConcurrencyPolicy,
    Hooks,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
    ThrottledError,
    ThrottlePolicy,
)


class Events(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_throttled(self, service: str) -> None:
        self.events.append(("throttled", service))

    def on_concurrency_limit(self, service: str, limit: int) -> None:
        self.events.append(("limit", limit))

    def on_bulkhead_rejected(self, service: str) -> None:
        self.events.append(("bulkhead", service))


def _client(
    handler: Callable[[httpx.Request], httpx.Response], hooks: list[Hooks] | None = None, **kw: Any
) -> ServiceClient:
    config = ServiceConfig("user-service", url="http://user-service:3000").with_overrides(**kw)
    return ServiceClient(
        config, transport=httpx.MockTransport(handler), hooks=hooks or [], sleep=lambda s: None
    )


def _status(code: int) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code)


BREAKER = BreakerPolicy(volume_threshold=5, window_duration=10.0)


def test_overloaded_answers_open_the_breaker_without_throttling() -> None:
    """The baseline: 503s are breaker failures, so a run of them opens the breaker."""
    with _client(_status(503), retry=RetryPolicy(attempts=1), breaker=BREAKER) as client:
        for _ in range(10):
            try:
                client.get("/")
            except httpx.TransportError:
                pass
        breaker = client.resilient.runtime.breaker
        assert breaker is not None and breaker.state == "open"


def test_with_throttling_overloaded_answers_are_not_breaker_failures() -> None:
    """With throttling on, 503s are the throttle's to judge: the breaker stays closed, while
    a 500 still counts against it."""
    throttle = ThrottlePolicy(min_requests=1000)  # never rejects here: only the books matter
    kw: dict[str, Any] = {"retry": RetryPolicy(attempts=1), "breaker": BREAKER}
    with _client(_status(503), throttle=throttle, **kw) as client:
        for _ in range(10):
            assert client.get("/").status_code == 503
        runtime = client.resilient.runtime
        assert runtime.breaker is not None and runtime.breaker.state == "closed"
        assert runtime.throttle is not None
        assert (runtime.throttle.requests, runtime.throttle.accepts) == (10, 0)
    with _client(_status(500), throttle=throttle, **kw) as client:
        for _ in range(10):
            try:
                client.get("/")
            except httpx.TransportError:
                pass
        breaker = client.resilient.runtime.breaker
        assert breaker is not None and breaker.state == "open"


def test_a_throttled_retry_ends_the_call_with_its_last_answer() -> None:
    """The first attempt wins its draw, the retry loses: one request sent, the 503 comes
    back, and the rejected retry is booked as a request that was not accepted."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    with _client(handler, throttle=ThrottlePolicy(min_requests=0), breaker=None) as client:
        throttle = client.resilient.runtime.throttle
        assert throttle is not None
        for _ in range(3):
            throttle.record(False)
        draws = iter([0.99, 0.0])
        throttle.rng = lambda: next(draws)
        assert client.get("/").status_code == 503
        assert len(sent) == 1
        assert (throttle.requests, throttle.accepts) == (5, 0)


def test_throttled_call_reaches_the_fallback_and_the_hook() -> None:
    """A local rejection goes to the fallback as ThrottledError and fires on_throttled."""
    events = Events()
    causes: list[BaseException] = []

    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        causes.append(exc)
        return httpx.Response(200, json={"cached": True}, request=request)

    with _client(
        _status(200), [events], throttle=ThrottlePolicy(min_requests=0), fallback=fallback
    ) as client:
        throttle = client.resilient.runtime.throttle
        assert throttle is not None
        for _ in range(20):
            throttle.record(False)
        throttle.rng = lambda: 0.0
        assert client.get("/").json() == {"cached": True}
    assert len(causes) == 1 and isinstance(causes[0], ThrottledError)
    assert causes[0].probability == 0.9
    assert events.events == [("throttled", "user-service")]


def test_limiter_slot_is_released_on_every_exit() -> None:
    """Success, an httpx error, and a bug in the transport all give the slot back; a call
    over the limit is refused as ConcurrencyLimitError and reported like a bulkhead's."""
    events = Events()
    answers: list[Any] = [200, httpx.ReadError("reset"), RuntimeError("bug")]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    policy = ConcurrencyPolicy(initial_limit=1, max_limit=1)
    with _client(handler, [events], concurrency=policy, retry=RetryPolicy(attempts=1)) as client:
        limiter = client.resilient.runtime.limiter
        assert limiter is not None
        assert client.get("/").status_code == 200
        with pytest.raises(httpx.ReadError):
            client.get("/")
        with pytest.raises(RuntimeError):
            client.get("/")
        assert limiter.in_flight == 0
        assert limiter.try_acquire()  # someone else holds the only slot
        with pytest.raises(ConcurrencyLimitError) as info:
            client.get("/")
        limiter.release()
    assert info.value.limit == 1 and info.value.service == "user-service"
    assert events.events[0] == ("limit", 1)  # the gauge gets the initial limit
    assert ("bulkhead", "user-service") in events.events


def test_concurrency_replaces_the_static_bulkhead_in_the_driver() -> None:
    """With an adaptive limit the driver keeps no static bulkhead."""
    with _client(_status(200), concurrency=ConcurrencyPolicy()) as client:
        assert client.resilient.runtime.bulkhead is None
        assert client.resilient.runtime.limiter is not None
    with _client(_status(200)) as client:
        assert client.resilient.runtime.bulkhead is not None
        assert client.resilient.runtime.limiter is None


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_async_cancelled_call_releases_its_limiter_slot() -> None:
    """A call cancelled while it waits for the server gives its slot back (asyncio, trio)."""
    started = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep(30)
        return httpx.Response(200)

    config = ServiceConfig(
        "user-service",
        url="http://user-service:3000",
        concurrency=ConcurrencyPolicy(initial_limit=2, max_limit=2),
    )
    async with AsyncServiceClient(config, transport=httpx.MockTransport(slow), hooks=[]) as client:
        limiter = client.resilient.runtime.limiter
        assert limiter is not None
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, "/")
                await started.wait()
                assert limiter.in_flight == 1
                tg.cancel_scope.cancel()
        assert limiter.in_flight == 0
