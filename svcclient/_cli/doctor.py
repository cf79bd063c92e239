"""``svcclient doctor SERVICE``: walk the path to a service and say where it breaks.

The steps a person would take with ``curl``, ``dig`` and ``nc`` from a troubleshooting
pod, in order, each a plain function of its target so tests can point it at local
servers:

1. :func:`discovery_step` - which discovery rule gave the URL and what the others give;
2. :func:`dns_step`       - the endpoints the host resolves to, with the TTL, from the
   configured nameserver (A/AAAA, SRV when configured), as the client would see them;
3. :func:`tcp_connect`    - connect time per endpoint; *refused* (nothing listening) is
   told apart from *timed out* (packets dropped);
4. :func:`http_check`     - one GET of the health path per endpoint, connecting to the
   endpoint's address while keeping the ``Host`` header and TLS name; for https the TLS
   version and certificate expiry.

:func:`diagnose` runs them all and :func:`verdict` turns the findings into an exit code
and a one-line reason.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import math
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import httpx

from .._classify import classify_error
from .._config.model import ServiceConfig
from .._discovery.dns import DnsLookupError, DnsResolver, _literal
from .._discovery.rules import Discovery, discover
from .._endpoint import Endpoint
from .._exceptions import ConfigError
from .._redact import redact_text
from .._transports.pinned import PinnedTransport, transport_options
from .config_check import flatten, show
from .output import Palette, dumps, ms, palette_for, table

__all__ = [
    "DnsReport",
    "EndpointReport",
    "HttpResult",
    "Report",
    "TcpResult",
    "diagnose",
    "discovery_step",
    "dns_step",
    "http_check",
    "tcp_connect",
    "verdict",
]

REFUSED_HINT: Final = "nothing listening: wrong port or pod not ready"
TIMEOUT_HINT: Final = "packets dropped: NetworkPolicy or firewall?"
UNREACHABLE_HINT: Final = "no route to the address: wrong network or the pod is gone"
CERT_WARN_DAYS: Final = 14.0
_RULES: Final = ("env", "kubernetes_env", "default", "cluster_dns")

# -- step 1: discovery ----------------------------------------------------------------------


def discovery_step(config: ServiceConfig) -> Discovery:
    """Discovery exactly as a client built from ``config`` performs it."""
    return discover(
        config.name,
        config.url,
        namespace=config.namespace,
        port=config.port,
        cluster_domain=config.cluster_domain,
    )


def discovery_rows(found: Discovery) -> list[dict[str, Any]]:
    """One row per rule: what it gave (or why nothing) and whether it won."""
    if found.source == "url":
        return [{"rule": "url", "result": found.url, "used": True}]
    given = dict(found.candidates)
    rows = []
    for rule, text in zip(_RULES, found.tried, strict=False):
        detail = text.partition(": ")[2]
        result = given.get(rule) or detail
        if rule == "cluster_dns":
            result = detail
        rows.append({"rule": rule, "result": result, "used": rule == found.source})
    return rows


# -- step 2: DNS ----------------------------------------------------------------------------


@dataclass(slots=True)
class DnsReport:
    """What the service's host resolved to (``ok``) or why it did not (``error``)."""

    host: str
    nameservers: str
    ok: bool
    source: str  # "dns", "srv", "literal", "system" or "" on failure
    endpoints: list[str] = field(default_factory=list)
    ttl: float | None = None
    seconds: float = 0.0
    error: str | None = None
    kind: str | None = None  # nxdomain, no_answer, timeout, error
    note: str | None = None


def _system_lookup(host: str, port: int) -> list[Endpoint]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Endpoint] = []
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ep = Endpoint(str(addr[0]), port)
            if ep not in out:
                out.append(ep)
    return out


def dns_step(
    host: str,
    port: int,
    *,
    nameservers: tuple[str, ...] | None = None,
    use_srv: bool = False,
    timeout: float = 2.0,
    mode: str = "auto",
    system_fallback: bool = True,
    search: tuple[str, ...] | None = None,
    allow_addresses: tuple[str, ...] = (),
) -> DnsReport:
    """Resolve ``host`` like the client does: dnspython against ``nameservers`` (None: the
    system's resolv.conf) unless ``mode == "system"``; in ``auto`` mode a name DNS does not
    know is tried with the system resolver (``/etc/hosts``, docker-compose names) when
    ``system_fallback`` is allowed."""
    servers = ", ".join(nameservers) if nameservers else "system resolv.conf"
    start = time.perf_counter()
    literal = _literal(host)
    if literal is not None:
        return DnsReport(host, "-", True, "literal", [Endpoint(literal, port).key], math.inf)
    fallback_note = None
    if mode != "system":
        try:
            resolver = DnsResolver(
                nameservers,
                timeout=timeout,
                use_srv=use_srv,
                search=search,
                allow_addresses=allow_addresses,
            )
            res = resolver.resolve(host, port)
        except DnsLookupError as exc:
            report = DnsReport(
                host, servers, False, "", seconds=time.perf_counter() - start, kind=exc.kind
            )
            report.error = exc.reason
            if mode == "auto" and system_fallback:
                fallback_note = (
                    f"DNS via {servers} failed ({exc.reason}); the client falls back to the "
                    "system resolver (one endpoint, no TTL refresh)"
                )
                mode = "system"
            else:
                return report
        except ConfigError as exc:
            return DnsReport(host, servers, False, "", error=str(exc), kind="error")
        else:
            done = DnsReport(
                host,
                servers,
                True,
                res.source,
                [e.key for e in res.endpoints],
                res.ttl,
                time.perf_counter() - start,
            )
            if resolver.dropped_addresses:
                done.note = f"{resolver.dropped_addresses} unusable address(es) dropped"
            return done
    note = None
    try:
        eps = _system_lookup(host, port)
    except OSError as exc:
        note = f"system resolver: {exc}"
        failed = DnsReport(host, "system resolver", False, "", seconds=time.perf_counter() - start)
        failed.error = failed.error or str(exc)
        failed.kind = failed.kind or "error"
        failed.note = note
        return failed
    return DnsReport(
        host,
        "system resolver (getaddrinfo)",
        True,
        "system",
        [e.key for e in eps],
        None,
        time.perf_counter() - start,
        note=fallback_note,
    )


# -- step 3: TCP ----------------------------------------------------------------------------


@dataclass(slots=True)
class TcpResult:
    """A TCP connect attempt: ``kind`` is ok, refused, timeout, unreachable or error."""

    endpoint: str
    ok: bool
    kind: str
    seconds: float
    detail: str


def tcp_connect(host: str, port: int, timeout: float = 2.0) -> TcpResult:
    """Open (and close) one TCP connection to ``host:port``; classify a failure.

    Refused (RST: nothing listening) and timed out (no answer at all: packets dropped)
    need different fixes, so they are reported apart.
    """
    key = Endpoint(host, port).key
    start = time.perf_counter()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return TcpResult(key, False, "refused", time.perf_counter() - start, REFUSED_HINT)
    except TimeoutError:
        return TcpResult(key, False, "timeout", time.perf_counter() - start, TIMEOUT_HINT)
    except OSError as exc:
        spent = time.perf_counter() - start
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return TcpResult(key, False, "unreachable", spent, UNREACHABLE_HINT)
        return TcpResult(key, False, "error", spent, str(exc))
    spent = time.perf_counter() - start
    sock.close()
    return TcpResult(key, True, "ok", spent, "connected")


# -- step 4: HTTP ---------------------------------------------------------------------------


@dataclass(slots=True)
class HttpResult:
    """One GET of the health path: status and latency, or the error; TLS facts for https."""

    endpoint: str
    url: str
    ok: bool
    status: int | None = None
    seconds: float | None = None
    error: str | None = None
    error_type: str | None = None
    tls_version: str | None = None
    cert_expires: str | None = None
    cert_days_left: float | None = None


def _cert_expiry(not_after: str, now: float) -> tuple[str, float]:
    """``"Jun  1 12:00:00 2030 GMT"`` -> (ISO date, days left)."""
    stamp = ssl.cert_time_to_seconds(not_after)
    iso = _dt.datetime.fromtimestamp(stamp, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return iso, (stamp - now) / 86400.0


def http_check(
    base_url: str | httpx.URL,
    endpoint: Endpoint,
    path: str = "/",
    *,
    timeout: float = 2.0,
    verify: bool = True,
) -> HttpResult:
    """GET ``base_url + path`` over a connection to ``endpoint`` (Host header and TLS name
    stay the URL's); return status and latency, or the classified error."""
    url = httpx.URL(str(base_url).rstrip("/") + "/" + path.lstrip("/"))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    transport = PinnedTransport(endpoint, transport_options(verify, False, limits))
    result = HttpResult(endpoint.key, str(url), False)
    with httpx.Client(transport=transport, timeout=timeout, trust_env=False) as client:
        start = time.perf_counter()
        try:
            response = client.get(url, headers={"User-Agent": "svcclient-doctor"})
        except httpx.HTTPError as exc:
            result.seconds = time.perf_counter() - start
            result.error_type = classify_error(exc)
            result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return result
        result.seconds = time.perf_counter() - start
        result.status = response.status_code
        result.ok = response.status_code < 500
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        if ssl_object is not None:
            result.tls_version = ssl_object.version()
            cert = ssl_object.getpeercert()
            if cert and cert.get("notAfter"):
                result.cert_expires, result.cert_days_left = _cert_expiry(
                    str(cert["notAfter"]), time.time()
                )
                if result.cert_days_left < 0:
                    result.ok = False
                    result.error = f"certificate expired on {result.cert_expires}"
    return result


# -- the whole walk -----------------------------------------------------------------------


@dataclass(slots=True)
class EndpointReport:
    """TCP and HTTP findings for one endpoint."""

    endpoint: str
    tcp: TcpResult
    http: HttpResult | None


@dataclass(slots=True)
class Report:
    """Everything ``doctor`` found, in the order it looked."""

    service: str
    url: str | None = None
    source: str | None = None
    discovery: list[dict[str, Any]] = field(default_factory=list)
    dns: DnsReport | None = None
    endpoints: list[EndpointReport] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    healthy: bool = False
    exit_code: int = 1
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


_POLICY_KEYS: Final = (
    "timeout",
    "deadline",
    "retry.attempts",
    "retry.backoff_base",
    "retry.backoff_cap",
    "retry.retry_statuses",
    "budget.ratio",
    "breaker.error_threshold_percentage",
    "breaker.volume_threshold",
    "breaker.window_duration",
    "breaker.reset_timeout",
    "balancing.strategy",
    "outlier.consecutive_failures",
    "outlier.base_ejection_time",
    "bulkhead",
    "hedge",
    "throttle.k",
    "concurrency.algorithm",
    "resolve",
    "dns_nameservers",
)


def policy_summary(config: ServiceConfig) -> dict[str, Any]:
    """The settings that decide how calls behave (timeouts, retry, breaker, balancer)."""
    flat = flatten(config)
    out: dict[str, Any] = {}
    for key in _POLICY_KEYS:
        if key in flat:
            out[key] = flat[key]
        elif "." in key and flat.get(key.partition(".")[0], 0) is None:
            out[key.partition(".")[0]] = None  # a policy switched off
    return out


def diagnose(config: ServiceConfig, *, health_path: str = "/", timeout: float = 2.0) -> Report:
    """Run every step against the service ``config`` describes."""
    report = Report(config.name, policy=policy_summary(config))
    try:
        found = discovery_step(config)
    except ConfigError as exc:
        report.reason = f"discovery failed: {exc}"
        return report
    report.url, report.source = found.url, found.source
    report.discovery = discovery_rows(found)
    url = httpx.URL(found.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    allow_fallback = config.resolve == "auto" and found.source != "cluster_dns"
    report.dns = dns_step(
        url.host,
        port,
        nameservers=config.dns_nameservers,
        use_srv=config.use_srv,
        timeout=min(timeout, config.dns_timeout * 2),
        mode=config.resolve,
        system_fallback=allow_fallback,
        search=config.dns_search,
        allow_addresses=config.dns_allow_addresses,
    )
    if report.dns.note:
        report.warnings.append(report.dns.note)
    if report.dns.ok:
        for key in report.dns.endpoints:
            host, _, port_text = key.rpartition(":")
            ep = Endpoint(host.strip("[]"), int(port_text))
            tcp = tcp_connect(ep.host, ep.port, timeout)
            http = (
                http_check(found.url, ep, health_path, timeout=timeout, verify=config.verify)
                if tcp.ok
                else None
            )
            report.endpoints.append(EndpointReport(ep.key, tcp, http))
    verdict(report)
    return report


def _endpoint_problem(er: EndpointReport) -> str | None:
    tcp, http = er.tcp, er.http
    if not tcp.ok:
        verb = {
            "refused": "refused the connection",
            "timeout": f"did not answer the TCP handshake within {tcp.seconds:.1f}s",
            "unreachable": "is unreachable",
        }.get(tcp.kind, "could not be reached")
        return f"{er.endpoint} {verb} ({tcp.detail})"
    if http is None:
        return None
    if http.error is not None:
        return f"{er.endpoint} GET {httpx.URL(http.url).path} failed: {http.error}"
    if http.status is not None and http.status >= 500:
        return f"{er.endpoint} GET {httpx.URL(http.url).path} answered {http.status}"
    return None


def verdict(report: Report) -> Report:
    """Set ``healthy``, ``exit_code`` (0 healthy, 1 otherwise) and the one-line ``reason``."""
    dns = report.dns
    report.healthy, report.exit_code = False, 1
    if dns is None:
        report.reason = report.reason or "discovery failed"
        return report
    if not dns.ok:
        hint = {
            "nxdomain": "the name does not exist: wrong service name, namespace or cluster domain",
            "timeout": "no answer from the nameserver: wrong nameserver, or DNS traffic blocked",
            "no_answer": "the name exists but has no A/AAAA record (a Service without pods?)",
        }.get(dns.kind or "", dns.error or "lookup failed")
        report.reason = f"DNS lookup of {dns.host} via {dns.nameservers} failed: {hint}"
        return report
    if not report.endpoints:
        report.reason = f"{dns.host} resolved to no endpoint"
        return report
    problems = [p for p in map(_endpoint_problem, report.endpoints) if p]
    for er in report.endpoints:
        http = er.http
        if http is None:
            continue
        if http.status is not None and 400 <= http.status < 500:
            report.warnings.append(
                f"{er.endpoint} answered {http.status} on the health path (try --health-path)"
            )
        days = http.cert_days_left
        if days is not None and 0 <= days < CERT_WARN_DAYS:
            report.warnings.append(f"{er.endpoint} certificate expires in {days:.0f} days")
    total = len(report.endpoints)
    if not problems:
        worst = max((er.http.seconds or 0.0) for er in report.endpoints if er.http is not None)
        report.healthy, report.exit_code = True, 0
        report.reason = (
            f"healthy: {total}/{total} endpoint(s) of {report.service} answered "
            f"(slowest {ms(worst)})"
        )
    elif len(problems) < total:
        report.reason = f"degraded: {len(problems)} of {total} endpoints failing: {problems[0]}"
    else:
        report.reason = f"unhealthy: {problems[0]}"
    return report


# -- rendering ------------------------------------------------------------------------------


def render(report: Report, pal: Palette) -> str:
    """The terminal report: one section per step, then the verdict line."""
    out: list[str] = [pal.head(f"svcclient doctor: {report.service}"), ""]
    out.append(pal.head("Discovery"))
    if report.discovery:
        rows: list[list[str | tuple[str, str | None]]] = []
        for row in report.discovery:
            mark = ("<- used", "ok") if row["used"] else ("", None)
            rows.append([row["rule"], str(row["result"]), mark])
        out.append(table(rows, ["rule", "gives", ""], palette=pal))
        out.append(f"  URL: {report.url} (from {report.source})")
    dns = report.dns
    if dns is not None:
        out += ["", pal.head("DNS")]
        if dns.note:
            out.append(pal.dim(f"  {dns.note}"))
        if dns.ok and dns.source == "literal":
            out.append(f"  {dns.host} is an IP address: no DNS lookup")
        elif dns.ok:
            ttl = (
                "-" if dns.ttl is None else ("inf" if dns.ttl == float("inf") else f"{dns.ttl:g}s")
            )
            kind = {"dns": "A/AAAA", "srv": "SRV", "literal": "IP literal", "system": "system"}
            out.append(
                f"  {dns.host} via {dns.nameservers}: {len(dns.endpoints)} endpoint(s), "
                f"{kind.get(dns.source, dns.source)}, TTL {ttl}, {ms(dns.seconds)}"
            )
            out.append(table([[e] for e in dns.endpoints], palette=pal, indent="    "))
        else:
            out.append(pal.bad(f"  {dns.host} via {dns.nameservers}: {dns.kind}: {dns.error}"))
    if report.endpoints:
        out += ["", pal.head("Endpoints")]
        erows: list[list[str | tuple[str, str | None]]] = []
        for er in report.endpoints:
            tcp, http = er.tcp, er.http
            tcp_cell = (f"{tcp.kind} {ms(tcp.seconds)}", "ok" if tcp.ok else "bad")
            if http is None:
                http_cell: tuple[str, str | None] = ("-", "dim")
                note = tcp.detail if not tcp.ok else ""
            elif http.error is not None:
                http_cell = (http.error_type or "error", "bad")
                note = http.error
            else:
                style = "ok" if http.ok and (http.status or 0) < 400 else "warn"
                style = style if http.ok else "bad"
                http_cell = (f"{http.status} {ms(http.seconds)}", style)
                note = ""
                if http.tls_version:
                    note = f"{http.tls_version}, cert until {http.cert_expires or '?'}"
            erows.append([er.endpoint, tcp_cell, http_cell, note])
        out.append(table(erows, ["endpoint", "tcp connect", "http", "notes"], palette=pal))
    out += ["", pal.head("Policy")]
    out.append(table([[k, show(v)] for k, v in report.policy.items()], palette=pal))
    for warning in report.warnings:
        out.append(pal.warn(f"warning: {warning}"))
    out.append("")
    out.append(pal.ok(report.reason) if report.healthy else pal.bad(report.reason))
    # URLs with credentials and error texts that quote them: the redactor has the last word.
    return redact_text("\n".join(out))


def run(
    name: str,
    *,
    config_file: str | None = None,
    as_json: bool = False,
    health_path: str = "/",
    namespace: str | None = None,
    port: int | None = None,
    dns_nameserver: str | None = None,
    timeout: float = 2.0,
    out: TextIO | None = None,
) -> int:
    """``doctor``: build the config like a client would, diagnose, print; return exit code."""
    stream = out or sys.stdout
    try:
        config = _load(name, config_file)
        overrides: dict[str, Any] = {}
        if namespace is not None:
            overrides["namespace"] = namespace
        if port is not None:
            overrides["port"] = port
        if dns_nameserver is not None:
            overrides["dns_nameservers"] = [dns_nameserver]
        if overrides:
            config = config.with_overrides(**overrides)
    except ConfigError as exc:
        report = Report(name, reason=f"configuration error: {exc}", exit_code=2)
    else:
        report = diagnose(config, health_path=health_path, timeout=timeout)
    if as_json:
        doc = dataclasses.asdict(report)
        print(dumps(doc), file=stream)
    else:
        print(render(report, palette_for(stream)), file=stream)
    return report.exit_code


def _load(name: str, config_file: str | None) -> ServiceConfig:
    if config_file is None:
        from .._config.sources import resolve_config

        return resolve_config(name, {})
    from .._config.model import load_config

    configs = load_config(config_file)
    found = configs.get(name)
    return found if found is not None else ServiceConfig.from_env(name)
