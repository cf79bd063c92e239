"""ServiceClient against real loopback servers named by a real DNS server (issue 2)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from svcclient import (
    AsyncServiceClient,
    DeadlineExceeded,
    DiscoveryError,
    OutlierPolicy,
    ServiceClient,
)
from svcclient.testing._faultserver import Fault, FaultServer
from tests.integration.netutil import HOSTS, common_port, who

pytestmark = pytest.mark.integration


@pytest.fixture
def trio(fault_server: Callable[..., FaultServer]) -> list[FaultServer]:
    """Three servers on 127.0.0.2-4, same port, named a/b/c."""
    port = common_port(HOSTS + ("127.0.0.5",))
    return [fault_server(h, port, name=n) for h, n in zip(HOSTS, "abc", strict=True)]


def test_name_with_several_a_records_spreads_over_every_pod(
    trio: list[FaultServer], dnsmasq: Callable[..., object]
) -> None:
    """One name, three A records: round robin reaches each within +-1; Host stays the name."""
    port = trio[0].port
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=30)
    with ServiceClient(
        "users",
        balancing={"strategy": "round_robin"},
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],
        hooks=[],
    ) as client:
        seen = collections.Counter(who(client.get("/users/1")) for _ in range(30))
    assert sorted(seen) == ["a", "b", "c"]
    assert max(seen.values()) - min(seen.values()) <= 1
    for server in trio:
        assert {r.headers.get("host") for r in server.requests} == {f"users.svc.test:{port}"}


def test_re_resolution_adds_and_removes_endpoints_without_failing_in_flight(
    trio: list[FaultServer],
    fault_server: Callable[..., FaultServer],
    dnsmasq: Callable[..., object],
) -> None:
    """After the TTL the new set is used; a slow request on the removed pod still completes."""
    port = trio[0].port
    new = fault_server("127.0.0.5", port, name="d")
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=1)
    trio[2].set_fault(Fault.slow(0.8))
    errors: list[BaseException] = []
    with ServiceClient(
        "users",
        balancing={"strategy": "round_robin"},
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],
        hooks=[],
    ) as client:
        for _ in range(3):
            client.get("/warm")
        in_flight: list[str] = []

        def slow_call() -> None:
            try:
                in_flight.append(who(client.get("/slow", extensions={"retry": False})))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        # Round robin: the next pick after 3 warm calls is the first endpoint again; make
        # calls until one lands on the slow pod in a thread.
        threads = [threading.Thread(target=slow_call) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        dns.set_records({"users.svc.test": ["127.0.0.2", "127.0.0.3", "127.0.0.5"]})
        time.sleep(1.2)  # > TTL
        after = collections.Counter(who(client.get("/after")) for _ in range(12))
        for t in threads:
            t.join(5)
    assert not errors
    assert "c" in in_flight  # the removed pod's in-flight request completed
    assert "c" not in after and after["d"] >= 3
    assert new.count(path="/after") == after["d"]


def test_dns_outage_keeps_the_last_good_endpoint_set(
    trio: list[FaultServer], dnsmasq: Callable[..., object]
) -> None:
    """When DNS stops answering after the TTL, the last good set keeps serving."""
    port = trio[0].port
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=1)
    with ServiceClient(
        "users",
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],
        dns_timeout=0.3,
        hooks=[],
    ) as client:
        assert client.get("/a").status_code == 200
        with dns.stopped_answering():  # type: ignore[attr-defined]
            time.sleep(1.1)
            started = time.monotonic()
            codes = [client.get("/b").status_code for _ in range(9)]
            took = time.monotonic() - started
    assert codes == [200] * 9
    assert took < 2.0  # one bounded DNS timeout, not one per request


def test_unknown_service_raises_discovery_error_naming_the_rules(
    dnsmasq: Callable[..., object],
) -> None:
    """No env, no default, NXDOMAIN for the cluster name: DiscoveryError lists the rules."""
    dns = dnsmasq({"other.svc.test": ["127.0.0.2"]}, ttl=5)
    with ServiceClient(
        "ghost",
        namespace="shop",
        cluster_domain="test",
        dns_nameservers=[dns.nameserver],
        hooks=[],
    ) as client:
        assert client.discovery.url == "http://ghost.shop.svc.test.:80"
        with pytest.raises(DiscoveryError) as info:
            client.get("/x")
    message = str(info.value)
    for rule in ("env:", "kubernetes_env:", "default:", "cluster_dns:"):
        assert rule in message
    assert info.value.service == "ghost"


def test_env_url_points_at_a_real_server(
    fault_server: Callable[..., FaultServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """USER_SERVICE_URL wins; the call reaches that server."""
    server = fault_server("127.0.0.2", name="env")
    monkeypatch.setenv("USER_SERVICE_URL", server.url)
    with ServiceClient("user-service", url="http://127.0.0.9:1", hooks=[]) as client:
        assert client.discovery.source == "env"
        assert who(client.get("/users/7")) == "env"


def test_refused_endpoint_is_retried_elsewhere(
    trio: list[FaultServer], dnsmasq: Callable[..., object]
) -> None:
    """One pod refusing connections costs the caller nothing: every call succeeds."""
    port = trio[0].port
    trio[1].refuse()
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=30)
    with ServiceClient(
        "users",
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],
        outlier=OutlierPolicy(consecutive_failures=2),
        hooks=[],
    ) as client:
        codes = [client.get("/x").status_code for _ in range(30)]
    assert codes == [200] * 30


def test_stall_past_the_deadline_raises_in_time(fault_server: Callable[..., FaultServer]) -> None:
    """A server stalling before headers: DeadlineExceeded after ~deadline, never a hang."""
    server = fault_server("127.0.0.2", name="stall")
    server.set_fault(Fault.stall_before_headers(5.0))
    with ServiceClient(
        "staller", url=server.url, timeout=0.4, deadline=1.0, breaker=None, hooks=[]
    ) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            client.get("/x")
        took = time.monotonic() - started
    assert 0.9 <= took < 2.5  # the deadline plus slack for a loaded CI machine
    assert info.value.attempts and all(a.outcome == "read_timeout" for a in info.value.attempts)


@pytest.mark.anyio
async def test_async_client_spreads_over_dns_endpoints(
    trio: list[FaultServer], dnsmasq: Callable[..., object]
) -> None:
    """The async client resolves with dnspython's async resolver and balances the same way."""
    port = trio[0].port
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=30)
    async with AsyncServiceClient(
        "users",
        balancing={"strategy": "round_robin"},
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],
        hooks=[],
    ) as client:
        seen = collections.Counter([who(await client.get("/u")) for _ in range(12)])
    assert seen == {"a": 4, "b": 4, "c": 4}


@pytest.mark.anyio
async def test_async_stall_is_cut_at_the_attempt_timeout(
    fault_server: Callable[..., FaultServer],
) -> None:
    """Async attempts are bounded in total, so a stall mid-body cannot outlive the deadline."""
    server = fault_server("127.0.0.2", name="mid")
    server.set_fault(Fault.stall_mid_body(5.0))
    async with AsyncServiceClient(
        "mid", url=server.url, timeout=0.3, deadline=0.9, breaker=None, hooks=[]
    ) as client:
        started = time.monotonic()
        with pytest.raises((DeadlineExceeded, httpx.ReadTimeout)):
            await client.get("/x")
        assert time.monotonic() - started < 2.5  # deadline 0.9 plus slack
