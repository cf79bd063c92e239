"""DnsResolver and EndpointSet against a real local dnsmasq on a high port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from svcclient._discovery.dns import DnsLookupError, DnsResolver
from svcclient._discovery.endpoint_set import EndpointSet
from svcclient._endpoint import Endpoint
from svcclient.testing._faultserver import FaultServer

pytestmark = pytest.mark.integration

# The fixture returns conftest.Dnsmasq; conftest modules are not importable by name.
StartDns = Callable[..., Any]
MakeServer = Callable[..., FaultServer]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def eps(*hosts: str, port: int = 80) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(h, port) for h in hosts)


def test_several_a_records_all_become_endpoints(dnsmasq: StartDns) -> None:
    """A name with three A records resolves to all three, sorted, with the caller's port."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.4", "127.0.0.2", "127.0.0.3"]}, ttl=5)
    res = DnsResolver([dns.nameserver]).resolve("api.svc.test", 8080)
    assert res.endpoints == eps("127.0.0.2", "127.0.0.3", "127.0.0.4", port=8080)
    assert res.source == "dns"


@pytest.mark.anyio
async def test_async_resolution_matches_sync(dnsmasq: StartDns) -> None:
    """aresolve returns the same resolution as resolve."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2", "127.0.0.3", "::1"]}, ttl=5)
    r = DnsResolver([dns.nameserver])
    assert await r.aresolve("api.svc.test", 80) == r.resolve("api.svc.test", 80)
    assert (await r.aresolve("api.svc.test", 80)).endpoints == eps("127.0.0.2", "127.0.0.3", "::1")


def test_a_only_and_aaaa_only_names_resolve(dnsmasq: StartDns) -> None:
    """A-only names are not failed by the empty AAAA answer, and AAAA-only names work."""
    dns = dnsmasq({"v4.svc.test": ["127.0.0.2"], "v6.svc.test": ["::1"]})
    r = DnsResolver([dns.nameserver])
    assert r.resolve("v4.svc.test", 80).endpoints == eps("127.0.0.2")
    assert r.resolve("v6.svc.test", 80).endpoints == eps("::1")


@pytest.mark.parametrize(("ttl", "expected"), [(7, 7.0), (0, 1.0)])
def test_record_ttl_is_honoured_and_floored(dnsmasq: StartDns, ttl: int, expected: float) -> None:
    """The resolution carries the server's TTL; a TTL of 0 is raised to the 1 s floor."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]}, ttl=ttl)
    assert DnsResolver([dns.nameserver]).resolve("api.svc.test", 80).ttl == expected


def test_changed_records_are_picked_up_after_the_ttl(dnsmasq: StartDns) -> None:
    """EndpointSet keeps the old set until the TTL expires, then re-resolves the new one."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2", "127.0.0.3"]}, ttl=1)
    resolver = DnsResolver([dns.nameserver])
    endpoints = EndpointSet("api", "api.svc.test", 80, min_refresh=0.5)
    assert endpoints.begin_refresh()
    endpoints.update(resolver.resolve(endpoints.host, endpoints.port))
    assert endpoints.current == eps("127.0.0.2", "127.0.0.3")

    dns.set_records({"api.svc.test": ["127.0.0.3", "127.0.0.4"]})  # one added, one removed
    assert not endpoints.needs_refresh()  # within the TTL the old set serves, no lookup
    deadline = time.monotonic() + 3
    while not endpoints.needs_refresh() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoints.begin_refresh()
    assert endpoints.update(resolver.resolve(endpoints.host, endpoints.port)) is True
    assert endpoints.current == eps("127.0.0.3", "127.0.0.4")
    assert endpoints.version == 2


def test_nxdomain_raises_lookup_error(dnsmasq: StartDns) -> None:
    """An unknown name raises DnsLookupError with nxdomain=True."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]})
    with pytest.raises(DnsLookupError) as info:
        DnsResolver([dns.nameserver]).resolve("missing.svc.test", 80)
    assert info.value.nxdomain is True
    assert info.value.kind == "nxdomain"
    assert "missing.svc.test" in str(info.value)


@pytest.mark.anyio
async def test_async_nxdomain_raises_lookup_error(dnsmasq: StartDns) -> None:
    """aresolve raises the same nxdomain error."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]})
    with pytest.raises(DnsLookupError) as info:
        await DnsResolver([dns.nameserver]).aresolve("missing.svc.test", 80)
    assert info.value.nxdomain is True


def test_name_removed_becomes_nxdomain_but_last_good_set_serves(dnsmasq: StartDns) -> None:
    """When a name disappears the re-resolution fails and the last good set stays."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]}, ttl=1)
    resolver = DnsResolver([dns.nameserver])
    endpoints = EndpointSet("api", "api.svc.test", 80)
    endpoints.update(resolver.resolve("api.svc.test", 80), 0.0)
    dns.set_records({})
    with pytest.raises(DnsLookupError) as info:
        resolver.resolve("api.svc.test", 80)
    endpoints.refresh_failed(info.value, 1.0)
    assert endpoints.current == eps("127.0.0.2")
    assert endpoints.last_error is info.value


def test_server_that_stops_answering_times_out_within_budget(dnsmasq: StartDns) -> None:
    """A paused dnsmasq gives a timeout error within the resolver's timeout (plus slack)."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]})
    resolver = DnsResolver([dns.nameserver], timeout=0.3)
    good = resolver.resolve("api.svc.test", 80)
    with dns.stopped_answering():
        t0 = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.resolve("api.svc.test", 80)
        elapsed = time.monotonic() - t0
    assert info.value.kind == "timeout" and info.value.timed_out
    assert elapsed < 2.0  # the bound plus slack for a loaded CI machine
    assert resolver.resolve("api.svc.test", 80) == good  # answers again after SIGCONT


def test_dead_first_nameserver_fails_over_within_budget(dnsmasq: StartDns) -> None:
    """A silent first nameserver costs half the budget; the second one answers in time."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"]})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{black_hole.getsockname()[1]}"
        resolver = DnsResolver([dead, dns.nameserver], timeout=1.0)
        t0 = time.monotonic()
        res = resolver.resolve("api.svc.test", 80)
        elapsed = time.monotonic() - t0
    assert res.endpoints == eps("127.0.0.2")
    assert elapsed < 2.0  # the bound plus slack for a loaded CI machine


@pytest.mark.anyio
async def test_async_timeout_keeps_last_good_set(dnsmasq: StartDns) -> None:
    """An async timeout is reported to EndpointSet, which keeps serving the last good set."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2", "127.0.0.3"]})
    resolver = DnsResolver([dns.nameserver], timeout=0.3)
    endpoints = EndpointSet("api", "api.svc.test", 80, failure_retry=5)
    endpoints.update(await resolver.aresolve("api.svc.test", 80), 0.0)
    with dns.stopped_answering():
        t0 = time.monotonic()
        try:
            endpoints.update(await resolver.aresolve("api.svc.test", 80), 10.0)
        except DnsLookupError as exc:
            endpoints.refresh_failed(exc, 10.0)
        assert time.monotonic() - t0 < 2.0  # the bound plus slack for a loaded machine
    assert isinstance(endpoints.last_error, DnsLookupError)
    assert endpoints.last_error.kind == "timeout"
    assert endpoints.current == eps("127.0.0.2", "127.0.0.3")


def test_srv_records_give_targets_and_ports(dnsmasq: StartDns) -> None:
    """SRV _http._tcp.<name> targets resolve to A records carrying the SRV ports."""
    dns = dnsmasq(
        {"a.svc.test": ["127.0.0.2"], "b.svc.test": ["127.0.0.3"], "c.svc.test": ["127.0.0.9"]},
        ttl=4,
        srv=[
            ("_http._tcp.api.svc.test", "a.svc.test", 8081, 0, 10),
            ("_http._tcp.api.svc.test", "b.svc.test", 8082, 0, 10),
            ("_http._tcp.api.svc.test", "c.svc.test", 8083, 5, 10),  # backup: lower priority
        ],
    )
    res = DnsResolver([dns.nameserver], use_srv=True).resolve("api.svc.test", 80)
    assert res.source == "srv"
    assert res.endpoints == (Endpoint("127.0.0.2", 8081), Endpoint("127.0.0.3", 8082))
    assert res.ttl == 4.0


def test_srv_name_override_and_fallback_without_srv(dnsmasq: StartDns) -> None:
    """srv_name picks another SRV name; a name without SRV falls back to A records."""
    dns = dnsmasq({"api.svc.test": ["127.0.0.2"], "grpc.svc.test": ["127.0.0.3"]})
    dns.set_srv([("_grpc._tcp.api.svc.test", "grpc.svc.test", 50051)])
    r = DnsResolver([dns.nameserver], srv_name="_grpc._tcp.api.svc.test")
    assert r.resolve("api.svc.test", 80).endpoints == (Endpoint("127.0.0.3", 50051),)
    fallback = DnsResolver([dns.nameserver], use_srv=True).resolve("api.svc.test", 3000)
    assert fallback.endpoints == (Endpoint("127.0.0.2", 3000),)
    assert fallback.source == "dns"


def test_resolved_endpoints_serve_requests_with_original_host_header(
    dnsmasq: StartDns, fault_server: MakeServer
) -> None:
    """Each resolved address is a live FaultServer reached with the service's Host header."""
    a = fault_server("127.0.0.2", name="a", echo_headers=True)
    b = fault_server("127.0.0.3", a.port, name="b", echo_headers=True)
    dns = dnsmasq({"users.svc.test": ["127.0.0.2", "127.0.0.3"]})
    res = DnsResolver([dns.nameserver]).resolve("users.svc.test", a.port)
    seen = []
    with httpx.Client(timeout=2) as client:
        for ep in res.endpoints:
            body = client.get(
                f"http://{ep.key}/users", headers={"Host": f"users.svc.test:{ep.port}"}
            ).json()
            seen.append((body["server"], body["headers"]["host"]))
    assert seen == [("a", f"users.svc.test:{a.port}"), ("b", f"users.svc.test:{a.port}")]
    assert b.count("GET", "/users") == 1
