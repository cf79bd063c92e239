"""A tiny authoritative DNS server on loopback, for tests and the demo.

Theory of operation
-------------------
``LocalDns`` binds one UDP socket (``127.0.0.1``, a free port by default) and answers
from an in-memory zone on a daemon thread, with dnspython's ``dns.message`` doing the
wire format.  It is authoritative for the names it holds and for nothing else:

* a name with A/AAAA records answers them with its TTL;
* a known name asked for a type it does not have answers NOERROR with no records
  (NODATA), as a real server does, so a resolver asking AAAA after A is not misled;
* an unknown name is NXDOMAIN;
* ``set_silent(True)`` drops every query (the resolver times out), to test
  "the DNS server stopped answering".

It needs no root, no dnsmasq and no cluster, which makes a Kubernetes-like "one service
name, one A record per pod" setup possible in a unit test::

    with LocalDns() as dns, FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3", a.port) as b:
        dns.set_records("user-service.demo.svc.cluster.local", ["127.0.0.2", "127.0.0.3"], ttl=5)
        client = ServiceClient("user-service", namespace="demo", port=a.port,
                               dns_nameservers=[dns.nameserver])

UDP only: answers are small, and a reply that would not fit is sent truncated (TC set).
Only loopback addresses may be bound.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["LocalDns"]

_A: Final = dns.rdatatype.A
_AAAA: Final = dns.rdatatype.AAAA
_SRV: Final = dns.rdatatype.SRV
_CLASSIC_UDP_SIZE: Final = 512
_JOIN_TIMEOUT: Final = 5.0


def _key(name: str) -> str:
    """Names compare case-insensitively and with or without the final dot."""
    return name.strip().rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class _Node:
    """Everything the zone holds for one name."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    ttl: int = 1
    srv: tuple[tuple[int, int, int, str], ...] = ()  # (priority, weight, port, target)
    srv_ttl: int = 1


def _check_ttl(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < 2**31:
        raise ValueError(f"TTL must be a number of seconds >= 0, not {ttl!r}")
    return int(ttl)


class LocalDns:
    """An in-process authoritative DNS server on ``host:port`` (UDP, loopback only).

    ``port=0`` (the default) picks a free port; ``nameserver`` is then the
    ``"127.0.0.1:<port>"`` string that ``dns_nameservers=[...]`` and ``DnsResolver``
    accept. ``ttl`` is the default TTL (1 s) of records set without one.
    ``queries`` lists ``(name, type)`` of every query received, for assertions.

    >>> with LocalDns() as dns:                                   # doctest: +SKIP
    ...     dns.set_records("api.test", ["127.0.0.2", "127.0.0.3"], ttl=30)
    ...     DnsResolver([dns.nameserver]).resolve("api.test", 8080).endpoints
    (Endpoint(host='127.0.0.2', port=8080), Endpoint(host='127.0.0.3', port=8080))
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ttl: float = 1) -> None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"LocalDns binds an IP address, not {host!r}") from None
        if not ip.is_loopback:
            raise ValueError(f"LocalDns binds loopback addresses only, not {host!r}")
        if not 0 <= port < 65536:
            raise ValueError(f"port must be 0-65535, not {port!r}")
        self.host = str(ip)
        self.port = port
        self.default_ttl = _check_ttl(ttl)
        self._zone: dict[str, _Node] = {}
        self._lock = threading.Lock()
        self._silent = False
        self._queries: list[tuple[str, str]] = []
        self._sock: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None

    # -- the zone -------------------------------------------------------------------------

    def set_records(self, name: str, ips: Iterable[str], ttl: float | None = None) -> None:
        """Make ``name`` answer these addresses (A for IPv4, AAAA for IPv6) with ``ttl``.

        Replaces the name's previous addresses; an empty list keeps the name (NODATA).
        """
        a: list[str] = []
        aaaa: list[str] = []
        for text in ips:
            ip = ipaddress.ip_address(text)
            (a if ip.version == 4 else aaaa).append(str(ip))
        t = self.default_ttl if ttl is None else _check_ttl(ttl)
        key = _key(name)
        with self._lock:
            old = self._zone.get(key, _Node())
            self._zone[key] = _Node(tuple(a), tuple(aaaa), t, old.srv, old.srv_ttl)

    def set_srv(
        self,
        name: str,
        targets: Sequence[tuple[str, int] | tuple[str, int, int] | tuple[str, int, int, int]],
        ttl: float | None = None,
    ) -> None:
        """Publish SRV records for ``name`` (e.g. ``_http._tcp.api.test``).

        Each target is ``(host, port[, priority[, weight]])``; priority and weight default
        to 10 and 100. The target hosts need their own ``set_records``.
        """
        records: list[tuple[int, int, int, str]] = []
        for target in targets:
            host, port, *rest = target
            priority = rest[0] if rest else 10
            weight = rest[1] if len(rest) > 1 else 100
            records.append((int(priority), int(weight), int(port), _key(host) + "."))
        t = self.default_ttl if ttl is None else _check_ttl(ttl)
        key = _key(name)
        with self._lock:
            old = self._zone.get(key, _Node())
            self._zone[key] = _Node(old.a, old.aaaa, old.ttl, tuple(records), t)

    def remove(self, name: str) -> None:
        """Forget ``name``: it answers NXDOMAIN from now on."""
        with self._lock:
            self._zone.pop(_key(name), None)

    def clear(self) -> None:
        """Forget every name and every recorded query."""
        with self._lock:
            self._zone.clear()
            self._queries.clear()

    def set_silent(self, silent: bool = True) -> None:
        """Stop answering (``True``): queries are read and dropped, so resolvers time out."""
        self._silent = silent

    @property
    def queries(self) -> list[tuple[str, str]]:
        """A copy of the ``(name, type)`` of every query received, oldest first."""
        with self._lock:
            return list(self._queries)

    @property
    def nameserver(self) -> str:
        """``"ip:port"`` for ``dns_nameservers`` (``"[::1]:port"`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalDns:
        """Bind the socket and start answering; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("LocalDns already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        # A socketpair wakes the thread's select() at stop(): no polling interval.
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="LocalDns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the socket (bounded; calling it twice is harmless)."""
        thread, wake = self._thread, self._wake
        if thread is None or wake is None:
            return
        with contextlib.suppress(OSError):
            wake[1].send(b"x")
        thread.join(_JOIN_TIMEOUT)
        self._thread = None
        for s in (*wake, self._sock):
            if s is not None:
                s.close()
        self._wake = None
        self._sock = None
        if thread.is_alive():  # pragma: no cover - select() returns at once on the wake byte
            raise RuntimeError("LocalDns thread did not stop within 5 s")

    def __enter__(self) -> LocalDns:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalDns {self.nameserver} names={len(self._zone)}>"

    # -- the server thread ----------------------------------------------------------------

    def _serve(self) -> None:
        sock, wake = self._sock, self._wake
        assert sock is not None and wake is not None
        while True:
            readable, _, _ = select.select([sock, wake[0]], [], [])
            if wake[0] in readable:
                return
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None and not self._silent:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        """The wire reply to one query, or None to ignore it (garbage, not a query)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None  # a response, not a question
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        question = query.question[0]
        name = question.name.to_text()
        rdtype = question.rdtype
        with self._lock:
            self._queries.append((_key(name), dns.rdatatype.to_text(rdtype)))
            node = self._zone.get(_key(name))
        if node is None or question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype == _A and node.a:
            response.answer.append(dns.rrset.from_text(question.name, node.ttl, "IN", "A", *node.a))
        elif rdtype == _AAAA and node.aaaa:
            response.answer.append(
                dns.rrset.from_text(question.name, node.ttl, "IN", "AAAA", *node.aaaa)
            )
        elif rdtype == _SRV and node.srv:
            texts = [f"{p} {w} {port} {target}" for p, w, port, target in node.srv]
            response.answer.append(
                dns.rrset.from_text(question.name, node.srv_ttl, "IN", "SRV", *texts)
            )
        # else: the name exists without that type -> NOERROR with an empty answer (NODATA)
        limit = query.payload if query.edns >= 0 else _CLASSIC_UDP_SIZE
        try:
            return response.to_wire(max_size=max(limit, _CLASSIC_UDP_SIZE))
        except dns.exception.TooBig:
            # Tell the client to retry over TCP; we do not serve TCP, so keep zones small.
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()
