"""``svcclient demo``: the seed's story, live, on loopback, in a few seconds.

Three "pods" of ``user-service`` (``FaultServer`` on 127.0.0.2, .3 and .4, one port) and
an in-process DNS server (``LocalDns``) that answers
``user-service.demo.svc.cluster.local`` with three A records, as cluster DNS answers a
headless Service. A ``ServiceClient("user-service", namespace="demo")`` then finds them by
name, with no cluster, no dnsmasq and no root. Where 127.0.0.2-4 cannot be bound (macOS
has only 127.0.0.1 by default) the pods share 127.0.0.1 on three ports and DNS publishes
SRV records instead.

The narration, one section per step:

1. discovery: every rule and what it gives; the DNS answer; the ``<NAME>_URL`` override;
2. round-robin: which pod answered each call, status, latency;
3. one pod refuses connections: retries hide it, outlier ejection takes it out;
4. every pod answers 503: the breaker opens, calls get the 'Unknown User' fallback in
   microseconds;
5. the pods recover: after ``reset_timeout`` a half-open probe closes the breaker;
6. the Prometheus metrics all of this produced (a private registry).

Every loop is bounded; the only waits are the breaker's reset timeout (1 s, 0.5 s with
``--quick``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, TextIO

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from .._balancing.balancer import BalancingPolicy
from .._balancing.outlier import OutlierPolicy
from .._classify import classify_error
from .._client import ServiceClient
from .._config.model import ServiceConfig
from .._discovery.dns import DnsResolver
from .._discovery.rules import discover, env_name
from .._endpoint import Endpoint
from .._observability.hooks import AttemptInfo, Hooks
from .._observability.prometheus import PrometheusHooks
from .._policies.breaker.machine import CLOSED, HALF_OPEN, OPEN
from .._policies.breaker.policy import BreakerPolicy
from .._policies.retry import RetryPolicy
from ..testing._faultserver import Fault, FaultServer
from ..testing._localdns import LocalDns
from .output import Palette, ms, palette_for, table

__all__ = ["run", "start_pods"]

SERVICE: Final = "user-service"
NAMESPACE: Final = "demo"
FQDN: Final = f"{SERVICE}.{NAMESPACE}.svc.cluster.local"
POD_HOSTS: Final = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
POD_NAMES: Final = ("pod-a", "pod-b", "pod-c")
FALLBACK_HEADER: Final = "x-svcclient-fallback"
_METRIC_PREFIXES: Final = ("svcclient_", "http_request_duration_seconds", "network_errors_total")


# -- the pods -------------------------------------------------------------------------------


@dataclass(slots=True)
class Pods:
    """The running pods; ``shared_port`` is False in the 127.0.0.1 fallback (SRV)."""

    servers: list[FaultServer]
    shared_port: bool

    @property
    def port(self) -> int:
        """The port of the first pod (all pods' port when ``shared_port``)."""
        return self.servers[0].port

    def stop(self) -> None:
        """Stop every pod."""
        for server in self.servers:
            server.stop()


def start_pods(attempts: int = 5) -> Pods:
    """Start three pods on 127.0.0.2-4 with one port, else on 127.0.0.1 with three ports."""
    for _ in range(attempts):
        started: list[FaultServer] = []
        try:
            first = FaultServer(POD_HOSTS[0], name=f"{POD_NAMES[0]} {POD_HOSTS[0]}").start()
            started.append(first)
            for host, name in zip(POD_HOSTS[1:], POD_NAMES[1:], strict=True):
                started.append(FaultServer(host, first.port, name=f"{name} {host}").start())
            return Pods(started, True)
        except OSError:
            for server in started:
                server.stop()
            if not started:
                break  # 127.0.0.2 cannot be bound at all: use the fallback
            # Another process holds this port on .3 or .4: try another port.
    servers = [FaultServer("127.0.0.1", name=f"{name} 127.0.0.1").start() for name in POD_NAMES]
    return Pods(servers, False)


def publish(dns: LocalDns, pods: Pods, ttl: int = 30) -> None:
    """Make ``FQDN`` resolve to the pods (A records, or SRV when ports differ)."""
    if pods.shared_port:
        dns.set_records(FQDN, [s.host for s in pods.servers], ttl=ttl)
        return
    targets = []
    for name, server in zip(POD_NAMES, pods.servers, strict=True):
        host = f"{name}.{FQDN}"
        dns.set_records(host, [server.host], ttl=ttl)
        targets.append((host, server.port))
    dns.set_records(FQDN, ["127.0.0.1"], ttl=ttl)
    dns.set_srv(f"_http._tcp.{FQDN}", targets, ttl=ttl)


@contextlib.contextmanager
def _without_discovery_env(name: str) -> Iterator[list[str]]:
    """Hide ``<NAME>_URL`` and the Kubernetes pair so the demo's rules apply; restore after."""
    prefix = env_name(name)
    saved: dict[str, str] = {}
    for var in (f"{prefix}_URL", f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"):
        value = os.environ.pop(var, None)
        if value is not None:
            saved[var] = value
    try:
        yield sorted(saved)
    finally:
        os.environ.update(saved)


# -- narration ------------------------------------------------------------------------------


@dataclass(slots=True)
class CallRecord:
    """What one call did: its attempts, events during it, and the result."""

    path: str
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, outcome)
    events: list[str] = field(default_factory=list)
    rejected: bool = False
    status: int | None = None
    answered_by: str = ""
    fallback: str | None = None
    seconds: float = 0.0


class Narrator(Hooks):
    """Collects pipeline events into the current :class:`CallRecord`."""

    def __init__(self) -> None:
        self.current: CallRecord | None = None
        self.transitions: list[tuple[str, str]] = []
        self.ejections: list[tuple[str, bool]] = []

    def _note(self, text: str) -> None:
        if self.current is not None:
            self.current.events.append(text)

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """Remember where each attempt went and how it ended."""
        if self.current is not None and attempt.endpoint is not None:
            outcome = str(attempt.status_code) if attempt.status_code else attempt.error_type
            self.current.attempts.append((attempt.endpoint.key, outcome or "?"))

    def on_breaker_transition(self, service: str, old: str, new: str) -> None:
        """A breaker state change is the headline of its call."""
        self.transitions.append((old, new))
        self._note(f"breaker {old} -> {new}")

    def on_breaker_reject(self, service: str) -> None:
        """The open breaker refused the call before any attempt."""
        if self.current is not None:
            self.current.rejected = True

    def on_ejection(self, service: str, endpoint: Endpoint, ejected: bool) -> None:
        """An endpoint left or rejoined the rotation."""
        self.ejections.append((endpoint.key, ejected))
        self._note(f"{endpoint.key} {'ejected' if ejected else 'back in rotation'}")


def unknown_user(request: httpx.Request, exc: BaseException) -> httpx.Response:
    """The seed's opossum fallback: ``{id, name: 'Unknown User'}``, marked as a fallback."""
    user_id = request.url.path.rstrip("/").rpartition("/")[2]
    if isinstance(exc, httpx.HTTPStatusError):
        why = str(exc.response.status_code)
    else:
        why = classify_error(exc)
    return httpx.Response(
        200,
        json={"id": user_id, "name": "Unknown User"},
        headers={FALLBACK_HEADER: why},
        request=request,
    )


def _call(client: ServiceClient, narrator: Narrator, user_id: int) -> CallRecord:
    record = CallRecord(f"/users/{user_id}")
    narrator.current = record
    start = time.perf_counter()
    try:
        response = client.get(record.path, extensions={"route": "/users/{id}"})
    except httpx.HTTPError as exc:  # no fallback would have answered: show the error
        record.seconds = time.perf_counter() - start
        record.fallback = f"error: {classify_error(exc)}"
        return record
    finally:
        narrator.current = None
    record.seconds = time.perf_counter() - start
    record.status = response.status_code
    why = response.headers.get(FALLBACK_HEADER)
    if why is not None:
        record.fallback = why
        record.answered_by = "fallback: " + str(response.json().get("name"))
    else:
        record.answered_by = str(response.json().get("server", "?"))
    return record


def _rows(records: list[CallRecord], pal: Palette, seen: set[str]) -> str:
    rows: list[list[str | tuple[str, str | None]]] = []
    for r in records:
        fresh = [ep for ep, _ in r.attempts if ep not in seen]
        seen.update(fresh)
        status = "-" if r.status is None else str(r.status)
        style = "warn" if r.fallback else "ok"
        notes: list[str] = []
        failed = [f"{ep} {out}" for ep, out in r.attempts if not out.startswith("2")]
        if failed and r.attempts and r.attempts[-1][1].startswith("2"):
            notes.append("retried after " + ", ".join(failed))
        elif failed:
            notes.append(", ".join(failed))
        if r.rejected and r.attempts:
            notes.append("the breaker opened and stopped the retry")
        elif r.rejected:
            notes.append("rejected by the open breaker, no request sent")
        elif r.fallback:
            notes.append(f"fallback ({r.fallback})")
        notes.extend(r.events)
        if fresh:
            notes.append("new connection pool for " + ", ".join(fresh))
        rows.append(
            [
                f"GET {r.path}",
                (r.answered_by, style),
                (status, style),
                ms(r.seconds),
                "; ".join(notes),
            ]
        )
    return table(rows, ["call", "answered by", "status", "latency", "what happened"], palette=pal)


# -- the story ------------------------------------------------------------------------------


def _config(pods: Pods, dns: LocalDns, reset_timeout: float) -> ServiceConfig:
    return ServiceConfig(
        SERVICE,
        namespace=NAMESPACE,
        port=pods.port,
        dns_nameservers=(dns.nameserver,),
        use_srv=not pods.shared_port,
        timeout=0.5,
        deadline=1.5,
        retry=RetryPolicy(attempts=3, backoff_base=0.005, backoff_cap=0.02),
        # A count window so the earlier healthy calls cannot outvote the outage for long.
        breaker=BreakerPolicy(
            window="count",
            window_size=10,
            window_duration=2.0,
            volume_threshold=5,
            error_threshold_percentage=50,
            reset_timeout=reset_timeout,
        ),
        balancing=BalancingPolicy(strategy="round_robin"),
        outlier=OutlierPolicy(
            consecutive_failures=2, base_ejection_time=reset_timeout, max_ejection_time=10.0
        ),
        fallback=unknown_user,
    )


def _section(out: TextIO, pal: Palette, title: str, intro: str) -> None:
    print("", file=out)
    print(pal.head(title), file=out)
    print(pal.dim(intro), file=out)


def run(quick: bool = False, out: TextIO | None = None) -> int:
    """Run the demo, printing to ``out`` (stdout); 0 when the story played out as told."""
    stream = out or sys.stdout
    pal = palette_for(stream)
    started = time.perf_counter()
    reset_timeout = 0.5 if quick else 1.0
    n_calls = 3 if quick else 6
    with contextlib.ExitStack() as stack:
        hidden = stack.enter_context(_without_discovery_env(SERVICE))
        dns = stack.enter_context(LocalDns())
        pods = start_pods()
        stack.callback(pods.stop)
        publish(dns, pods)
        registry = CollectorRegistry()
        narrator = Narrator()
        seen: set[str] = set()
        config = _config(pods, dns, reset_timeout)
        client = stack.enter_context(
            ServiceClient(config, hooks=[PrometheusHooks(registry=registry), narrator])
        )
        print(pal.head("svcclient demo: one service name, three pods, no cluster"), file=stream)
        where = "127.0.0.2-4, one port" if pods.shared_port else "127.0.0.1, three ports"
        print(
            f"  pods: {', '.join(s.name + ':' + str(s.port) for s in pods.servers)} ({where})",
            file=stream,
        )
        print(f"  DNS:  in-process authoritative server at {dns.nameserver}", file=stream)
        if hidden:
            print(pal.warn(f"  (ignoring {', '.join(hidden)} from your environment)"), file=stream)

        # 1. discovery -----------------------------------------------------------------
        _section(
            stream,
            pal,
            "1. Discovery",
            f'   Which URL does "{SERVICE}" mean here? First rule that gives one wins.',
        )
        found = client.discovery
        given = dict(found.candidates)
        rule_rows: list[list[str | tuple[str, str | None]]] = []
        for text in found.tried:
            rule, _, detail = text.partition(": ")
            used = rule == found.source
            rule_rows.append(
                [
                    rule,
                    given.get(rule, detail) if not used else found.url,
                    ("<- used", "ok") if used else "",
                ]
            )
        print(table(rule_rows, ["rule", "gives", ""], palette=pal), file=stream)
        resolution = DnsResolver(
            [dns.nameserver], use_srv=not pods.shared_port, timeout=1.0
        ).resolve(FQDN, pods.port)
        kind = "A records" if resolution.source == "dns" else "SRV records"
        print(
            f"  DNS {FQDN} -> {', '.join(e.key for e in resolution.endpoints)} "
            f"({kind}, TTL {resolution.ttl:g}s; re-resolved when it expires)",
            file=stream,
        )
        override = pods.servers[0].url
        env_found = discover(
            SERVICE,
            namespace=NAMESPACE,
            port=pods.port,
            environ={f"{env_name(SERVICE)}_URL": override},
        )
        print(
            f"  With {env_name(SERVICE)}_URL={override} set, rule '{env_found.source}' wins: "
            f"{env_found.url} (the seed's process.env.USER_SERVICE_URL || default)",
            file=stream,
        )

        # 2. load balancing ------------------------------------------------------------
        _section(stream, pal, "2. Load balancing", "   Round-robin over the endpoints DNS gave.")
        records = [_call(client, narrator, i) for i in range(1, n_calls + 1)]
        print(_rows(records, pal, seen), file=stream)
        answered = {r.answered_by for r in records if not r.fallback}
        spread_ok = len(answered) >= min(3, n_calls)

        # 3. one pod fails -------------------------------------------------------------
        victim = pods.servers[1]
        _section(
            stream,
            pal,
            "3. One pod dies",
            f"   {victim.name} refuses connections. Retries send those calls to another pod;\n"
            f"   after {config.outlier.consecutive_failures} failures in a row it is ejected.",
        )
        victim.set_fault(Fault.refuse())
        records = [_call(client, narrator, i) for i in range(10, 10 + n_calls + 2)]
        print(_rows(records, pal, seen), file=stream)
        hidden_ok = all(r.status == 200 and not r.fallback for r in records)
        ejected_ok = any(ejected for _, ejected in narrator.ejections)

        # 4. everything fails ----------------------------------------------------------
        _section(
            stream,
            pal,
            "4. Every pod fails",
            "   All pods answer 503. The breaker counts the failures, opens, and then\n"
            "   rejects calls at once; the fallback answers 'Unknown User'.",
        )
        for server in pods.servers:
            server.set_fault(Fault.status(503))
        breaker = client.resilient.runtime.breaker
        assert breaker is not None
        records = []
        for i in range(20, 32):  # bounded: the breaker opens long before
            records.append(_call(client, narrator, i))
            if sum(r.rejected for r in records) >= 3:
                break
        print(_rows(records, pal, seen), file=stream)
        opened_ok = (CLOSED, OPEN) in narrator.transitions
        rejected = [r.seconds for r in records if r.rejected and not r.attempts]
        if rejected:
            print(
                f"  Rejected calls took {ms(min(rejected))}-{ms(max(rejected))}: "
                "no socket, no timeout, just the fallback.",
                file=stream,
            )

        # 5. recovery -----------------------------------------------------------------
        _section(
            stream,
            pal,
            "5. Recovery",
            f"   The pods are fixed. After reset_timeout={reset_timeout:g}s the breaker lets "
            "one probe through\n   (half-open); it succeeds and the breaker closes.",
        )
        for server in pods.servers:
            server.set_fault(Fault.ok())
        wait = min(breaker.retry_after() + 0.05, reset_timeout + 0.5)
        print(f"  waiting {wait:.2f}s for the breaker's reset timeout...", file=stream)
        time.sleep(wait)
        records = [_call(client, narrator, i) for i in range(40, 40 + n_calls)]
        print(_rows(records, pal, seen), file=stream)
        closed_ok = narrator.transitions[-1:] == [(HALF_OPEN, CLOSED)]
        print(f"  breaker state now: {breaker.state}", file=stream)

        # 6. metrics ------------------------------------------------------------------
        _section(
            stream,
            pal,
            "6. Metrics",
            "   What Prometheus would scrape (histogram buckets left out):",
        )
        text = generate_latest(registry).decode()
        for line in text.splitlines():
            if line.startswith(_METRIC_PREFIXES) and "_bucket{" not in line:
                if "_created" in line.partition("{")[0]:
                    continue
                print("  " + line, file=stream)

    checks: dict[str, bool] = {
        "calls spread over the pods": spread_ok,
        "retries hid the dead pod": hidden_ok,
        "the dead pod was ejected": ejected_ok,
        "the breaker opened": opened_ok,
        "the breaker closed again": closed_ok,
    }
    failed = [name for name, ok in checks.items() if not ok]
    print("", file=stream)
    elapsed = time.perf_counter() - started
    if failed:
        print(pal.bad(f"demo did not go as expected: {', '.join(failed)}"), file=stream)
        return 1
    print(pal.ok(f"Done in {elapsed:.1f}s."), file=stream)
    return 0
