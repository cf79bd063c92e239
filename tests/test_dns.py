"""Unit tests for svcclient._discovery.dns (no network) and endpoint_set (fake clock)."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import dns.exception
import dns.name
import dns.resolver
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient._discovery.dns import DnsLookupError, DnsResolver, Resolution, parse_nameserver
from svcclient._discovery.endpoint_set import EndpointSet
from svcclient._endpoint import Endpoint
from svcclient._exceptions import ConfigError, SvcClientError

# Port 9 (discard) on loopback: nothing answers DNS there, so any real query would time out.
DEAD = ["127.0.0.1:9"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- nameserver parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        (" 10.0.0.10:53 ", ("10.0.0.10", 53)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::0001]:8053", ("2001:db8::1", 8053)),
    ],
)
def test_parse_nameserver_accepts_ip_and_optional_port(
    text: str, expected: tuple[str, int]
) -> None:
    """IPv4/IPv6 nameservers parse with the port defaulting to 53 and IPv6 normalised."""
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dns.example:53",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:x",
        "[::1",
        "[::1]x",
        "[::1]:",
        "300.1.1.1",
        "[127.0.0.1:53",
    ],
)
def test_parse_nameserver_rejects_bad_text_with_config_error(text: str) -> None:
    """Bad nameserver strings raise ConfigError naming the key and the bad value."""
    with pytest.raises(ConfigError) as info:
        parse_nameserver(text)
    assert info.value.key == "dns_nameservers"
    assert info.value.value == text


def test_resolver_rejects_bad_configuration() -> None:
    """A zero timeout, an empty server list or a bare string are configuration errors."""
    with pytest.raises(ConfigError, match="dns_timeout"):
        DnsResolver(DEAD, timeout=0)
    with pytest.raises(ConfigError, match="must not be empty"):
        DnsResolver([])
    with pytest.raises(ConfigError, match="list of strings"):
        DnsResolver("127.0.0.1")
    with pytest.raises(ConfigError, match="min_ttl"):
        DnsResolver(DEAD, min_ttl=10, max_ttl=5)


def test_resolver_keeps_parsed_nameservers_and_srv_flag() -> None:
    """Nameservers are stored parsed, and giving srv_name switches SRV on."""
    r = DnsResolver(["127.0.0.1:5353", "[::1]"], srv_name="_api._tcp.x.test")
    assert r.nameservers == (("127.0.0.1", 5353), ("::1", 53))
    assert r.use_srv is True
    assert "5353" in repr(r)


def test_each_nameserver_gets_a_share_of_the_budget() -> None:
    """With two nameservers each try may use half the timeout, the whole lookup all of it."""
    r = DnsResolver(["127.0.0.1:9", "127.0.0.2:9"], timeout=1.0)
    sync = r._sync
    assert sync is not None
    assert sync.timeout == 0.5
    assert sync.lifetime == 1.0
    assert sync.cache is None


def test_missing_system_configuration_fails_lookups_not_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without resolv.conf the resolver builds, IP literals work, and names raise kind error."""
    real = dns.resolver.Resolver

    class NoConf(real):  # type: ignore[misc, valid-type]
        def __init__(self, filename: str = "", configure: bool = True) -> None:
            if configure:
                raise _mk(dns.resolver.NoResolverConfiguration)
            super().__init__(configure=False)

    monkeypatch.setattr(dns.resolver, "Resolver", NoConf)
    r = DnsResolver(None)
    assert r.resolve("10.0.0.1", 80).source == "literal"
    with pytest.raises(DnsLookupError) as info:
        r.resolve("user-service", 80)
    assert info.value.kind == "error" and "resolver configuration" in info.value.reason
    assert info.value.host == "user-service"


@pytest.mark.anyio
async def test_system_configuration_is_used_when_present() -> None:
    """nameservers=None reads the system configuration and turns on search domains."""
    r = DnsResolver(None)
    assert r.nameservers is None
    assert r._search is True
    assert (await r.aresolve("::1", 1)).endpoints == (Endpoint("::1", 1),)


# -- IP literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "addr"),
    [("10.0.0.7", "10.0.0.7"), ("::1", "::1"), ("[::1]", "::1"), ("localhost", "127.0.0.1")],
)
def test_ip_literal_returns_at_once_with_infinite_ttl(host: str, addr: str) -> None:
    """IP literals and localhost never reach a nameserver (a dead one here) and never expire."""
    res = DnsResolver(DEAD, timeout=5).resolve(host, 8080)
    assert res == Resolution((Endpoint(addr, 8080),), math.inf, "literal")


@pytest.mark.anyio
async def test_async_ip_literal_returns_at_once() -> None:
    """aresolve short-cuts IP literals the same way as resolve."""
    res = await DnsResolver(DEAD, timeout=5).aresolve("127.0.0.5", 81)
    assert res.endpoints == (Endpoint("127.0.0.5", 81),)
    assert res.ttl == math.inf


# -- the lookup plan, driven by a fake dnspython resolver ---------------------------------


def _answer(records: list[Any], ttl: int) -> Any:
    return SimpleNamespace(rrset=records or None, chaining_result=SimpleNamespace(minimum_ttl=ttl))


def a(*addrs: str, ttl: int = 30) -> Any:
    return _answer([SimpleNamespace(address=x) for x in addrs], ttl)


def srv(*recs: tuple[int, int, str], ttl: int = 30) -> Any:
    """recs: (priority, port, target)."""
    return _answer(
        [
            SimpleNamespace(priority=p, weight=0, port=port, target=dns.name.from_text(t))
            for p, port, t in recs
        ],
        ttl,
    )


EMPTY = _answer([], 300)


def _mk(cls: type[Exception]) -> Exception:
    return cls()


def _nx() -> Exception:
    return _mk(dns.resolver.NXDOMAIN)


def _timeout() -> Exception:
    return _mk(dns.exception.Timeout)


class FakeResolver:
    """Stands in for dns.resolver.Resolver: canned replies keyed by (name, type)."""

    def __init__(self, replies: Mapping[tuple[str, str], Any]) -> None:
        self.replies = replies
        self.asked: list[tuple[str, str]] = []

    def resolve(self, name: str, rdtype: Any, **kwargs: Any) -> Any:
        key = (name, dns.rdatatype.to_text(rdtype))
        self.asked.append(key)
        assert kwargs["raise_on_no_answer"] is False
        assert 0 < kwargs["lifetime"] <= 5
        reply = self.replies.get(key, EMPTY)
        if isinstance(reply, Exception):
            raise reply
        return reply


class FakeAsyncResolver(FakeResolver):
    async def resolve(self, name: str, rdtype: Any, **kwargs: Any) -> Any:
        return FakeResolver.resolve(self, name, rdtype, **kwargs)


def run(
    replies: Mapping[tuple[str, str], Any], host: str = "api.test", port: int = 80, **kw: Any
) -> tuple[Resolution, list[tuple[str, str]]]:
    r = DnsResolver(DEAD, timeout=5, **kw)
    fake = FakeResolver(replies)
    r._sync = fake  # type: ignore[assignment]
    return r.resolve(host, port), fake.asked


def run_error(
    replies: Mapping[tuple[str, str], Any], host: str = "api.test", **kw: Any
) -> DnsLookupError:
    with pytest.raises(DnsLookupError) as info:
        run(replies, host, **kw)
    return info.value


def test_all_a_and_aaaa_records_become_sorted_unique_endpoints() -> None:
    """Every A and AAAA address is an endpoint; duplicates go and IPv4 sorts before IPv6."""
    res, asked = run(
        {
            ("api.test", "A"): a("10.0.0.9", "10.0.0.10", "10.0.0.9"),
            ("api.test", "AAAA"): a("::2", "::1"),
        }
    )
    assert [e.host for e in res.endpoints] == ["10.0.0.9", "10.0.0.10", "::1", "::2"]
    assert {e.port for e in res.endpoints} == {80}
    assert res.source == "dns"
    assert asked == [("api.test", "A"), ("api.test", "AAAA")]


def test_name_with_only_a_records_ignores_empty_aaaa() -> None:
    """An AAAA NODATA answer is not an error when A records exist."""
    res, _ = run({("api.test", "A"): a("10.0.0.1")})
    assert res.endpoints == (Endpoint("10.0.0.1", 80),)


@pytest.mark.parametrize(
    "aaaa_error",
    [
        dns.resolver.NXDOMAIN,
        dns.resolver.NoAnswer,
        dns.exception.Timeout,
        dns.resolver.NoNameservers,
    ],
)
def test_aaaa_failure_after_a_success_keeps_the_ipv4_set(aaaa_error: type[Exception]) -> None:
    """A failing AAAA query never hides the A records already received."""
    res, _ = run({("api.test", "A"): a("10.0.0.1"), ("api.test", "AAAA"): aaaa_error()})
    assert res.endpoints == (Endpoint("10.0.0.1", 80),)


def test_name_with_only_aaaa_records_resolves() -> None:
    """An empty A answer with AAAA records gives the IPv6 endpoints."""
    res, _ = run({("api.test", "AAAA"): a("2001:db8::5")})
    assert res.endpoints == (Endpoint("2001:db8::5", 80),)


def test_nxdomain_raises_nxdomain_error_without_asking_aaaa() -> None:
    """NXDOMAIN on A ends the lookup with kind nxdomain (AAAA cannot exist either)."""
    r = DnsResolver(DEAD, timeout=5)
    fake = FakeResolver({("api.test", "A"): _nx()})
    r._sync = fake  # type: ignore[assignment]
    with pytest.raises(DnsLookupError) as info:
        r.resolve("api.test", 80)
    err, asked = info.value, fake.asked
    assert err.nxdomain is True and err.kind == "nxdomain" and not err.timed_out
    assert err.host == "api.test"
    assert isinstance(err, SvcClientError)
    assert asked == [("api.test", "A")]


def test_no_records_at_all_raises_no_answer() -> None:
    """A name with neither A nor AAAA records raises kind no_answer, not nxdomain."""
    err = run_error({})
    assert err.kind == "no_answer" and err.nxdomain is False


def test_timeout_raises_timeout_kind() -> None:
    """A timed-out A query raises kind timeout."""
    err = run_error({("api.test", "A"): _timeout()})
    assert err.kind == "timeout" and err.timed_out and not err.nxdomain


def test_all_nameservers_failing_raises_error_kind() -> None:
    """SERVFAIL/REFUSED from every nameserver raises kind error."""
    err = run_error({("api.test", "A"): _mk(dns.resolver.NoNameservers)})
    assert err.kind == "error"


def test_ttl_is_the_minimum_record_ttl() -> None:
    """The resolution TTL is the smallest TTL of the answers used."""
    res, _ = run({("api.test", "A"): a("10.0.0.1", ttl=40), ("api.test", "AAAA"): a("::1", ttl=7)})
    assert res.ttl == 7.0


@pytest.mark.parametrize(("ttl", "expected"), [(0, 1.0), (86400, 300.0), (42, 42.0)])
def test_ttl_is_clamped_between_floor_and_cap(ttl: int, expected: float) -> None:
    """TTL 0 becomes the 1 s floor and a day becomes the 300 s cap."""
    res, _ = run({("api.test", "A"): a("10.0.0.1", ttl=ttl)})
    assert res.ttl == expected


def test_ttl_clamp_is_configurable() -> None:
    """min_ttl and max_ttl replace the default floor and cap."""
    res, _ = run({("api.test", "A"): a("10.0.0.1", ttl=0)}, min_ttl=3, max_ttl=4)
    assert res.ttl == 3.0


def test_srv_gives_ports_and_targets_resolved_to_addresses() -> None:
    """SRV targets are resolved to A/AAAA and carry the SRV ports, not the caller's."""
    res, asked = run(
        {
            ("_http._tcp.api.test", "SRV"): srv((0, 8081, "a.test."), (0, 8082, "b.test."), ttl=20),
            ("a.test.", "A"): a("10.0.0.1", ttl=60),
            ("b.test.", "A"): a("10.0.0.2", "10.0.0.3", ttl=15),
        },
        use_srv=True,
    )
    assert res.endpoints == (
        Endpoint("10.0.0.1", 8081),
        Endpoint("10.0.0.2", 8082),
        Endpoint("10.0.0.3", 8082),
    )
    assert res.source == "srv"
    assert res.ttl == 15.0
    assert asked[0] == ("_http._tcp.api.test", "SRV")


def test_srv_uses_lowest_priority_group_that_resolves() -> None:
    """Backup SRV targets (higher priority value) are used only when the best group fails."""
    replies = {
        ("_http._tcp.api.test", "SRV"): srv((10, 9000, "backup.test."), (0, 8080, "main.test.")),
        ("main.test.", "A"): a("10.0.0.1"),
        ("backup.test.", "A"): a("10.0.0.9"),
    }
    res, _ = run(replies, use_srv=True)
    assert res.endpoints == (Endpoint("10.0.0.1", 8080),)
    replies[("main.test.", "A")] = _nx()
    res, _ = run(replies, use_srv=True)
    assert res.endpoints == (Endpoint("10.0.0.9", 9000),)


def test_srv_name_overrides_the_default_srv_name() -> None:
    """srv_name is queried instead of _http._tcp.<host>."""
    res, asked = run(
        {
            ("_grpc._tcp.x.test", "SRV"): srv((0, 50051, "10.1.1.1.")),
        },
        srv_name="_grpc._tcp.x.test",
    )
    assert asked == [("_grpc._tcp.x.test", "SRV")]
    assert res.endpoints == (Endpoint("10.1.1.1", 50051),)


@pytest.mark.parametrize("srv_reply", [_nx(), _mk(dns.resolver.NoAnswer), EMPTY])
def test_missing_srv_falls_back_to_a_records_with_caller_port(srv_reply: Any) -> None:
    """Without SRV records the A/AAAA set is used with the caller's port."""
    res, asked = run(
        {("_http._tcp.api.test", "SRV"): srv_reply, ("api.test", "A"): a("10.0.0.4")},
        port=3000,
        use_srv=True,
    )
    assert res.endpoints == (Endpoint("10.0.0.4", 3000),)
    assert res.source == "dns"
    assert asked[0][1] == "SRV"


def test_srv_timeout_is_a_timeout_error() -> None:
    """A timed-out SRV query raises instead of silently falling back."""
    err = run_error({("_http._tcp.api.test", "SRV"): _timeout()}, use_srv=True)
    assert err.kind == "timeout"


def test_srv_with_only_unusable_targets_raises() -> None:
    """SRV target '.' (service absent) and unresolvable targets give a DnsLookupError."""
    err = run_error(
        {
            ("_http._tcp.api.test", "SRV"): srv((0, 80, "."), (1, 80, "gone.test.")),
            ("gone.test.", "A"): _nx(),
        },
        use_srv=True,
    )
    assert err.host == "gone.test." and err.kind == "nxdomain"
    err = run_error({("_http._tcp.api.test", "SRV"): srv((0, 80, "."))}, use_srv=True)
    assert err.kind == "no_answer"


def test_absolute_name_is_asked_as_written_and_empty_host_rejected() -> None:
    """'api.test.' is asked as the absolute 'api.test.'; an empty host is an error."""
    _, asked = run({("api.test.", "A"): a("10.0.0.1")}, host="api.test.")
    assert asked == [("api.test.", "A"), ("api.test.", "AAAA")]
    err = run_error({}, host="")
    assert err.kind == "error"


@pytest.mark.anyio
async def test_async_driver_runs_the_same_plan() -> None:
    """aresolve follows the same rules (SRV, A+AAAA, TTL) as resolve."""
    r = DnsResolver(DEAD, timeout=5, use_srv=True)
    fake = FakeAsyncResolver(
        {
            ("_http._tcp.api.test", "SRV"): srv((0, 8443, "a.test.")),
            ("a.test.", "A"): a("10.0.0.1", ttl=9),
            ("a.test.", "AAAA"): a("::1", ttl=12),
        }
    )
    r._async = fake  # type: ignore[assignment]
    res = await r.aresolve("api.test", 80)
    assert res == Resolution((Endpoint("10.0.0.1", 8443), Endpoint("::1", 8443)), 9.0, "srv")
    fake.replies = {("_http._tcp.api.test", "SRV"): _timeout()}
    with pytest.raises(DnsLookupError) as info:
        await r.aresolve("api.test", 80)
    assert info.value.kind == "timeout"


# -- EndpointSet ----------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


E1, E2, E3 = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)


def res(*eps: Endpoint, ttl: float = 10.0) -> Resolution:
    return Resolution(tuple(eps), ttl, "dns")


def test_new_set_needs_refresh_and_is_empty() -> None:
    """Before the first resolution the set is empty, version 0, and wants a refresh."""
    eps = EndpointSet("svc", "svc.test", 80, clock=Clock())
    assert eps.current == () and eps.version == 0 and eps.last_error is None
    assert eps.needs_refresh(0.0) is True
    assert eps.needs_refresh() is True


def test_update_serves_until_ttl_expires() -> None:
    """After update the set is fresh for exactly its TTL."""
    eps = EndpointSet("svc", "svc.test", 80)
    assert eps.begin_refresh(100.0)
    assert eps.update(res(E1, E2, ttl=10), 100.0) is True
    assert eps.current == (E1, E2) and eps.version == 1
    assert eps.needs_refresh(109.999) is False
    assert eps.needs_refresh(110.0) is True
    assert eps.next_refresh == 110.0 and eps.ttl == 10 and eps.source == "dns"


def test_min_refresh_floors_short_ttls() -> None:
    """A TTL shorter than min_refresh waits min_refresh before the next refresh."""
    eps = EndpointSet("svc", "svc.test", 80, min_refresh=2.0)
    eps.update(res(E1, ttl=0.1), 50.0)
    assert eps.needs_refresh(51.9) is False
    assert eps.needs_refresh(52.0) is True


def test_infinite_ttl_never_refreshes() -> None:
    """IP-literal resolutions (ttl inf) are never refreshed."""
    eps = EndpointSet("svc", "10.0.0.1", 80)
    eps.update(Resolution((E1,), math.inf, "literal"), 0.0)
    assert eps.needs_refresh(1e12) is False
    assert eps.begin_refresh(1e12) is False


def test_only_one_caller_gets_the_refresh_turn() -> None:
    """While one refresh runs, others get False and keep using the current set."""
    eps = EndpointSet("svc", "svc.test", 80)
    assert eps.begin_refresh(0.0) is True
    assert eps.refreshing
    assert eps.begin_refresh(0.1) is False
    eps.update(res(E1), 0.2)
    assert not eps.refreshing
    assert eps.begin_refresh(0.3) is False  # fresh now: nothing to do


def test_refresh_turn_expires_after_lease() -> None:
    """A refresher that never reports back loses its turn after refresh_lease."""
    eps = EndpointSet("svc", "svc.test", 80, refresh_lease=30.0)
    assert eps.begin_refresh(0.0)
    assert eps.begin_refresh(29.9) is False
    assert eps.begin_refresh(30.0) is True


def test_abort_refresh_gives_the_turn_back_unchanged() -> None:
    """abort_refresh frees the turn without touching endpoints, errors or timing."""
    eps = EndpointSet("svc", "svc.test", 80)
    eps.update(res(E1, ttl=5), 0.0)
    assert eps.begin_refresh(5.0)
    eps.abort_refresh()
    assert eps.current == (E1,) and eps.last_error is None
    assert eps.begin_refresh(5.0) is True


def test_failed_refresh_keeps_last_good_set_and_retries_later() -> None:
    """A failed refresh keeps serving the last good set and retries after failure_retry."""
    eps = EndpointSet("svc", "svc.test", 80, failure_retry=5.0)
    eps.update(res(E1, E2, ttl=10), 0.0)
    assert eps.begin_refresh(10.0)
    err = DnsLookupError("svc.test", "timed out", kind="timeout")
    eps.refresh_failed(err, 10.0)
    assert eps.current == (E1, E2) and eps.version == 1
    assert eps.last_error is err and not eps.refreshing
    assert eps.needs_refresh(14.9) is False
    assert eps.needs_refresh(15.0) is True
    eps.update(res(E1, E2, ttl=10), 15.0)
    assert eps.last_error is None and eps.version == 1


def test_failure_without_good_set_is_remembered_for_the_pipeline() -> None:
    """With no last good set the error stays in last_error so callers can raise it."""
    eps = EndpointSet("svc", "svc.test", 80, failure_retry=2.0)
    assert eps.begin_refresh(0.0)
    err = DnsLookupError("svc.test", "nx", nxdomain=True)
    eps.refresh_failed(err, 0.0)
    assert eps.current == () and eps.last_error is err and eps.version == 0
    assert eps.begin_refresh(1.0) is False  # negative caching: no storm of lookups
    assert eps.begin_refresh(2.0) is True


def test_version_changes_only_when_membership_changes() -> None:
    """A reordered answer is not a change; an added or removed endpoint is."""
    eps = EndpointSet("svc", "svc.test", 80)
    assert eps.update(res(E1, E2), 0.0) is True
    assert eps.update(res(E2, E1), 10.0) is False
    assert eps.version == 1 and eps.current == (E1, E2)
    assert eps.update(res(E1, E2, E3), 20.0) is True
    assert eps.update(res(E3), 30.0) is True
    current: tuple[Endpoint, ...] = eps.current
    assert eps.version == 3 and current == (E3,)


def test_empty_resolution_counts_as_failure() -> None:
    """An empty answer never erases a good set; it is recorded as a no_answer failure."""
    eps = EndpointSet("svc", "svc.test", 80, failure_retry=3.0)
    eps.update(res(E1), 0.0)
    assert eps.update(res(ttl=10), 10.0) is False
    assert eps.current == (E1,)
    assert isinstance(eps.last_error, DnsLookupError) and eps.last_error.kind == "no_answer"
    assert eps.next_refresh == 13.0


def test_methods_without_now_use_the_injected_clock() -> None:
    """Omitting now reads the injected clock."""
    clock = Clock(100.0)
    eps = EndpointSet("svc", "svc.test", 80, clock=clock)
    assert eps.begin_refresh()
    eps.update(res(E1, ttl=4))
    clock.t = 103.9
    assert not eps.needs_refresh()
    clock.t = 104.0
    assert eps.needs_refresh()
    eps.refresh_failed(RuntimeError("x"))
    assert eps.next_refresh == 109.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"min_refresh": -1}, "dns_min_refresh"),
        ({"failure_retry": math.inf}, "dns_failure_retry"),
        ({"refresh_lease": math.nan}, "dns_refresh_lease"),
    ],
)
def test_endpoint_set_validates_timing(kwargs: dict[str, float], key: str) -> None:
    """Negative or non-finite timings raise ConfigError naming the service and key."""
    with pytest.raises(ConfigError) as info:
        EndpointSet("svc", "svc.test", 80, **kwargs)  # type: ignore[arg-type]
    assert info.value.service == "svc" and info.value.key == key


def test_begin_refresh_is_exclusive_across_threads() -> None:
    """Of many threads racing for a due refresh exactly one wins."""
    eps = EndpointSet("svc", "svc.test", 80)
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait(5)
        got = eps.begin_refresh(0.0)
        with lock:
            wins.append(got)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(wins) == [False] * 7 + [True]


_op = st.one_of(
    st.tuples(
        st.just("update"), st.lists(st.sampled_from([E1, E2, E3]), max_size=3), st.floats(0, 50)
    ),
    st.tuples(st.just("fail"), st.none(), st.none()),
    st.tuples(st.just("begin"), st.none(), st.none()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_op, st.floats(0, 20)), max_size=30))
def test_endpoint_set_invariants_hold_for_any_sequence(ops: list[Any]) -> None:
    """Once non-empty the set never empties, version never decreases, and
    needs_refresh is False right after any reported outcome unless the wait is zero."""
    eps = EndpointSet("svc", "svc.test", 80, min_refresh=1.0, failure_retry=5.0)
    now = 0.0
    seen_good = False
    version = 0
    for (kind, eps_list, ttl), dt in ops:
        now += dt
        if kind == "update":
            eps.update(res(*eps_list, ttl=ttl), now)
            assert not eps.refreshing
            assert eps.needs_refresh(now) is False
        elif kind == "fail":
            eps.refresh_failed(RuntimeError("boom"), now)
            assert eps.needs_refresh(now + 4.99) is False
        else:
            eps.begin_refresh(now)
        seen_good = seen_good or bool(eps.current)
        assert bool(eps.current) == seen_good
        assert eps.version >= version
        version = eps.version
        assert len(set(eps.current)) == len(eps.current)
