"""DNS faults through a real local dnsmasq, seen by a real ServiceClient (issue 7).

NXDOMAIN must give ``DiscoveryError`` naming the rules; a changed answer must be used
once its TTL has passed (not before, not per request); a DNS server that stops answering
must leave the last good endpoint set serving, with a delay bounded by ``dns_timeout``.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import httpx
import pytest

from svcclient import AsyncServiceClient, DiscoveryError, ServiceClient
from svcclient.testing._faultserver import FaultServer
from tests.integration.netutil import HOSTS, common_port, timed, who

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]
NAME = "api.svc.test"
SLACK = 0.6


class _Dns(Protocol):
    @property
    def nameserver(self) -> str: ...

    def set_records(self, records: Mapping[str, Sequence[str]]) -> None: ...

    def stopped_answering(self) -> contextlib.AbstractContextManager[None]: ...


StartDns = Callable[..., _Dns]


@pytest.fixture
def trio(fault_server: MakeServer) -> list[FaultServer]:
    """Servers a, b, c on 127.0.0.2-4, one shared port."""
    port = common_port(HOSTS)
    return [fault_server(h, port, name=n) for h, n in zip(HOSTS, "abc", strict=True)]


# -- NXDOMAIN ------------------------------------------------------------------------------


def test_nxdomain_raises_discovery_error_naming_the_rules(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """NXDOMAIN for the service's host: DiscoveryError at once, listing every rule tried."""
    dns = dnsmasq({"other.svc.test": [HOSTS[0]]}, ttl=5)
    with no_fd_leak():
        with ServiceClient(
            "ghost",
            url=f"http://ghost.svc.test:{trio[0].port}",
            resolve="dns",
            dns_nameservers=[dns.nameserver],
            hooks=[],
        ) as client:
            with timed() as took, pytest.raises(DiscoveryError) as info:
                client.get("/x")
    message = str(info.value)
    assert "NXDOMAIN" in message
    for rule in ("env:", "kubernetes_env:", "default:", "cluster_dns:"):
        assert rule in message
    assert info.value.service == "ghost"
    assert took[0] < 1.0
    assert sum(s.count() for s in trio) == 0


def test_nxdomain_gives_discovery_error_on_every_call(
    trio: list[FaultServer], dnsmasq: StartDns
) -> None:
    """While the name is NXDOMAIN, every call (not only the first) raises DiscoveryError."""
    dns = dnsmasq({"other.svc.test": [HOSTS[0]]}, ttl=5)
    errors: list[str] = []
    with ServiceClient(
        "ghost2",
        url=f"http://ghost2.svc.test:{trio[0].port}",
        resolve="dns",
        dns_nameservers=[dns.nameserver],
        hooks=[],
    ) as client:
        for _ in range(3):
            with pytest.raises(httpx.TransportError) as info:
                client.get("/x")
            errors.append(type(info.value).__name__)
    assert errors == ["DiscoveryError"] * 3


def test_name_that_becomes_nxdomain_keeps_the_last_good_set(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """The name disappears from DNS after a good answer: past the TTL, the old pods still serve."""
    dns = dnsmasq({NAME: list(HOSTS)}, ttl=1)
    with no_fd_leak():
        with ServiceClient(
            "vanish",
            balancing={"strategy": "round_robin"},
            url=f"http://{NAME}:{trio[0].port}",
            dns_nameservers=[dns.nameserver],
            hooks=[],
        ) as client:
            assert client.get("/before").status_code == 200
            dns.set_records({"other.svc.test": [HOSTS[0]]})  # NAME is now NXDOMAIN
            time.sleep(1.2)  # past the TTL: the next call re-resolves and fails
            seen = Counter(who(client.get("/after")) for _ in range(9))
    assert seen == {"a": 3, "b": 3, "c": 3}


# -- an answer that changes ----------------------------------------------------------------


def test_changed_answer_is_used_after_the_ttl_not_before(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """A -> B in DNS: calls inside the TTL stay on A (cached), calls after it go only to B."""
    a, b, _ = trio
    dns = dnsmasq({NAME: [a.host]}, ttl=2)
    with no_fd_leak():
        with ServiceClient(
            "moving",
            url=f"http://{NAME}:{a.port}",
            dns_nameservers=[dns.nameserver],
            hooks=[],
        ) as client:
            resolved_at = time.monotonic()
            assert who(client.get("/first")) == "a"
            dns.set_records({NAME: [b.host]})
            if time.monotonic() - resolved_at < 1.5:  # still well inside the 2 s TTL
                assert who(client.get("/cached")) == "a"
            time.sleep(max(0.0, resolved_at + 2.3 - time.monotonic()))
            after = [who(client.get("/after")) for _ in range(6)]
    assert after == ["b"] * 6
    assert a.count(path="/after") == 0


@pytest.mark.anyio
async def test_async_changed_answer_is_used_after_the_ttl(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """The async client re-resolves after the TTL too: {a, b} -> {c} moves all traffic to c."""
    a, b, c = trio
    dns = dnsmasq({NAME: [a.host, b.host]}, ttl=1)
    with no_fd_leak():
        async with AsyncServiceClient(
            "moving-async",
            balancing={"strategy": "round_robin"},
            url=f"http://{NAME}:{a.port}",
            dns_nameservers=[dns.nameserver],
            hooks=[],
        ) as client:
            before = Counter([who(await client.get("/before")) for _ in range(4)])
            dns.set_records({NAME: [c.host]})
            time.sleep(1.2)  # blocking on purpose: nothing else runs on this loop
            after = [who(await client.get("/after")) for _ in range(4)]
    assert before == {"a": 2, "b": 2}
    assert after == ["c"] * 4


# -- a DNS server that stops answering -----------------------------------------------------


def test_dns_outage_keeps_serving_with_one_bounded_delay(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """DNS silent after the TTL: all three pods keep serving; one call pays <= dns_timeout."""
    dns = dnsmasq({NAME: list(HOSTS)}, ttl=1)
    latencies: list[float] = []
    with no_fd_leak():
        with ServiceClient(
            "dns-outage",
            balancing={"strategy": "round_robin"},
            url=f"http://{NAME}:{trio[0].port}",
            dns_nameservers=[dns.nameserver],
            dns_timeout=0.4,
            hooks=[],
        ) as client:
            assert client.get("/warm").status_code == 200
            with dns.stopped_answering():
                time.sleep(1.1)
                seen: Counter[str] = Counter()
                for _ in range(9):
                    with timed() as took:
                        seen[who(client.get("/during"))] += 1
                    latencies.append(took[0])
    assert seen == {"a": 3, "b": 3, "c": 3}
    slow = [t for t in latencies if t > 0.2]
    assert len(slow) <= 1  # a failed refresh is not retried on every request
    assert max(latencies) < 0.4 + SLACK


@pytest.mark.anyio
async def test_async_dns_outage_keeps_the_last_good_set(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """The async client also keeps the last good set while DNS times out, within dns_timeout."""
    dns = dnsmasq({NAME: list(HOSTS)}, ttl=1)
    with no_fd_leak():
        async with AsyncServiceClient(
            "dns-outage-async",
            url=f"http://{NAME}:{trio[0].port}",
            dns_nameservers=[dns.nameserver],
            dns_timeout=0.4,
            hooks=[],
        ) as client:
            assert (await client.get("/warm")).status_code == 200
            with dns.stopped_answering():
                time.sleep(1.1)
                with timed() as took:
                    codes = [(await client.get("/during")).status_code for _ in range(6)]
    assert codes == [200] * 6
    assert took[0] < 0.4 + SLACK


def test_dns_silent_from_the_start_raises_discovery_error_within_dns_timeout(
    trio: list[FaultServer], dnsmasq: StartDns, no_fd_leak: LeakCheck
) -> None:
    """No answer ever (resolve='dns'): DiscoveryError after about dns_timeout, never a hang."""
    dns = dnsmasq({NAME: list(HOSTS)}, ttl=1)
    with no_fd_leak(), dns.stopped_answering():
        with ServiceClient(
            "dns-silent",
            url=f"http://{NAME}:{trio[0].port}",
            resolve="dns",
            dns_nameservers=[dns.nameserver],
            dns_timeout=0.5,
            hooks=[],
        ) as client:
            with timed() as took, pytest.raises(DiscoveryError) as info:
                client.get("/x")
    assert 0.4 <= took[0] < 0.5 + SLACK
    assert "DNS" in str(info.value)
    assert sum(s.count() for s in trio) == 0
