"""DNS as a pod sees it (issue 13): search list with explicit servers, absolute names,
unusable addresses dropped, the system-resolver fallback reported once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.resolver
import pytest

from svcclient import ConfigError, ServiceConfig
from svcclient._cli import doctor
from svcclient._discovery.dns import DnsLookupError, DnsResolver, unusable_reason
from svcclient._endpoint import Endpoint
from svcclient._pipeline.service_state import ServiceRuntime
from svcclient.testing import LocalDns

FQDN = "user-service.default.svc.cluster.local"
RESOLV = (
    "nameserver 10.255.255.1\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
    "options ndots:5\n"
)


@pytest.fixture
def pod_resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """dnspython reads a pod's resolv.conf instead of this machine's."""
    path = tmp_path / "resolv.conf"
    path.write_text(RESOLV)
    real = dns.resolver.Resolver

    class PodResolver(real):  # type: ignore[misc, valid-type]
        def __init__(self, filename: str = "", configure: bool = True) -> None:
            super().__init__(filename=str(path), configure=configure)

    monkeypatch.setattr(dns.resolver, "Resolver", PodResolver)
    return path


@pytest.fixture
def zone() -> Iterator[LocalDns]:
    """A local authoritative server holding the pod's Service name."""
    with LocalDns(ttl=5) as server:
        server.set_records(FQDN, ["127.0.0.2", "127.0.0.3"])
        yield server


def _resolver(server: LocalDns, **kw: Any) -> DnsResolver:
    return DnsResolver([server.nameserver], timeout=2.0, **kw)


def test_explicit_nameservers_keep_the_search_list_and_ndots(
    pod_resolv_conf: Path, zone: LocalDns
) -> None:
    """The short name resolves via resolv.conf's search list: 2 queries (A, then AAAA)."""
    r = _resolver(zone)
    assert r.ndots == 5 and r.search_list()[0] == "default.svc.cluster.local."
    res = r.resolve("user-service", 80)
    assert [e.host for e in res.endpoints] == ["127.0.0.2", "127.0.0.3"]
    assert zone.queries == [(FQDN, "A"), (FQDN, "AAAA")]


def test_empty_dns_search_turns_the_search_list_off(pod_resolv_conf: Path, zone: LocalDns) -> None:
    """dns_search=[]: the short name is asked as it is, and does not exist."""
    with pytest.raises(DnsLookupError) as info:
        _resolver(zone, search=[]).resolve("user-service", 80)
    assert info.value.kind == "nxdomain"
    assert zone.queries == [("user-service", "A")]


def test_absolute_name_is_two_queries_like_glibc(pod_resolv_conf: Path, zone: LocalDns) -> None:
    """A trailing dot skips the search list: exactly A and AAAA of the name."""
    _resolver(zone).resolve(FQDN + ".", 80)
    assert zone.queries == [(FQDN, "A"), (FQDN, "AAAA")]


def test_relative_fqdn_walks_the_search_list_once(pod_resolv_conf: Path, zone: LocalDns) -> None:
    """4 dots < ndots:5: three NXDOMAINs before the name for A, but AAAA asks it directly."""
    _resolver(zone).resolve(FQDN, 80)
    assert len(zone.queries) == 5
    assert zone.queries[-1] == (FQDN, "AAAA")


def test_cluster_dns_rule_resolves_in_two_queries(pod_resolv_conf: Path, zone: LocalDns) -> None:
    """The cluster-DNS rule's absolute URL host costs 2 queries per refresh (was 8)."""
    rt = ServiceRuntime(
        ServiceConfig("user-service", namespace="default", dns_nameservers=(zone.nameserver,)),
        [],
        owns_transport=True,
    )
    assert rt.origin.host == FQDN + "."
    assert rt.resolver is not None
    rt.resolver.resolve(rt.origin.host, rt.origin.port)
    assert len(zone.queries) == 2


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", None),
        ("::1", None),
        ("10.1.2.3", None),
    ],
)
def test_unusable_reason(address: str, reason: str | None) -> None:
    """Addresses no pod listens on are named; loopback and private ones are fine."""
    assert unusable_reason(address) == reason


def test_odd_answers_are_dropped_with_a_warning_and_counted(
    zone: LocalDns, caplog: pytest.LogCaptureFixture
) -> None:
    """0.0.0.0, metadata, broadcast and multicast never become endpoints."""
    odd = ["0.0.0.0", "169.254.169.254", "255.255.255.255", "224.0.0.1"]
    zone.set_records("odd.test", [*odd, "127.0.0.2"])
    r = _resolver(zone, search=[])
    with caplog.at_level(logging.WARNING, logger="svcclient"):
        res = r.resolve("odd.test.", 80)
    assert res.endpoints == (Endpoint("127.0.0.2", 80),)
    assert r.dropped_addresses == 4
    assert any("169.254.169.254" in rec.message for rec in caplog.records)


def test_allow_list_lets_a_legitimate_link_local_answer_through(zone: LocalDns) -> None:
    """allow_addresses exempts the networks it names, nothing else."""
    zone.set_records("meta.test", ["169.254.10.5", "169.254.169.254"])
    res = _resolver(zone, search=[], allow_addresses=["169.254.10.0/24"]).resolve("meta.test.", 80)
    assert res.endpoints == (Endpoint("169.254.10.5", 80),)


def test_answer_with_only_unusable_addresses_is_no_answer(zone: LocalDns) -> None:
    """Nothing usable left: a no_answer lookup error, so the last good set keeps serving."""
    zone.set_records("zero.test", ["0.0.0.0"])
    with pytest.raises(DnsLookupError) as info:
        _resolver(zone, search=[]).resolve("zero.test.", 80)
    assert info.value.kind == "no_answer"


def test_bad_allow_list_entry_is_config_error() -> None:
    """A typo in dns_allow_addresses names the key."""
    with pytest.raises(ConfigError) as info:
        DnsResolver(["127.0.0.1"], allow_addresses=["169.254.x"])
    assert info.value.key == "dns_allow_addresses"


def test_system_fallback_is_logged_once_and_remembered(
    zone: LocalDns, caplog: pytest.LogCaptureFixture
) -> None:
    """auto mode, a name DNS does not know: one warning, however many refreshes fail."""
    cfg = ServiceConfig("ghost", url="http://ghost.test:80", dns_nameservers=(zone.nameserver,))
    rt = ServiceRuntime(cfg, [], owns_transport=True)
    with caplog.at_level(logging.WARNING, logger="svcclient"):
        for _ in range(3):
            rt.refresh_failed(DnsLookupError("ghost.test", "name does not exist", kind="nxdomain"))
    assert rt.system_fallback is not None
    assert rt.balancer.endpoints == (rt.origin,)
    assert len([r for r in caplog.records if "system resolver" in r.message]) == 1


def test_doctor_shows_the_system_fallback(zone: LocalDns, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor warns that the client would leave DNS for getaddrinfo."""
    monkeypatch.setattr(doctor, "_system_lookup", lambda host, port: [Endpoint("127.0.0.9", port)])
    report = doctor.dns_step("ghost.test", 80, nameservers=(zone.nameserver,), search=())
    assert report.ok and report.source == "system"
    assert report.note is not None and "falls back to the system resolver" in report.note
