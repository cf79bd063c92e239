"""The sync pipeline behind ResilientTransport / ServiceClient, on in-process transports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from svcclient import (
    BreakerPolicy,
    CircuitOpenError,
    DeadlineExceeded,
    ResilientTransport,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
)
from svcclient._endpoint import Endpoint
from svcclient._pipeline.call import retargeted
from tests.helpers import Recorder

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A monotonic clock the test moves by hand (sleep advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Script:
    """A MockTransport handler answering from a list and counting what it received."""

    def __init__(self, *answers: int | Exception | httpx.Response) -> None:
        self.answers = list(answers)
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(answer, json={"n": len(self.received)})


def make_client(
    script: Handler,
    recorder: Recorder | None = None,
    clock: FakeClock | None = None,
    **overrides: object,
) -> ServiceClient:
    clock = clock or FakeClock()
    config = ServiceConfig("user-service", url="http://user-service:3000")
    return ServiceClient(
        config.with_overrides(**overrides),
        transport=httpx.MockTransport(script),
        hooks=[recorder] if recorder else [],
        clock=clock,
        sleep=clock.sleep,
    )


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


def test_happy_path_resolves_relative_paths_against_the_discovered_url() -> None:
    """GET /users/1 goes to http://user-service:3000/users/1 and returns httpx.Response."""
    script = Script(200)
    with make_client(script) as client:
        response = client.get("/users/1")
    assert response.status_code == 200 and response.json() == {"n": 1}
    assert str(script.received[0].url) == "http://user-service:3000/users/1"
    assert script.received[0].headers["host"] == "user-service:3000"


def test_503_then_200_is_retried_once_with_backoff(recorder: Recorder) -> None:
    """A 503 on a GET is retried after a jittered backoff, and the 200 is returned."""
    clock = FakeClock()
    script = Script(503, 200)
    with make_client(script, recorder, clock) as client:
        assert client.get("/users/1").status_code == 200
    assert len(script.received) == 2
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= 0.1
    assert recorder.kinds() == [
        "request_start",
        "attempt_start",
        "attempt_end",
        "retry",
        "attempt_start",
        "attempt_end",
        "request_end",
    ]
    assert recorder.events[-1] == ("request_end", 200, None, 2)


def test_retries_stop_after_attempts_and_return_the_last_response() -> None:
    """With 3 attempts of 503, the caller gets the third 503 (httpx semantics)."""
    script = Script(503)
    with make_client(script) as client:
        assert client.get("/x").status_code == 503
    assert len(script.received) == 3


def test_post_is_never_sent_twice_on_a_5xx() -> None:
    """A POST that got a 503 is not repeated: the server might have acted on it."""
    script = Script(503, 200)
    with make_client(script) as client:
        assert client.post("/orders", json={"a": 1}).status_code == 503
    assert len(script.received) == 1


def test_post_with_idempotency_key_is_retried() -> None:
    """An Idempotency-Key header makes a POST safe to retry."""
    script = Script(503, 201)
    with make_client(script) as client:
        r = client.post("/orders", json={"a": 1}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201 and len(script.received) == 2


def test_post_opt_in_per_request_is_retried() -> None:
    """extensions={'retry': True} opts a POST into retries."""
    script = Script(503, 201)
    with make_client(script) as client:
        r = client.post("/orders", json={}, extensions={"retry": True})
    assert r.status_code == 201 and len(script.received) == 2


def test_post_refused_connection_is_retried_because_nothing_was_sent() -> None:
    """A refused connection means the server never saw the POST: retrying is safe."""
    script = Script(connect_error(), 201)
    with make_client(script) as client:
        assert client.post("/orders", json={}).status_code == 201


def test_opt_out_per_request_disables_retries() -> None:
    """extensions={'retry': False} sends a GET once."""
    script = Script(503, 200)
    with make_client(script) as client:
        assert client.get("/x", extensions={"retry": False}).status_code == 503
    assert len(script.received) == 1


def test_exhausted_connect_errors_reach_the_caller_as_httpx_errors() -> None:
    """After the last attempt the original httpx.ConnectError is raised, recognisable
    (3 attempts plus one requeue: one endpoint, so the requeue cap is 1)."""
    script = Script(connect_error())
    with make_client(script, breaker=None) as client, pytest.raises(httpx.ConnectError):
        client.get("/x")
    assert len(script.received) == 4


def test_one_shot_request_body_is_not_retried() -> None:
    """A generator body cannot be replayed, so a failed attempt is not retried."""
    script = Script(503, 200)

    def body() -> Iterator[bytes]:
        yield b"chunk"

    with make_client(script) as client:
        r = client.put("/blob", content=body())
    assert r.status_code == 503 and len(script.received) == 1


class _BrokenBody(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"partial":'
        raise httpx.ReadError("connection reset mid-body")


def test_error_while_reading_the_body_is_retried_inside_the_attempt() -> None:
    """A reset mid-body fails the attempt (not the caller's later read) and is retried."""
    script = Script(httpx.Response(200, stream=_BrokenBody()), 200)
    with make_client(script) as client:
        r = client.get("/x")
    assert r.status_code == 200 and r.json() == {"n": 2}


def test_stream_requests_are_not_buffered() -> None:
    """client.stream() hands back the live body; the pipeline does not read it."""
    script = Script(httpx.Response(200, stream=_BrokenBody()))
    with make_client(script) as client, client.stream("GET", "/x") as r:
        assert r.status_code == 200
        with pytest.raises(httpx.ReadError):
            r.read()


def test_retry_after_is_honoured() -> None:
    """A 429 with Retry-After: 1 waits at least a second before the retry."""
    clock = FakeClock()
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), 200)
    with make_client(script, clock=clock) as client:
        assert client.get("/x").status_code == 200
    assert clock.slept and clock.slept[0] >= 1.0


def test_retry_after_beyond_the_deadline_returns_at_once() -> None:
    """Retry-After longer than the time left: no retry, the 503 comes back now."""
    clock = FakeClock()
    script = Script(httpx.Response(503, headers={"Retry-After": "60"}), 200)
    with make_client(script, clock=clock) as client:
        assert client.get("/x").status_code == 503
    assert clock.slept == [] and len(script.received) == 1


def test_deadline_exceeded_carries_the_attempt_history() -> None:
    """Attempts that use up the deadline end in DeadlineExceeded listing each attempt."""
    clock = FakeClock()

    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 1.6
        raise httpx.ReadTimeout("slow", request=request)

    with make_client(slow, clock=clock, breaker=None) as client:
        with pytest.raises(DeadlineExceeded) as info:
            client.get("/x")
    assert len(info.value.attempts) == 2
    assert all(a.outcome == "read_timeout" for a in info.value.attempts)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, httpx.TransportError)


def test_attempt_timeout_is_capped_by_the_time_left() -> None:
    """Each attempt's httpx timeout is min(per-attempt timeout, deadline left)."""
    clock = FakeClock()
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        clock.now += 1.5
        return httpx.Response(503)

    with make_client(handler, clock=clock, breaker=None) as client:
        client.get("/x")
    assert seen[0] == 2.0
    assert seen[1] <= 1.5


def test_caller_phase_timeouts_are_capped_at_ours_on_every_request() -> None:
    """An httpx client's own timeouts (a fresh dict per request) go out phase by phase
    capped at the attempt timeout, the same on every request (the runtime remembers the
    last caller's), a different caller's its own, and the caller's dict comes back."""
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    config = ServiceConfig("user-service", url="http://user-service:3000", timeout=2.0)
    pipeline = ResilientTransport(config, httpx.MockTransport(handler), hooks=[], clock=FakeClock())
    timeouts = httpx.Timeout(5.0, connect=1.0, pool=None)
    with httpx.Client(base_url="http://user-service:3000", transport=pipeline) as client:
        requests = [client.build_request("GET", "/x", timeout=timeouts) for _ in range(2)]
        other = client.build_request("GET", "/x", timeout=httpx.Timeout(0.5))
        for request in (*requests, other, requests[0]):
            client.send(request)
    capped = {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    half = dict.fromkeys(("connect", "read", "write", "pool"), 0.5)
    assert seen == [capped, capped, half, capped]
    assert requests[0].extensions["timeout"] == timeouts.as_dict()


def test_incoming_deadline_shortens_the_call() -> None:
    """extensions={'deadline': 0.5} (time left upstream) caps the attempt timeout."""
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(200)

    with make_client(handler) as client:
        client.get("/x", extensions={"deadline": 0.5})
    assert seen == [0.5]


def test_deadline_header_is_propagated_when_configured() -> None:
    """deadline_header sends the milliseconds left to the server."""
    script = Script(200)
    with make_client(script, deadline_header="X-Deadline-Ms") as client:
        client.get("/x")
    assert 2900 <= int(script.received[0].headers["X-Deadline-Ms"]) <= 3000


def test_breaker_opens_and_rejects_without_touching_the_network(recorder: Recorder) -> None:
    """After enough failures the breaker opens; later calls raise CircuitOpenError fast."""
    script = Script(500)
    policy = BreakerPolicy(volume_threshold=4, error_threshold_percentage=50)
    with make_client(script, recorder, breaker=policy, retry=RetryPolicy(attempts=1)) as client:
        for _ in range(4):
            assert client.get("/x").status_code == 500
        sent = len(script.received)
        started = time.perf_counter()
        with pytest.raises(CircuitOpenError) as info:
            client.get("/x")
        elapsed = time.perf_counter() - started
    assert len(script.received) == sent == 4
    assert info.value.service == "user-service" and info.value.retry_after > 0
    assert elapsed < 1.0  # generous: a rejection neither sends nor waits
    assert ("breaker", "closed", "open") in recorder.events
    assert ("reject", "user-service") in recorder.events


def test_fallback_answers_when_the_breaker_rejects() -> None:
    """A configured fallback turns a rejection into its response, with the cause."""
    causes: list[BaseException] = []

    def fallback(request: httpx.Request, cause: BaseException) -> httpx.Response:
        causes.append(cause)
        return httpx.Response(200, json={"id": 0, "name": "Unknown User"})

    script = Script(500)
    policy = BreakerPolicy(volume_threshold=2)
    with make_client(
        script, breaker=policy, retry=RetryPolicy(attempts=1), fallback=fallback
    ) as client:
        client.get("/users/1")
        client.get("/users/1")
        r = client.get("/users/1")
    assert r.json()["name"] == "Unknown User"
    assert isinstance(causes[-1], CircuitOpenError)
    assert isinstance(causes[0], httpx.HTTPStatusError)


def test_4xx_counts_as_success_for_the_breaker() -> None:
    """404s are the caller's fault; they never open the breaker."""
    script = Script(404)
    with make_client(script, breaker=BreakerPolicy(volume_threshold=2)) as client:
        for _ in range(10):
            assert client.get("/missing").status_code == 404
    assert len(script.received) == 10


def test_retry_budget_limits_retries_in_an_outage(recorder: Recorder) -> None:
    """With a tiny budget, a full outage gets few retries and the error comes back at once."""
    from svcclient import BudgetPolicy

    script = Script(503)
    budget = BudgetPolicy(ratio=0.1, min_retries_per_second=0.1)
    with make_client(script, recorder, budget=budget, breaker=None) as client:
        for _ in range(50):
            client.get("/x")
    assert len(script.received) <= 50 * 1.1 + 2
    assert ("budget_exhausted", "user-service") in recorder.events


def test_route_template_reaches_observers(recorder: Recorder) -> None:
    """extensions={'route': ...} names the route; ids are normalised otherwise."""
    script = Script(200)
    with make_client(script, recorder) as client:
        client.get("/users/42", extensions={"route": "/users/{id}"})
        client.get("/orders/123?secret=x")
    starts = [e for e in recorder.events if e[0] == "request_start"]
    assert starts[0][2] == "/users/{id}"
    assert "secret" not in starts[1][2] and "123" not in starts[1][2]


def test_retargeted_keeps_host_header_and_sets_sni_for_https() -> None:
    """With a caller's transport, a copy goes to the resolved IP; Host and SNI keep the
    name, and the caller's request is left as it was."""
    request = httpx.Request("GET", "https://user-service.shop.svc.cluster.local:8443/x")
    origin = Endpoint("user-service.shop.svc.cluster.local", 8443)
    sent = retargeted(request, Endpoint("10.0.0.7", 8443), origin)
    assert sent.url.host == "10.0.0.7"
    assert sent.headers["host"] == "user-service.shop.svc.cluster.local:8443"
    assert sent.extensions["sni_hostname"] == origin.host
    assert request.url.host == origin.host and "sni_hostname" not in request.extensions


def test_client_exposes_discovery_and_config() -> None:
    """ServiceClient tells which rule gave the URL."""
    with ServiceClient("user-service", url="http://127.0.0.1:9", hooks=[]) as client:
        assert client.discovery.source in ("default", "env", "kubernetes_env")
        assert client.config.name == "user-service"


def test_breaker_judges_calls_not_attempts() -> None:
    """A refused attempt that a retry turns into a 200 is a successful call for the breaker."""
    script = Script(connect_error(), 200)
    policy = BreakerPolicy(volume_threshold=2, error_threshold_percentage=50)
    with make_client(script, breaker=policy) as client:
        for _ in range(6):
            script.answers = [connect_error(), 200]
            assert client.get("/x").status_code == 200
        stats = client.resilient.runtime.breaker.stats  # type: ignore[union-attr]
    assert stats.state == "closed"
    assert stats.failures == 0 and stats.calls == 6


def test_breaker_opened_by_others_stops_a_call_retrying() -> None:
    """When the breaker opens while a call backs off, the call's next attempt is not sent."""
    clock = FakeClock()
    script = Script(503)
    client = make_client(script, clock=clock, breaker=BreakerPolicy(volume_threshold=2))
    breaker = client.resilient.runtime.breaker
    assert breaker is not None

    def sleep_and_trip(seconds: float) -> None:
        clock.now += seconds
        breaker.open()

    client.resilient._sleep = sleep_and_trip
    with client, pytest.raises(CircuitOpenError):
        client.get("/x")
    assert len(script.received) == 1


def test_full_bulkhead_rejects_fast_with_hook_and_fallback(recorder: Recorder) -> None:
    """Over the bulkhead's limit the call is rejected without sending; fallback answers."""
    import threading

    from svcclient import BulkheadFullError, BulkheadPolicy

    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        gate.wait(5)
        return httpx.Response(200)

    policy = BulkheadPolicy(max_concurrent=1, max_waiting=0, wait_timeout=0.01)
    with make_client(handler, recorder, bulkhead=policy) as client:
        worker = threading.Thread(target=client.get, args=("/slow",))
        worker.start()
        time.sleep(0.05)
        with pytest.raises(BulkheadFullError) as info:
            client.get("/x")
        gate.set()
        worker.join(5)
    assert info.value.service == "user-service"
    assert ("bulkhead", "user-service") in recorder.events


def test_the_bound_is_set_only_where_something_reads_it() -> None:
    """A caller's transport that cannot read the bound (not a capped HTTPTransport) sends
    with none set; svcclient's pools and a caller's HTTPTransport (capped) get it."""
    from svcclient._transports.bound import BOUND

    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(BOUND.get())
        return httpx.Response(200)

    transport = ResilientTransport(
        "user-service", httpx.MockTransport(handler), url="http://user-service:3000", hooks=[]
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("http://user-service:3000/a").status_code == 200
    assert seen == [None] and not transport._bounded
    capped = ResilientTransport("user-service", httpx.HTTPTransport(), url="http://x:1")
    own = ResilientTransport("user-service", url="http://x:1")
    assert capped._bounded and own._bounded
    capped.close()
    own.close()
