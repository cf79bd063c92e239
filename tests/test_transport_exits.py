"""The transport contract on in-process transports: strict extensions, nothing leaks on
any exit, other origins untouched, the caller's request never rewritten, one clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from svcclient import (
    AsyncServiceClient,
    BreakerPolicy,
    BulkheadPolicy,
    Deadline,
    Hooks,
    ResilientTransport,
    ServiceClient,
    ServiceConfig,
)
from svcclient._observability.hooks import AttemptInfo, CallInfo
from svcclient._pipeline import extensions
from tests.helpers import Recorder

URL = "http://user-service:3000"


class Clock:
    """A fake clock that only moves when told (and when a handler moves it)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Opened(Hooks):
    """Counts calls and attempts started and ended (spans, the in-flight gauge)."""

    def __init__(self) -> None:
        self.calls = 0
        self.attempts = 0

    def on_request_start(self, call: CallInfo) -> None:
        self.calls += 1

    def on_request_end(self, call: CallInfo) -> None:
        self.calls -= 1

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self.attempts += 1

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        self.attempts -= 1


def sync_client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> ServiceClient:
    kw.setdefault("hooks", [])
    return ServiceClient(
        ServiceConfig("user-service", url=URL),
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
        **kw,
    )


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok")


# -- extensions at the door ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "error"),
    [
        ({"retry": "false"}, TypeError),
        ({"retry": 1}, TypeError),
        ({"deadline": "1.5s"}, TypeError),
        ({"deadline": True}, TypeError),
        ({"deadline": -1}, ValueError),
        ({"deadline": math.nan}, ValueError),
        ({"deadline": math.inf}, ValueError),
        ({"route": 42}, TypeError),
        ({"affinity_key": 7}, TypeError),
    ],
)
def test_bad_extension_raises_naming_it(ext: dict[str, Any], error: type[Exception]) -> None:
    """A wrong type is a TypeError, a wrong number a ValueError; both name the extension."""
    with pytest.raises(error, match=repr(next(iter(ext)))):
        extensions.read(ext)


def test_good_extensions_pass() -> None:
    """bool retry, number or Deadline deadline, str route, str/bytes affinity are accepted."""
    d = Deadline(1.0)
    assert extensions.read({"retry": False, "deadline": d, "route": "/u/{id}"}) == (
        False,
        d,
        "/u/{id}",
        None,
    )
    assert extensions.read({"deadline": 0, "affinity_key": b"k"})[1:] == (0, None, b"k")


def test_retry_false_string_does_not_opt_a_post_into_retries() -> None:
    """extensions={'retry': 'false'} raises before sending instead of retrying a POST."""
    sent: list[httpx.Request] = []

    def fail(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    with sync_client(fail) as client, pytest.raises(TypeError, match="'retry'"):
        client.post("/orders", json={}, extensions={"retry": "false"})
    assert sent == []


def test_bad_extensions_take_no_slot_admission_or_span() -> None:
    """100 calls with a bad extension leave the bulkhead, breaker and observers untouched."""
    opened = Opened()
    policy = BulkheadPolicy(max_concurrent=2, max_waiting=0)
    with sync_client(ok, hooks=[opened], bulkhead=policy, breaker=BreakerPolicy()) as client:
        for i in range(100):
            with pytest.raises((TypeError, ValueError)):
                client.get("/x", extensions={"deadline": "1.5s"} if i % 2 else {"route": 1})
        assert client.get("/x").status_code == 200
        rt = client.resilient.runtime
        assert client.resilient.runtime.bulkhead is not None
        assert client.resilient.runtime.bulkhead.in_flight == 0
        assert rt.breaker is not None and rt.breaker.stats.calls == 1
    assert (opened.calls, opened.attempts) == (0, 0)


# -- every exit releases everything ----------------------------------------------------


class Boom(BaseException):
    """Stands in for KeyboardInterrupt (which pytest would take personally)."""


@pytest.mark.parametrize("where", ["send", "on_request_start", "on_attempt_start"])
def test_interrupt_anywhere_releases_slot_admission_gauge_and_spans(where: str) -> None:
    """A BaseException from the transport or a hook gives back the bulkhead slot and the
    breaker admission, and ends the call's and the attempt's observer events."""
    opened = Opened()

    class Raising(Hooks):
        def on_request_start(self, call: CallInfo) -> None:
            if where == "on_request_start":
                raise Boom

        def on_attempt_start(self, attempt: AttemptInfo) -> None:
            if where == "on_attempt_start":
                raise Boom

    def handler(request: httpx.Request) -> httpx.Response:
        if where == "send":
            raise Boom
        return httpx.Response(200)

    registry = CollectorRegistry()
    from svcclient import PrometheusHooks

    hooks = [opened, PrometheusHooks(registry=registry), Raising()]
    policy = BulkheadPolicy(max_concurrent=1, max_waiting=0)
    with sync_client(handler, hooks=hooks, bulkhead=policy, breaker=BreakerPolicy()) as client:
        for _ in range(3):
            with pytest.raises(Boom):
                client.get("/x")
        bulkhead = client.resilient.runtime.bulkhead
        breaker = client.resilient.runtime.breaker
        assert bulkhead is not None and bulkhead.in_flight == 0
        assert breaker is not None and breaker.stats.calls == 0
    assert (opened.calls, opened.attempts) == (0, 0)
    gauge = registry.get_sample_value(
        "svcclient_requests_in_flight", {"target_service": "user-service"}
    )
    assert gauge == 0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_cancelled_async_call_releases_everything() -> None:
    """A call cancelled mid-send leaves no slot, admission, span or in-flight count."""
    opened = Opened()
    started = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep(30)
        return httpx.Response(200)

    async with AsyncServiceClient(
        ServiceConfig("user-service", url=URL),
        transport=httpx.MockTransport(slow),
        hooks=[opened],
        bulkhead=BulkheadPolicy(max_concurrent=1, max_waiting=0),
        breaker=BreakerPolicy(),
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, "/x")
            await started.wait()
            tg.cancel_scope.cancel()
        bulkhead = client.resilient.runtime.bulkhead
        breaker = client.resilient.runtime.breaker
        assert bulkhead is not None and bulkhead.in_flight == 0
        assert breaker is not None and breaker.stats.calls == 0
    assert (opened.calls, opened.attempts) == (0, 0)


@pytest.mark.anyio
async def test_async_client_send_is_awaitable_and_still_a_coroutine_function() -> None:
    """AsyncServiceClient.send (a plain function handing back httpx's coroutine) is
    awaited as before, buffers the body and reads as a coroutine function (3.12+)."""
    import inspect
    import sys

    async with AsyncServiceClient(
        ServiceConfig("user-service", url=URL),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, text="ok")),
    ) as client:
        request = client.build_request("GET", "/x")
        pending = client.send(request)
        assert inspect.isawaitable(pending)
        response = await pending
        assert response.text == "ok"
        assert request.extensions[extensions.BUFFER] is True
        async with client.stream("GET", "/y") as streamed:  # stream=True: not buffered
            assert extensions.BUFFER not in streamed.request.extensions
            assert await streamed.aread() == b"ok"
    if sys.version_info >= (3, 12):
        assert inspect.iscoroutinefunction(AsyncServiceClient.send)


# -- other origins, the caller's request, the inner transport's context -----------------


def test_other_origin_goes_to_its_own_host_unretried_and_observed() -> None:
    """An absolute URL to another host reaches the inner transport unchanged, is not
    retried, and is observed with that host as the service."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503)

    recorder = Recorder()
    with sync_client(handler, hooks=[recorder]) as client:
        response = client.get("http://elsewhere.example:8080/y")
    assert response.status_code == 503 and len(seen) == 1
    assert str(seen[0].url) == "http://elsewhere.example:8080/y"
    assert recorder.kinds() == ["request_start", "attempt_start", "attempt_end", "request_end"]


def test_redirect_to_another_host_is_followed_to_that_host() -> None:
    """A redirect from the service to another origin is sent there, not to the service."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "user-service":
            return httpx.Response(302, headers={"location": "http://cdn.example/a"})
        return httpx.Response(200, text="cdn")

    with sync_client(handler) as client:
        response = client.get("/file", follow_redirects=True)
    assert response.text == "cdn"
    assert seen == ["http://user-service:3000/file", "http://cdn.example/a"]


def test_caller_request_is_not_rewritten_with_a_resolved_endpoint() -> None:
    """With a caller's transport and DNS resolution, a copy goes to the IP; the caller's
    request (and response.request) keep the service name."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"set-cookie": "s=1; Path=/"})

    transport = ResilientTransport(
        ServiceConfig("user-service", url=URL, resolve="dns"),
        httpx.MockTransport(handler),
        hooks=[],
    )
    from svcclient._discovery.dns import Resolution
    from svcclient._endpoint import Endpoint

    transport.runtime.refreshed(Resolution((Endpoint("10.1.2.3", 3000),), 30.0, "dns"))
    with httpx.Client(transport=transport, base_url=URL) as client:
        response = client.get("/x")
    assert seen[0].url.host == "10.1.2.3"
    assert response.request.url.host == "user-service"
    assert [c.domain for c in client.cookies.jar] == ["user-service.local"]


class Tracked(httpx.MockTransport):
    """A MockTransport that records its context-manager calls."""

    def __init__(self) -> None:
        super().__init__(ok)
        self.log: list[str] = []

    def __enter__(self) -> Tracked:
        self.log.append("enter")
        return self

    def __exit__(self, *args: object) -> None:
        self.log.append("exit")


def test_inner_transport_context_manager_is_entered_and_exited() -> None:
    """Entering and leaving the client enters and leaves the inner transport too."""
    inner = Tracked()
    with httpx.Client(transport=ResilientTransport("svc", inner, url=URL, hooks=[])) as c:
        c.get(URL + "/x")
    assert inner.log == ["enter", "exit"]


def test_one_clock_drives_deadline_durations_and_the_breaker() -> None:
    """Attempt and call durations (metrics, the breaker's slow-call rule) read the
    injected clock: a handler that moves the fake clock 2 s makes a 2 s call."""
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 0.5
        return httpx.Response(200)

    durations: list[float] = []

    class Durations(Hooks):
        def on_request_end(self, call: CallInfo) -> None:
            durations.append(call.duration)

    policy = BreakerPolicy(slow_call_duration=0.25, slow_call_rate_threshold=50, volume_threshold=1)
    with ServiceClient(
        ServiceConfig("user-service", url=URL),
        transport=httpx.MockTransport(handler),
        hooks=[Durations()],
        clock=clock,
        breaker=policy,
    ) as client:
        client.get("/x")
        assert durations == [0.5]
        breaker = client.resilient.runtime.breaker
        assert breaker is not None and breaker.stats.state == "open"
