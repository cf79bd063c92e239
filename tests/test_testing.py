"""svcclient.testing: mock_service, the scripted transports, test mode and the pytest plugin."""

from __future__ import annotations

import inspect
import time

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry

from svcclient import (
    AsyncServiceClient,
    BreakerPolicy,
    CircuitOpenError,
    DnsResolver,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
    classify_error,
)
from svcclient._pipeline import testmode as _testmode
from svcclient._pipeline.testmode import MOCKED_HOSTS
from svcclient._transports import resilient as _transport
from svcclient.testing import (
    AsyncFaultTransport,
    FakeClock,
    FaultTransport,
    Reply,
    is_testing,
    mock_service,
    no_retries,
    no_retry_sleeps,
    set_testing,
)

pytest_plugins = ["pytester"]

ORIGINAL_RESOLVE = DnsResolver.resolve


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "USER_SERVICE_URL",
        "USER_SERVICE_SERVICE_HOST",
        "USER_SERVICE_SERVICE_PORT",
        "SVCCLIENT_CONFIG",
        "POD_NAMESPACE",
    ):
        monkeypatch.delenv(var, raising=False)


def _client(transport: httpx.BaseTransport, clock: FakeClock, **kw: object) -> ServiceClient:
    return ServiceClient(
        "user-service",
        transport=transport,
        registry=CollectorRegistry(),
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


# -- mock_service ---------------------------------------------------------------------------


def test_mock_service_stubs_a_client_by_name() -> None:
    """Routes added to mock_service('user-service') answer ServiceClient('user-service')."""
    with mock_service("user-service") as users:
        route = users.get("/users/1").respond(json={"id": 1, "name": "Ada"})
        with ServiceClient("user-service", registry=CollectorRegistry()) as client:
            response = client.get("/users/1")
    assert response.json() == {"id": 1, "name": "Ada"}
    assert route.call_count == 1
    assert DnsResolver.resolve is ORIGINAL_RESOLVE  # nothing is patched class-wide
    assert not MOCKED_HOSTS  # the DNS short-circuit is undone


def test_mock_service_honours_the_url_the_client_is_given() -> None:
    """mock_service(name, url=...) mocks what ServiceClient(name, url=...) calls."""
    with mock_service("user-service", url="http://user-service:3000") as users:
        route = users.get("/users/1").respond(json={"id": 1})
        with ServiceClient(
            "user-service", url="http://user-service:3000", registry=CollectorRegistry()
        ) as client:
            assert client.get("/users/1").json() == {"id": 1}
    assert str(route.calls.last.request.url) == "http://user-service:3000/users/1"


def test_mock_service_honours_config_overrides() -> None:
    """Config keywords (namespace, port) shape the mocked URL exactly as the client's."""
    with mock_service("billing", namespace="shop", port=8080) as billing:
        billing.get("/ping").respond(204)
        with ServiceClient(
            "billing", namespace="shop", port=8080, registry=CollectorRegistry()
        ) as client:
            assert client.get("/ping").status_code == 204
            assert client.base_url.host.rstrip(".") == "billing.shop.svc.cluster.local"


def test_mock_service_takes_a_service_config() -> None:
    """A ServiceConfig (as the client gets) gives the same base URL."""
    config = ServiceConfig("orders", url="http://orders.internal:7000")
    with mock_service(config) as orders:
        orders.get("/o/1").respond(json={"ok": True})
        with ServiceClient(config, registry=CollectorRegistry()) as client:
            assert client.get("/o/1").json() == {"ok": True}


def test_unmocked_url_error_names_the_mocked_url() -> None:
    """A client calling another URL fails with a message naming what is mocked and url=."""
    with mock_service("user-service") as users:
        users.get("/users/1").respond(200)
        with ServiceClient(
            "user-service", url="http://user-service:3000", registry=CollectorRegistry()
        ) as client:
            with pytest.raises(respx.models.AllMockedAssertionError) as info:
                client.get("/users/1")
    text = str(info.value)
    assert "mock_service('user-service') mocks http://user-service." in text
    assert "url=" in text


def test_mock_service_install_hint_names_the_testing_extra() -> None:
    """The missing-respx hint points at svcclient[testing], never at the dev extra."""
    import svcclient.testing as testing

    source = inspect.getsource(testing.mock_service)
    assert "svcclient[testing]" in source
    assert "[dev]" not in source


def test_mock_service_rejects_unstubbed_paths() -> None:
    """A request the router has no route for fails instead of reaching the network."""
    with mock_service("user-service") as users:
        users.get("/users/1").respond(200)
        with ServiceClient("user-service", registry=CollectorRegistry()) as client:
            with pytest.raises(respx.models.AllMockedAssertionError):
                client.get("/orders/1")


def test_mock_service_follows_the_default_url() -> None:
    """The router binds to the URL discovery gives for the same default URL."""
    with mock_service("billing", url="http://billing:3000") as billing:
        billing.post("/charges").respond(201)
        with ServiceClient(
            "billing", url="http://billing:3000", registry=CollectorRegistry()
        ) as client:
            assert client.post("/charges").status_code == 201


def test_mock_service_honours_the_env_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """With USER_SERVICE_URL set, the router binds to that URL, as the client does."""
    monkeypatch.setenv("USER_SERVICE_URL", "http://users.local:9000")
    with mock_service("user-service") as users:
        route = users.get("/ping").respond(204)
        with ServiceClient("user-service", registry=CollectorRegistry()) as client:
            assert client.get("/ping").status_code == 204
    assert str(route.calls.last.request.url) == "http://users.local:9000/ping"


@pytest.mark.anyio
async def test_mock_service_works_for_async_clients() -> None:
    """An AsyncServiceClient is stubbed the same way (async with)."""
    async with mock_service("user-service") as users:
        users.get("/users/2").respond(json={"id": 2})
        async with AsyncServiceClient("user-service", registry=CollectorRegistry()) as client:
            assert (await client.get("/users/2")).json() == {"id": 2}


# -- FaultTransport -------------------------------------------------------------------------


def test_fault_transport_drives_retries_through_the_pipeline() -> None:
    """503 then a refused connection are retried; the third attempt succeeds."""
    clock = FakeClock()
    transport = FaultTransport([503, "refuse", 200])
    with _client(transport, clock) as client:
        assert client.get("/users/1").status_code == 200
    assert transport.count("GET") == 3
    assert len(clock.sleeps) == 2


def test_refuse_is_classified_as_connect_refused() -> None:
    """'refuse' raises the ConnectError a refused socket gives (ECONNREFUSED)."""
    transport = FaultTransport(["refuse"])
    with pytest.raises(httpx.ConnectError) as info:
        transport.handle_request(httpx.Request("GET", "http://x/"))
    assert classify_error(info.value) == "connect_refused"


@pytest.mark.parametrize(
    ("kind", "error", "error_type"),
    [
        ("timeout", httpx.ReadTimeout, "read_timeout"),
        ("connect_timeout", httpx.ConnectTimeout, "connect_timeout"),
        ("dns", httpx.ConnectError, "dns_failure"),
    ],
)
def test_error_outcomes_raise_httpx_errors(
    kind: str, error: type[Exception], error_type: str
) -> None:
    """Each error outcome raises the httpx exception, classified as the pipeline expects."""
    transport = FaultTransport([kind])
    with pytest.raises(error) as info:
        transport.handle_request(httpx.Request("GET", "http://x/"))
    assert classify_error(info.value) == error_type


def test_reset_mid_body_is_retried() -> None:
    """'reset' sends headers then fails the body read; the pipeline retries it."""
    clock = FakeClock()
    transport = FaultTransport(["reset"], default=Reply(200, json={"ok": True}))
    with _client(transport, clock) as client:
        assert client.get("/users/1").json() == {"ok": True}
    assert transport.count() == 2


def test_exhausted_timeouts_reach_the_caller() -> None:
    """When every attempt times out, the caller gets httpx.ReadTimeout after 3 attempts."""
    clock = FakeClock()
    transport = FaultTransport(default="timeout")
    with _client(transport, clock) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/users/1")
    assert transport.count() == 3


def test_reply_latency_uses_the_injected_sleep() -> None:
    """A Reply's delay is slept with the given sleep, so a fake clock moves instead."""
    clock = FakeClock()
    transport = FaultTransport([Reply(200, delay=0.25)], sleep=clock.sleep)
    transport.handle_request(httpx.Request("GET", "http://x/"))
    assert clock() == 0.25


def test_reply_headers_reach_the_retry_policy() -> None:
    """A Retry-After header in a scripted 503 sets the backoff delay."""
    clock = FakeClock()
    transport = FaultTransport([Reply(503, headers={"Retry-After": "1"}), 200])
    with _client(transport, clock, deadline=3.0) as client:
        assert client.get("/x").status_code == 200
    assert clock.sleeps and clock.sleeps[0] >= 1.0


def test_breaker_opens_on_scripted_failures() -> None:
    """Failures from the script open the breaker; later calls never reach the transport."""
    clock = FakeClock()
    transport = FaultTransport(default=500)
    policy = BreakerPolicy(volume_threshold=3, reset_timeout=10.0)
    with _client(transport, clock, breaker=policy, retry=RetryPolicy.disabled()) as client:
        for _ in range(3):
            assert client.get("/x").status_code == 500
        with pytest.raises(CircuitOpenError):
            client.get("/x")
    assert transport.count() == 3


def test_counts_are_per_method_and_path() -> None:
    """count() filters by method and path."""
    transport = FaultTransport()
    for method, path in (("GET", "/a"), ("POST", "/a"), ("GET", "/b")):
        transport.handle_request(httpx.Request(method, f"http://x{path}"))
    assert (transport.count("GET"), transport.count("post"), transport.count(path="/a")) == (
        2,
        1,
        2,
    )


def test_unknown_outcome_is_rejected() -> None:
    """A typo in the script fails at once, naming the known outcomes."""
    with pytest.raises(ValueError, match="refuse"):
        FaultTransport(["refused"])


@pytest.mark.anyio
async def test_async_fault_transport_drives_the_async_pipeline() -> None:
    """AsyncFaultTransport plays the same script for AsyncServiceClient."""
    clock = FakeClock()
    transport = AsyncFaultTransport([503, "connect_timeout", Reply(200, json={"n": 1})])
    async with AsyncServiceClient(
        "user-service",
        transport=transport,
        registry=CollectorRegistry(),
        clock=clock,
        sleep=clock.asleep,
    ) as client:
        assert (await client.get("/x")).json() == {"n": 1}
    assert transport.count() == 3


# -- test mode ------------------------------------------------------------------------------


def test_test_mode_switch_restores_the_previous_state() -> None:
    """no_retry_sleeps turns test mode on inside the block only; blocks nest."""
    assert not is_testing()
    with no_retry_sleeps():
        assert is_testing()
        with no_retries():
            assert _testmode.attempts_cap() == 1
        assert _testmode.attempts_cap() is None
    assert not is_testing()


def test_guarded_sleep_skips_while_testing() -> None:
    """The sleep wrapper the transports use does nothing in test mode."""
    slept: list[float] = []
    sleep = _testmode.guard_sleep(slept.append)
    sleep(0.5)
    with no_retry_sleeps():
        sleep(0.5)
    assert slept == [0.5]


def test_allow_retry_caps_attempts() -> None:
    """With attempts=2 the first retry is allowed and the second is not."""
    set_testing(True, attempts=2)
    try:
        assert _testmode.allow_retry(1)
        assert not _testmode.allow_retry(2)
    finally:
        set_testing(False)
    assert _testmode.allow_retry(5)


def test_invalid_attempt_cap_is_rejected() -> None:
    """attempts must be a positive integer."""
    with pytest.raises(ValueError):
        set_testing(True, attempts=0)
    assert not is_testing()


WIRED = "_testmode" in inspect.getsource(_transport)


@pytest.mark.skipif(not WIRED, reason="svcclient/_transport.py does not read _testmode yet")
def test_no_retry_sleeps_makes_retries_instant() -> None:
    """A 3-attempt retry with long backoff takes no backoff sleep under no_retry_sleeps.

    Counted, not timed: the client's ``sleep`` records every backoff it is asked for. The
    control (same client, outside the block) shows the two jittered sleeps do happen."""
    transport = FaultTransport([503, 503, 200, 503, 503, 200])
    policy = RetryPolicy(attempts=3, backoff_base=1.0, backoff_cap=1.0)
    slept: list[float] = []
    client = ServiceClient(
        ServiceConfig(
            "user-service", url="http://user-service:3000", deadline=10.0, timeout=1.0, retry=policy
        ),
        transport=transport,
        registry=CollectorRegistry(),
        sleep=slept.append,
    )
    with no_retry_sleeps():
        start = time.perf_counter()
        assert client.get("/x").status_code == 200
        elapsed = time.perf_counter() - start
    assert transport.count() == 3
    assert slept == []
    assert elapsed < 5.0  # generous: nothing else waits either
    assert client.get("/x").status_code == 200  # the control, test mode off
    assert transport.count() == 6
    assert len(slept) == 2 and all(0 < s <= 1.0 for s in slept)


# -- the pytest plugin ----------------------------------------------------------------------

PLUGIN_TESTS = """
import httpx
from svcclient import DnsResolver, ServiceClient, breakers

def test_registry_is_fresh(svc_registry):
    assert list(svc_registry.collect()) == []

def test_breakers_cleared(svc_breakers):
    assert len(svc_breakers) == 0
    svc_breakers.get_or_create("leaky")

def test_breakers_cleared_again(svc_breakers):
    assert "leaky" not in svc_breakers

def test_env(svc_env, start_fault_server, svc_registry):
    server = start_fault_server("127.0.0.2")
    svc_env.url("user-service", server.url)
    with ServiceClient("user-service", registry=svc_registry) as client:
        assert client.discovery.source == "env"
        assert client.get("/hi").json()["path"] == "/hi"

def test_kubernetes_env(svc_env):
    svc_env.kubernetes("user-service", "10.0.0.7", 8080)
    from svcclient import discover
    assert discover("user-service").url == "http://10.0.0.7:8080"

def test_local_dns(local_dns):
    local_dns.set_records("svc.test", ["127.0.0.2"], ttl=9)
    res = DnsResolver([local_dns.nameserver], timeout=0.5).resolve("svc.test", 80)
    assert res.ttl == 9.0

def test_test_mode(svc_test_mode):
    from svcclient.testing import is_testing
    assert is_testing()
"""


def test_plugin_fixtures(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plugin fixture works in a user's test run."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "pytest_svcclient", "-q")
    result.assert_outcomes(passed=7)


LAZY_CHECK = """
import sys

def test_nothing_of_svcclient_is_imported():
    assert "pytest_svcclient" in sys.modules  # the plugin is loaded...
    loaded = sorted(m for m in sys.modules if m == "svcclient" or m.startswith("svcclient."))
    assert loaded == []  # ...and imported nothing of svcclient

def test_a_fixture_imports_on_use(svc_breakers):
    assert "svcclient" in sys.modules and len(svc_breakers) == 0
"""


def test_plugin_imports_no_svcclient_module_until_a_fixture_is_used(
    pytester: pytest.Pytester,
) -> None:
    """With the installed entry point, a run imports no svcclient module until needed."""
    pytester.makepyfile(test_lazy=LAZY_CHECK)
    collected = pytester.runpytest_subprocess("--co", "-q", "-p", "no:randomly")
    collected.assert_outcomes()
    assert "2 tests collected" in collected.stdout.str()
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly", "test_lazy.py")
    result.assert_outcomes(passed=2)


def test_empty_project_collection_imports_no_svcclient(pytester: pytest.Pytester) -> None:
    """An empty project's ``pytest --co`` (plugin auto-loaded) imports no svcclient module."""
    pytester.makeconftest(
        """
import sys

def pytest_collection_finish(session):
    loaded = sorted(m for m in sys.modules if m == "svcclient" or m.startswith("svcclient."))
    print("SVCCLIENT_MODULES", loaded)
    assert "pytest_svcclient" in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("--co", "-s", "-p", "no:randomly")
    assert "SVCCLIENT_MODULES []" in result.stdout.str()
