"""A local rejection by adaptive throttling: counted in its own metric, handed to the
fallback, never an accept, and cheap - taken before any other work for the call, and
leaving no garbage behind for the cyclic GC."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from svcclient import (
    AsyncServiceClient,
    Hooks,
    PrometheusHooks,
    ServiceClient,
    ServiceConfig,
    ThrottledError,
    ThrottlePolicy,
)
from svcclient._policies.throttle import Throttle

METRIC = "svcclient_throttled_requests_total"
LABELS = {"target_service": "user-service"}


class Seen(Hooks):
    """Every observer event a call could start with."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_request_start(self, call: Any) -> None:
        self.events.append("request_start")

    def on_attempt_start(self, attempt: Any) -> None:
        self.events.append("attempt_start")

    def on_throttled(self, service: str) -> None:
        self.events.append("throttled")


def _config(**kw: Any) -> ServiceConfig:
    return ServiceConfig(
        "user-service",
        url="http://user-service:3000",
        throttle=ThrottlePolicy(min_requests=0),
        **kw,
    )


def _rig(throttle: Throttle | None) -> Throttle:
    """20 refusals on the books and a draw of 0: the next call is rejected (p = 0.9)."""
    assert throttle is not None
    for _ in range(20):
        throttle.record(False)
    throttle.rng = lambda: 0.0
    return throttle


def _never_sent(request: httpx.Request) -> httpx.Response:
    raise AssertionError("a throttled call reached the transport")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fallback(causes: list[BaseException]) -> Any:
    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        causes.append(exc)
        return httpx.Response(200, json={"cached": True}, request=request)

    return fallback


def test_rejection_is_counted_reaches_the_fallback_and_does_nothing_else() -> None:
    """The fallback gets the ThrottledError; the Prometheus counter and on_throttled see it;
    no span/in-flight event starts, nothing is sent, the breaker is never asked, and the
    rejection is one more request and no accept."""
    registry = CollectorRegistry()
    seen = Seen()
    causes: list[BaseException] = []
    config = _config(fallback=_fallback(causes))
    hooks = [PrometheusHooks(registry), seen]
    with ServiceClient(config, transport=httpx.MockTransport(_never_sent), hooks=hooks) as client:
        runtime = client.resilient.runtime
        throttle = _rig(runtime.throttle)
        assert client.get("/users/1").json() == {"cached": True}
        assert (throttle.requests, throttle.accepts) == (21, 0)
        breaker = runtime.breaker
        assert breaker is not None and breaker.state == "closed"
    assert len(causes) == 1 and isinstance(causes[0], ThrottledError)
    assert causes[0].probability == 0.9 and causes[0].service == "user-service"
    assert seen.events == ["throttled"]
    assert registry.get_sample_value(METRIC, LABELS) == 1.0


@pytest.mark.anyio
async def test_async_rejection_is_counted_and_reaches_the_fallback() -> None:
    """The same on the async driver (asyncio and trio)."""
    registry = CollectorRegistry()
    seen = Seen()
    causes: list[BaseException] = []
    config = _config(fallback=_fallback(causes))
    async with AsyncServiceClient(
        config, transport=httpx.MockTransport(_never_sent), hooks=[PrometheusHooks(registry), seen]
    ) as client:
        throttle = _rig(client.resilient.runtime.throttle)
        for _ in range(3):
            assert (await client.get("/users/1")).json() == {"cached": True}
        assert (throttle.requests, throttle.accepts) == (23, 0)
    assert [type(c) for c in causes] == [ThrottledError] * 3
    assert seen.events == ["throttled"] * 3
    assert registry.get_sample_value(METRIC, LABELS) == 3.0


def test_rejection_without_fallback_raises_and_is_counted() -> None:
    """No fallback: the caller gets ThrottledError, and it is still counted."""
    registry = CollectorRegistry()
    with ServiceClient(
        _config(), transport=httpx.MockTransport(_never_sent), hooks=[PrometheusHooks(registry)]
    ) as client:
        _rig(client.resilient.runtime.throttle)
        with pytest.raises(ThrottledError) as info:
            client.get("/users/1")
    assert info.value.request is not None and info.value.request.url.path == "/users/1"
    assert registry.get_sample_value(METRIC, LABELS) == 1.0


def _garbage_after(call: Any) -> int:
    """Objects the cyclic GC would have to find after one ``call()`` (GC paused)."""
    gc.collect()
    gc.disable()
    try:
        call()
        return gc.collect()
    finally:
        gc.enable()


def test_a_rejection_leaves_no_garbage_for_the_cyclic_gc() -> None:
    """A raised ThrottledError is freed by reference counting alone (no frame <-> traceback
    cycle), so rejecting at a high rate does not set off GC passes."""
    with ServiceClient(_config(), transport=httpx.MockTransport(_never_sent), hooks=[]) as client:
        _rig(client.resilient.runtime.throttle)

        def rejected() -> None:
            try:
                client.get("/users/1")
            except ThrottledError:
                pass

        rejected()  # warm: first-call caches are not garbage
        assert _garbage_after(rejected) == 0


def _async_garbage_after(
    config: ServiceConfig, prepare: Any, exc: type[Exception], after: Any = None
) -> int:
    """Objects the cyclic GC would have to find after one rejected async call (GC paused):
    ``prepare(client)`` sets the rejection up, ``after(client)`` undoes it."""
    import asyncio

    async def main() -> int:
        async with AsyncServiceClient(
            config, transport=httpx.MockTransport(_never_sent), hooks=[]
        ) as client:
            prepare(client)

            async def rejected() -> None:
                try:
                    await client.get("/users/1")
                except exc:
                    pass

            await rejected()  # warm: first-call caches are not garbage
            gc.collect()
            gc.disable()
            try:
                await rejected()
                return gc.collect()
            finally:
                gc.enable()
                if after is not None:
                    after(client)

    return asyncio.run(main())


def test_async_rejection_leaves_no_garbage_for_the_cyclic_gc() -> None:
    """The same through the async driver (one event loop, the call inside it)."""

    def rig(client: AsyncServiceClient) -> None:
        _rig(client.resilient.runtime.throttle)

    assert _async_garbage_after(_config(), rig, ThrottledError) == 0


def test_a_full_bulkhead_leaves_no_garbage_for_the_cyclic_gc() -> None:
    """BulkheadFullError from a full bulkhead (its one slot taken, no queue) is freed by
    reference counting alone, like a throttled call: no frame <-> traceback cycle."""
    from svcclient import BulkheadFullError, BulkheadPolicy

    config = ServiceConfig(
        "user-service",
        url="http://user-service:3000",
        bulkhead=BulkheadPolicy(max_concurrent=1, max_waiting=0),
    )
    with ServiceClient(config, transport=httpx.MockTransport(_never_sent), hooks=[]) as client:
        bulkhead = client.resilient.runtime.bulkhead
        assert bulkhead is not None and bulkhead.try_acquire()  # the only slot, taken

        def rejected() -> None:
            try:
                client.get("/users/1")
            except BulkheadFullError:
                pass

        rejected()  # warm: first-call caches are not garbage
        assert _garbage_after(rejected) == 0
        bulkhead.release()


def test_async_full_bulkhead_leaves_no_garbage_for_the_cyclic_gc() -> None:
    """The same through the async driver."""
    from svcclient import BulkheadFullError, BulkheadPolicy

    config = ServiceConfig(
        "user-service",
        url="http://user-service:3000",
        bulkhead=BulkheadPolicy(max_concurrent=1, max_waiting=0),
    )

    def take_the_slot(client: AsyncServiceClient) -> None:
        assert client.resilient.runtime.bulkhead is not None
        assert client.resilient.runtime.bulkhead.try_acquire()

    def give_it_back(client: AsyncServiceClient) -> None:
        assert client.resilient.runtime.bulkhead is not None
        client.resilient.runtime.bulkhead.release()

    assert _async_garbage_after(config, take_the_slot, BulkheadFullError, give_it_back) == 0
