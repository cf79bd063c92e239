"""Resolving a service host name to endpoints with dnspython.

Theory of operation
-------------------
A lookup is a short *plan* of DNS queries whose next step depends on the last answer
(SRV first when asked for, then A and AAAA for each target).  The plan is written once,
as a generator that yields the query it wants and receives the answer or the exception
(``_plan``); ``DnsResolver.resolve`` drives it with ``dns.resolver`` and
``DnsResolver.aresolve`` with ``dns.asyncresolver``.  That keeps the rules (which
errors are fatal, how TTLs combine, SRV fallback) in one place for sync and async.

Rules
-----
* IP literals (``10.0.0.7``, ``::1``, ``[::1]``) and ``localhost`` return at once with no
  query and ``ttl = inf``.
* Every A and AAAA record becomes an endpoint.  NXDOMAIN on the A query ends the lookup
  (the name does not exist, so AAAA cannot exist either).  An empty AAAA answer, or an
  AAAA query that fails after A succeeded, is not an error: many names are IPv4 only.
* With ``use_srv`` the plan first asks ``_http._tcp.<host>`` (or ``srv_name``) for SRV
  records; the lowest priority group whose targets resolve gives the endpoints (weights
  are ignored: the balancer decides).  If the SRV name does not exist or has no records,
  the plan falls back to A/AAAA of ``host`` with the caller's port.
* Names ending in a dot are absolute and asked exactly as written (glibc's rule): no
  search list.  Other names follow resolv.conf's ``search`` and ``ndots`` (below).  The
  AAAA query asks the name the A answer came from, so a search-list walk happens once.
* Addresses no service listens on are dropped from answers with a warning and a count
  (``dropped_addresses``): unspecified (``0.0.0.0``, ``::``), link-local
  (``169.254.0.0/16`` - cloud metadata -, ``fe80::/10``), multicast and the IPv4
  broadcast address.  Loopback is allowed.  ``allow_addresses`` (networks such as
  ``["169.254.10.0/24"]``) lets the rare legitimate case through.  An answer left empty is
  ``no_answer``.
* TTL = the smallest TTL of every record used (CNAME chains included), clamped to
  ``[min_ttl, max_ttl]`` = ``[1 s, 300 s]`` by default: the floor stops a TTL of 0 from
  turning every request into a lookup, the cap bounds how long a moved pod is remembered.
* One ``resolve`` call takes at most ``timeout`` seconds in total (all queries share it;
  each nameserver gets ``timeout / len(nameservers)`` per try so a dead first server does
  not eat the budget).  Below 0.2 s dnspython's fixed 0.1 s retry back-off can overrun it.
* Failures raise ``DnsLookupError`` with ``kind`` one of ``nxdomain``, ``no_answer``,
  ``timeout`` or ``error`` (SERVFAIL/REFUSED from every nameserver, bad name ...).

Nameservers are ``"ip"`` or ``"ip:port"`` strings (``"[::1]:5353"`` for IPv6); ``None``
reads the system's ``/etc/resolv.conf``.  Either way the search domains and ``ndots`` come
from resolv.conf (that is what makes ``user-service`` find
``user-service.<ns>.svc.cluster.local`` in a pod) unless ``search`` gives them: ``[]``
turns the search list off, a list replaces it.  dnspython does not read ``/etc/hosts``.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

# dnspython (~50 ms of import time) is imported by the first DnsResolver
# (``_load_dnspython``), not with svcclient: a client of an IP, localhost or a mocked
# transport never needs it.
if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception
    import dns.name
    import dns.nameserver
    import dns.rdatatype
    import dns.resolver  # noqa: TC004 - used at run time once _load_dnspython bound ``dns``

from .._endpoint import Endpoint
from .._exceptions import ConfigError, SvcClientError
from .._validate import check_seconds

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_MIN_TTL",
    "DnsLookupError",
    "DnsResolver",
    "Resolution",
    "parse_nameserver",
    "parse_networks",
    "unusable_reason",
]

log = logging.getLogger("svcclient")

DEFAULT_MIN_TTL: Final = 1.0
DEFAULT_MAX_TTL: Final = 300.0

LookupKind = Literal["nxdomain", "no_answer", "timeout", "error"]
_R = TypeVar("_R", bound="dns.resolver.BaseResolver")


def _load_dnspython() -> None:
    """Bind dnspython to this module's ``dns`` name (every use below runs after this)."""
    global dns
    import dns.exception
    import dns.name
    import dns.nameserver
    import dns.rdatatype
    import dns.resolver


class DnsLookupError(SvcClientError):
    """A DNS lookup for ``host`` failed.

    ``kind`` says how: ``"nxdomain"`` (the name does not exist), ``"no_answer"`` (it exists
    but has no usable record), ``"timeout"`` (no nameserver answered in time) or
    ``"error"`` (SERVFAIL/REFUSED or another DNS failure).  ``nxdomain`` is
    ``kind == "nxdomain"``.

    >>> raise DnsLookupError("user-service", "name does not exist", nxdomain=True)
    """

    def __init__(
        self,
        host: str,
        reason: str,
        nxdomain: bool = False,
        *,
        kind: LookupKind | None = None,
        service: str | None = None,
    ) -> None:
        super().__init__(f"DNS lookup for {host!r} failed: {reason}", service=service)
        self.host = host
        self.reason = reason
        self.kind: LookupKind = kind or ("nxdomain" if nxdomain else "error")
        self.nxdomain = self.kind == "nxdomain"

    @property
    def timed_out(self) -> bool:
        """True when no nameserver answered within the timeout."""
        return self.kind == "timeout"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The endpoints a name resolved to, how long they stay valid, and how they were found.

    ``endpoints`` is sorted (IPv4 before IPv6, then by address and port) and free of
    duplicates, so two resolutions of an unchanged name compare equal whatever order the
    server rotated the records into.  ``ttl`` is in seconds (``inf`` for IP literals).
    ``source`` is ``"literal"``, ``"dns"`` (A/AAAA) or ``"srv"``.
    """

    endpoints: tuple[Endpoint, ...]
    ttl: float
    source: str


def parse_nameserver(text: str) -> tuple[str, int]:
    """Split ``"ip"``, ``"ip:port"``, ``"ipv6"`` or ``"[ipv6]:port"`` into ``(ip, port)``.

    The port defaults to 53.  Host names are refused: a resolver needs an address.

    >>> parse_nameserver("127.0.0.1:5353")
    ('127.0.0.1', 5353)
    >>> parse_nameserver("[::1]:5353")
    ('::1', 5353)
    """
    raw = text.strip()
    port_text = ""
    if raw.startswith("["):
        addr, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(None, "dns_nameservers", text, "expected '[ipv6]' or '[ipv6]:port'")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise ConfigError(None, "dns_nameservers", text, "empty port")
    elif raw.count(":") == 1:
        addr, _, port_text = raw.partition(":")
        if not port_text:
            raise ConfigError(None, "dns_nameservers", text, "empty port")
    else:
        addr = raw  # IPv4 without a port, or a bare IPv6 address (its colons are no port)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError(
            None, "dns_nameservers", text, "must be an IP address, optionally with :port"
        ) from None
    port = 53
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(None, "dns_nameservers", text, "port must be 1-65535")
        port = int(port_text)
    return str(ip), port


def _literal(host: str) -> str | None:
    """The normalised address if ``host`` is an IP literal (or localhost), else None."""
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if h.endswith(".") and h[:1].isdigit():
        h = h[:-1]  # an absolute SRV target that is an address ("10.1.1.1.")
    if h in {"localhost", "localhost."}:
        return "127.0.0.1"  # RFC 6761: never ask a nameserver about localhost
    if not h or not (h[0].isdigit() or ":" in h):
        return None  # cheap reject: names like "user-service" never parse as addresses
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        return None


def _sort_key(ep: Endpoint) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(ep.host.partition("%")[0])
    return (ip.version, int(ip), ep.port)


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def unusable_reason(address: str, allow: Sequence[Network] = ()) -> str | None:
    """Why no service can listen on ``address`` (``"link-local"`` ...), or None when usable.

    >>> unusable_reason("169.254.169.254"), unusable_reason("127.0.0.1")
    ('link-local', None)
    """
    ip = ipaddress.ip_address(address.partition("%")[0])
    if any(ip in net for net in allow if net.version == ip.version):
        return None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip == _BROADCAST:
        return "broadcast"
    return None


def parse_networks(networks: Sequence[str]) -> tuple[Network, ...]:
    """``["169.254.10.0/24", "fe80::1"]`` -> networks; ConfigError names a bad entry."""
    out: list[Network] = []
    for text in networks:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                None, "dns_allow_addresses", text, "must be an IP address or network"
            ) from None
    return tuple(out)


class _Query:
    """One query the plan asks its driver to send (a plain class: a dataclass would
    compile its methods at import)."""

    __slots__ = ("name", "rdtype")

    def __init__(self, name: str, rdtype: dns.rdatatype.RdataType) -> None:
        self.name = name
        self.rdtype = rdtype


# What the plan receives for a query: the Answer, or the DNSException it raised.
_Reply = Any
_Plan = Generator[_Query, _Reply, Resolution]


def _out_of_time() -> dns.exception.Timeout:
    """The error raised into the plan when the time budget is spent before a query."""
    return dns.exception.Timeout("resolve() time budget spent")  # type: ignore[no-untyped-call]


# dnspython sleeps a back-off (0.1 s at first) after a round in which every nameserver
# failed, *then* notices the lifetime is spent; keep that sleep inside our budget.
_BACKOFF: Final = 0.1


def _budget(own: float, caller: float | None) -> float:
    return own if caller is None or caller >= own else max(caller, 0.0)


def _lifetime(remaining: float) -> float:
    return remaining - _BACKOFF if remaining > 2 * _BACKOFF else remaining


def _answer_ttl(answer: Any) -> float:
    # chaining_result.minimum_ttl covers the CNAME chain as well as the final RRset.
    return float(answer.chaining_result.minimum_ttl)


def _failure(host: str, exc: BaseException) -> DnsLookupError:
    """Translate a dnspython exception into the most specific DnsLookupError."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsLookupError(host, "name does not exist (NXDOMAIN)", kind="nxdomain")
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsLookupError(host, "no A/AAAA record", kind="no_answer")
    if isinstance(exc, dns.exception.Timeout):
        return DnsLookupError(host, f"timed out ({exc})", kind="timeout")
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsLookupError(host, f"no nameserver gave an answer ({exc})", kind="error")
    return DnsLookupError(host, f"{type(exc).__name__}: {exc}", kind="error")


class DnsResolver:
    """Resolves a host name to a ``Resolution`` (all A/AAAA records, optional SRV ports).

    ``nameservers``: ``["127.0.0.1:5353"]``-style strings; ``None`` (default) uses the
    system resolv.conf.  ``timeout``: total seconds one ``resolve`` may take (default 1 s).
    ``use_srv``: ask SRV ``_http._tcp.<host>`` (or ``srv_name``) for targets and ports
    first.  Without a usable system configuration (no resolv.conf) construction still
    succeeds and every lookup raises ``DnsLookupError(kind="error")``.
    ``min_ttl``/``max_ttl`` clamp the returned TTL (defaults 1 s and 300 s).
    ``search``: ``None`` (default) takes the search list and ``ndots`` from resolv.conf,
    also with explicit ``nameservers``; ``[]`` asks names as given; a list replaces it.
    ``allow_addresses``: networks exempt from the unusable-address filter (module docs).
    dnspython's own cache is off: ``EndpointSet`` decides when to ask again.

    >>> r = DnsResolver(["127.0.0.1:5353"], timeout=0.5)
    >>> r.resolve("api.svc.test", 8080).endpoints  # doctest: +SKIP
    (Endpoint(host='127.0.0.2', port=8080), Endpoint(host='127.0.0.3', port=8080))
    """

    __slots__ = (
        "_allow",
        "_async",
        "_count_lock",
        "_max_ttl",
        "_min_ttl",
        "_search",
        "_sync",
        "_unusable",
        "allow_addresses",
        "dropped_addresses",
        "nameservers",
        "search",
        "srv_name",
        "timeout",
        "use_srv",
    )

    dropped_addresses: int
    """Addresses dropped from answers as unusable since creation (see the module docs)."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        timeout: float = 1.0,
        use_srv: bool = False,
        srv_name: str | None = None,
        min_ttl: float = DEFAULT_MIN_TTL,
        max_ttl: float = DEFAULT_MAX_TTL,
        search: Sequence[str] | None = None,
        allow_addresses: Sequence[str] = (),
    ) -> None:
        if isinstance(nameservers, str):
            raise ConfigError(None, "dns_nameservers", nameservers, "must be a list of strings")
        check_seconds("dns_timeout", timeout)
        if not 0 <= min_ttl <= max_ttl:
            raise ConfigError(None, "dns_min_ttl", min_ttl, "need 0 <= min_ttl <= max_ttl")
        parsed = None if nameservers is None else [parse_nameserver(n) for n in nameservers]
        if parsed is not None and not parsed:
            raise ConfigError(None, "dns_nameservers", [], "must not be empty (None = system)")
        self.nameservers: tuple[tuple[str, int], ...] | None = (
            None if parsed is None else tuple(parsed)
        )
        self.timeout = float(timeout)
        self.use_srv = use_srv or srv_name is not None
        self.srv_name = srv_name
        self._min_ttl = float(min_ttl)
        self._max_ttl = float(max_ttl)
        if isinstance(search, str):
            raise ConfigError(None, "dns_search", search, "must be a list of domains")
        self.search: tuple[str, ...] | None = None if search is None else tuple(search)
        self.allow_addresses = tuple(allow_addresses)
        self._allow = parse_networks(self.allow_addresses)
        self.dropped_addresses = 0
        self._count_lock = threading.Lock()
        _load_dnspython()
        self._sync: dns.resolver.Resolver | None
        try:
            self._sync = self._configure(dns.resolver.Resolver)
            self._unusable = ""
        except DnsLookupError as exc:
            self._sync, self._unusable = None, exc.reason
        self._async: dns.asyncresolver.Resolver | None = None  # built on first aresolve
        # A pod's resolv.conf lists "<ns>.svc.cluster.local" etc.; explicit nameservers
        # keep that list (and ndots) unless ``search`` says otherwise.
        self._search = self.search is None or bool(self.search)

    def _configure(self, cls: type[_R]) -> _R:
        if self.nameservers is None:
            try:
                res = cls(configure=True)
            except dns.resolver.NoResolverConfiguration as exc:
                # Not a ConfigError: a container without resolv.conf must still be able to
                # build clients (the pipeline can fall back to the system's getaddrinfo).
                reason = f"no system resolver configuration ({exc})"
                raise DnsLookupError("<system>", reason, kind="error") from exc
        else:
            try:
                res = cls(configure=True)  # for resolv.conf's search list and ndots
            except dns.resolver.NoResolverConfiguration:
                res = cls(configure=False)
            res.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in self.nameservers]
        if self.search is not None:
            res.search = [dns.name.from_text(d) for d in self.search]
            if not self.search:
                res.domain = dns.name.root
        # Give every nameserver a turn inside the budget instead of letting the first
        # silent one eat all of it.
        res.timeout = self.timeout / max(1, len(res.nameservers))
        res.lifetime = self.timeout
        res.cache = None
        return res

    def __repr__(self) -> str:
        servers = "system" if self.nameservers is None else list(self.nameservers)
        search = "" if self.search is None else f", search={list(self.search)!r}"
        return f"DnsResolver({servers!r}, timeout={self.timeout:g}, use_srv={self.use_srv}{search})"

    def search_list(self) -> tuple[str, ...]:
        """The search domains and ndots in effect, as text (for ``doctor``)."""
        res = self._sync
        if res is None or not self._search:
            return ()
        return tuple(d.to_text() for d in res.search)

    @property
    def ndots(self) -> int | None:
        """resolv.conf's ``ndots`` (None without a configuration)."""
        res = self._sync
        return None if res is None else res.ndots

    def _after_fork_in_child(self) -> None:
        # Called by svcclient._transports.forksafe: the async resolver is rebuilt on the
        # child's first aresolve (the parent's was made under the parent's event loop).
        self._async = None

    # -- drivers ---------------------------------------------------------------------

    def resolve(self, host: str, port: int, timeout: float | None = None) -> Resolution:
        """Resolve ``host`` now (blocking, at most the resolver's ``timeout`` seconds, or
        the ``timeout`` argument when shorter: a call's time left); ``port`` is used for
        every endpoint unless SRV records give ports.  Raises ``DnsLookupError``."""
        addr = _literal(host)
        if addr is not None:
            return Resolution((Endpoint(addr, port),), math.inf, "literal")
        sync = self._sync
        if sync is None:
            raise DnsLookupError(host, self._unusable, kind="error")
        # ``timeout`` (the caller's time left) can only shorten our own.
        deadline = time.monotonic() + _budget(self.timeout, timeout)
        plan = self._plan(host, port)
        try:
            query = next(plan)
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise _out_of_time()
                    reply: _Reply = sync.resolve(
                        query.name,
                        query.rdtype,
                        raise_on_no_answer=False,
                        lifetime=_lifetime(remaining),
                        search=self._search,
                    )
                except dns.exception.DNSException as exc:
                    query = plan.throw(exc)
                else:
                    query = plan.send(reply)
        except StopIteration as done:
            result: Resolution = done.value
            return result

    async def aresolve(self, host: str, port: int, timeout: float | None = None) -> Resolution:
        """Async twin of ``resolve`` (``dns.asyncresolver``; asyncio or trio)."""
        addr = _literal(host)
        if addr is not None:
            return Resolution((Endpoint(addr, port),), math.inf, "literal")
        res = self._async
        if res is None:
            if self._sync is None:
                raise DnsLookupError(host, self._unusable, kind="error")
            # ~50 ms more of import time: only when first needed. ``from`` so that the
            # name ``dns`` stays the module global here (a local import would shadow it).
            from dns import asyncresolver

            res = self._async = self._configure(asyncresolver.Resolver)
        import sniffio
        from dns import asyncbackend

        # ``timeout`` (the caller's time left) can only shorten our own.
        deadline = time.monotonic() + _budget(self.timeout, timeout)
        # The running library, asked per call: dnspython's own default is sniffed once
        # per process and kept, so after one asyncio lookup every trio lookup would fail
        # ("no running event loop") and the other way round.
        backend = asyncbackend.get_backend(sniffio.current_async_library())
        plan = self._plan(host, port)
        try:
            query = next(plan)
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise _out_of_time()
                    reply: _Reply = await res.resolve(
                        query.name,
                        query.rdtype,
                        raise_on_no_answer=False,
                        lifetime=_lifetime(remaining),
                        search=self._search,
                        backend=backend,
                    )
                except dns.exception.DNSException as exc:
                    query = plan.throw(exc)
                else:
                    query = plan.send(reply)
        except StopIteration as done:
            result: Resolution = done.value
            return result

    # -- the plan (no I/O) --------------------------------------------------------------

    def _addresses(self, host: str) -> Generator[_Query, _Reply, tuple[list[str], float]]:
        """Query A then AAAA for ``host``; return (addresses, min TTL) or raise."""
        try:
            a = yield _Query(host, dns.rdatatype.A)
        except dns.exception.DNSException as exc:
            raise _failure(host, exc) from exc
        addrs: list[str] = []
        ttl = math.inf
        follow = host
        if a.rrset is not None:
            addrs.extend(r.address for r in a.rrset)
            ttl = _answer_ttl(a)
            qname = getattr(a, "qname", None)
            if isinstance(qname, dns.name.Name):
                # The name the search list led to: AAAA asks it directly, once.
                follow = qname.to_text()
        try:
            aaaa = yield _Query(follow, dns.rdatatype.AAAA)
        except dns.exception.DNSException as exc:
            # A worked, so the name exists; an AAAA failure must not hide the IPv4 set.
            if not addrs:
                raise _failure(host, exc) from exc
        else:
            if aaaa.rrset is not None:
                addrs.extend(r.address for r in aaaa.rrset)
                ttl = min(ttl, _answer_ttl(aaaa))
        if not addrs:
            raise DnsLookupError(host, "no A or AAAA record", kind="no_answer")
        return addrs, ttl

    def _finish(self, endpoints: list[Endpoint], ttl: float, source: str) -> Resolution:
        unique = sorted(set(endpoints), key=_sort_key)
        usable = [ep for ep in unique if unusable_reason(ep.host, self._allow) is None]
        if len(usable) != len(unique):
            dropped = [ep for ep in unique if ep not in usable]
            with self._count_lock:
                self.dropped_addresses += len(dropped)
            log.warning(
                "DNS answer: dropped %s (%s; allow with dns_allow_addresses)",
                ", ".join(ep.host for ep in dropped),
                ", ".join(sorted({str(unusable_reason(ep.host)) for ep in dropped})),
            )
            if not usable:
                raise DnsLookupError(
                    dropped[0].host, "every address in the answer is unusable", kind="no_answer"
                )
        clamped = min(max(ttl, self._min_ttl), self._max_ttl)
        return Resolution(tuple(usable), clamped, source)

    def _plan(self, host: str, port: int) -> _Plan:
        if not host:
            raise DnsLookupError(host, "empty host name", kind="error")
        if self.use_srv:
            srv_name = self.srv_name or f"_http._tcp.{host}"
            try:
                srv = yield _Query(srv_name, dns.rdatatype.SRV)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                srv = None  # no SRV published: fall back to A/AAAA with the caller's port
            except dns.exception.DNSException as exc:
                raise _failure(srv_name, exc) from exc
            if srv is not None and srv.rrset is not None:
                srv_ttl = _answer_ttl(srv)
                groups: dict[int, list[tuple[str, int]]] = {}
                for rec in srv.rrset:
                    target = rec.target.to_text()  # absolute: never walks the search list
                    if target and target != ".":  # "." means "service not available here"
                        groups.setdefault(rec.priority, []).append((target, rec.port))
                last_error: DnsLookupError | None = None
                for priority in sorted(groups):
                    endpoints: list[Endpoint] = []
                    ttl = srv_ttl
                    for target, target_port in groups[priority]:
                        literal = _literal(target)
                        if literal is not None:
                            endpoints.append(Endpoint(literal, target_port))
                            continue
                        try:
                            addrs, t_ttl = yield from self._addresses(target)
                        except DnsLookupError as exc:
                            if exc.timed_out:
                                raise  # the time budget is gone; lower groups cannot run
                            last_error = exc
                            continue
                        ttl = min(ttl, t_ttl)
                        endpoints.extend(Endpoint(a, target_port) for a in addrs)
                    if endpoints:
                        return self._finish(endpoints, ttl, "srv")
                raise last_error or DnsLookupError(
                    srv_name, "SRV records name no usable target", kind="no_answer"
                )
        addrs, ttl = yield from self._addresses(host)
        return self._finish([Endpoint(a, port) for a in addrs], ttl, "dns")
