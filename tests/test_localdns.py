"""LocalDns: the in-process authoritative DNS server used by the demo and user tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from svcclient import DnsLookupError, DnsResolver, Endpoint
from svcclient.testing._localdns import LocalDns


@pytest.fixture
def zone() -> Iterator[LocalDns]:
    with LocalDns() as server:
        yield server


def _resolver(server: LocalDns, **kw: object) -> DnsResolver:
    return DnsResolver([server.nameserver], timeout=0.5, **kw)  # type: ignore[arg-type]


def _raw(server: LocalDns, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, server.host, port=server.port, timeout=1.0)


def test_a_records_answer_with_ttl(zone: LocalDns) -> None:
    """Every address set for a name comes back as an endpoint, with the record TTL."""
    zone.set_records("users.demo.svc.cluster.local", ["127.0.0.3", "127.0.0.2"], ttl=30)
    res = _resolver(zone).resolve("users.demo.svc.cluster.local", 8080)
    assert res.endpoints == (Endpoint("127.0.0.2", 8080), Endpoint("127.0.0.3", 8080))
    assert res.ttl == 30.0
    assert res.source == "dns"


def test_ipv6_addresses_are_aaaa_records(zone: LocalDns) -> None:
    """IPv6 addresses are served as AAAA, IPv4 as A, under the same name."""
    zone.set_records("dual.test", ["127.0.0.2", "::1"], ttl=5)
    assert _raw(zone, "dual.test", "AAAA").answer[0].to_text().endswith("AAAA ::1")
    res = _resolver(zone).resolve("dual.test", 80)
    assert {e.host for e in res.endpoints} == {"127.0.0.2", "::1"}


def test_unknown_name_is_nxdomain(zone: LocalDns) -> None:
    """A name the zone does not hold answers NXDOMAIN."""
    with pytest.raises(DnsLookupError) as info:
        _resolver(zone).resolve("missing.test", 80)
    assert info.value.kind == "nxdomain"


def test_known_name_without_the_type_is_nodata(zone: LocalDns) -> None:
    """A name with only A records answers an AAAA query NOERROR with no records."""
    zone.set_records("v4only.test", ["127.0.0.2"])
    reply = _raw(zone, "v4only.test", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []


def test_names_are_case_insensitive_and_dot_agnostic(zone: LocalDns) -> None:
    """'API.Test.' and 'api.test' are the same name."""
    zone.set_records("API.Test.", ["127.0.0.5"])
    assert _resolver(zone).resolve("api.test", 1).endpoints == (Endpoint("127.0.0.5", 1),)


def test_set_records_replaces_and_remove_forgets(zone: LocalDns) -> None:
    """set_records replaces a name's addresses; remove makes it NXDOMAIN."""
    zone.set_records("svc.test", ["127.0.0.2", "127.0.0.3"])
    zone.set_records("svc.test", ["127.0.0.4"])
    assert _resolver(zone).resolve("svc.test", 80).endpoints == (Endpoint("127.0.0.4", 80),)
    zone.remove("svc.test")
    with pytest.raises(DnsLookupError):
        _resolver(zone).resolve("svc.test", 80)


def test_srv_records_give_targets_and_ports(zone: LocalDns) -> None:
    """SRV records name targets and ports; the resolver follows them to A records."""
    zone.set_records("a.svc.test", ["127.0.0.2"])
    zone.set_records("b.svc.test", ["127.0.0.3"])
    zone.set_srv("_http._tcp.svc.test", [("a.svc.test", 8001), ("b.svc.test", 8002)], ttl=7)
    res = _resolver(zone, use_srv=True).resolve("svc.test", 80)
    assert res.endpoints == (Endpoint("127.0.0.2", 8001), Endpoint("127.0.0.3", 8002))
    assert res.source == "srv"


def test_silent_server_makes_lookups_time_out(zone: LocalDns) -> None:
    """set_silent drops queries, so a lookup fails with kind 'timeout'."""
    zone.set_records("svc.test", ["127.0.0.2"])
    zone.set_silent(True)
    with pytest.raises(DnsLookupError) as info:
        DnsResolver([zone.nameserver], timeout=0.2).resolve("svc.test", 80)
    assert info.value.kind == "timeout"
    zone.set_silent(False)
    assert _resolver(zone).resolve("svc.test", 80).endpoints


def test_garbage_datagram_is_ignored(zone: LocalDns) -> None:
    """A datagram that is not DNS gets no reply and does not stop the server."""
    zone.set_records("svc.test", ["127.0.0.2"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00not dns", (zone.host, zone.port))
    assert _resolver(zone).resolve("svc.test", 80).endpoints == (Endpoint("127.0.0.2", 80),)


def test_queries_are_recorded(zone: LocalDns) -> None:
    """Each query is recorded as (name, type) for assertions."""
    zone.set_records("svc.test", ["127.0.0.2"])
    _resolver(zone).resolve("svc.test", 80)
    assert ("svc.test", "A") in zone.queries


def test_only_loopback_addresses_bind() -> None:
    """Binding a non-loopback address is refused before any socket opens."""
    with pytest.raises(ValueError, match="loopback"):
        LocalDns("10.0.0.1")


def test_negative_ttl_is_rejected(zone: LocalDns) -> None:
    """A negative TTL is an error, not a silently clamped value."""
    with pytest.raises(ValueError, match="TTL"):
        zone.set_records("svc.test", ["127.0.0.2"], ttl=-1)


def test_stop_twice_is_harmless() -> None:
    """stop() is idempotent and frees the port."""
    server = LocalDns().start()
    port = server.port
    server.stop()
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
