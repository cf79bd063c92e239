"""Service discovery: which URL does a service name mean here?

Rules, first match wins (the seed's ``process.env.USER_SERVICE_URL || default``, made
Kubernetes-aware):

1. ``env``             ``<NAME>_URL`` (``user-service`` reads ``USER_SERVICE_URL``)
2. ``kubernetes_env``  ``<NAME>_SERVICE_HOST`` + a port the kubelet injected (below)
3. ``default``         the default URL the caller or the config gave
4. ``cluster_dns``     ``http://<name>.<namespace>.svc.<cluster-domain>.:<port>`` (absolute)

A name that already is a URL (``https://api.stripe.com``) passes through unchanged
(source ``url``). Discovery only chooses the URL; resolving its host to endpoints
happens later, per TTL, in the pipeline.

The kubelet's variables, as it really writes them
-------------------------------------------------
For every Service in the namespace the kubelet sets ``<NAME>_SERVICE_HOST`` (the cluster
IP), ``<NAME>_SERVICE_PORT`` (the *first* port), ``<NAME>_SERVICE_PORT_<PORTNAME>`` for each
named port, and Docker-link variables ``<NAME>_PORT=tcp://<ip>:<port>``,
``<NAME>_PORT_<port>_TCP...``. The names collide: Service ``user-service`` sets
``USER_SERVICE_PORT=tcp://...``, which is also Service ``user``'s
``<NAME>_SERVICE_PORT``, and the kubelet fills them from a map, so which one a pod sees
changes between pod starts. Hence rule 2:

* applies only to names that are Service names (DNS-1035 labels: ``[a-z]([-a-z0-9]*
  [a-z0-9])?``, at most 63 characters); ``user.service`` and ``user_service`` are not, so
  they never read ``user-service``'s variables;
* a value that does not parse (not a port number, a host that is not an IP) is a
  *non-match* noted in ``tried``, never an error: it may be another Service's variable;
* the port is the one the default URL names explicitly, if the Service has it (a URL
  given in code never has its port replaced; if the Service does not list that port the
  rule does not match), else the named port ``http``, then ``https``, then the first port.
  ``https`` (named port ``https``, port 443, or the default URL's scheme) gives an
  ``https`` URL.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .._exceptions import ConfigError

__all__ = ["Discovery", "discover", "env_name", "is_service_name", "parse_service_url"]

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

_SOURCES = ("url", "env", "kubernetes_env", "default", "cluster_dns")
# Patterns are compiled on first use, not at import (each costs import time).
_NAME_RE = functools.cache(lambda: re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"))


@dataclass(frozen=True, slots=True)
class Discovery:
    """The outcome of :func:`discover`.

    ``url`` is the base URL, ``source`` the rule that gave it (``url``, ``env``,
    ``kubernetes_env``, ``default`` or ``cluster_dns``), ``tried`` the rules looked at
    in order (with what each found), and ``candidates`` what every applicable rule
    would have given — the diagnostics CLI prints them.
    """

    name: str
    url: str
    source: str
    tried: tuple[str, ...]
    candidates: tuple[tuple[str, str], ...]


def env_name(name: str) -> str:
    """``user-service`` -> ``USER_SERVICE`` (upper-case; ``-`` and ``.`` become ``_``)."""
    return name.upper().replace("-", "_").replace(".", "_")


def parse_service_url(url: str, *, service: str | None, key: str) -> httpx.URL:
    """Parse and check a service base URL; raise ConfigError naming ``key`` otherwise."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(service, key, url, f"not a URL ({exc})") from exc
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(service, key, url, "scheme must be http or https")
    if not parsed.host:
        raise ConfigError(service, key, url, "URL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(service, key, url, f"port {parsed.port} is not a TCP port")
    if parsed.query or parsed.fragment:
        raise ConfigError(service, key, url, "a base URL takes no query string or fragment")
    return parsed


def _read_namespace_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return text or None


_DNS_1035 = functools.cache(lambda: re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"))
# Docker-link variables of *another* Service that share our prefix: for Service ``user``,
# ``USER_SERVICE_PORT_3000_TCP_PORT`` belongs to Service ``user-service``.
_DOCKER_LINK_SUFFIX = functools.cache(
    lambda: re.compile(r"^\d+_(TCP|UDP|SCTP)(_PORT|_PROTO|_ADDR)?$")
)


_LINK_VAR = functools.cache(lambda: re.compile(r"^_PORT_(\d+)_TCP$"))


def _link_port(value: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
    """The port of ``tcp://<ip>:<port>`` when the address is ``ip``, else None."""
    rest = value.strip()
    if not rest.startswith("tcp://"):
        return None
    host, _, port = rest[6:].rpartition(":")
    try:
        same = ipaddress.ip_address(host.strip("[]")) == ip
    except ValueError:
        return None
    return _port_value(port) if same else None


def is_service_name(name: str) -> bool:
    """True for a Kubernetes Service name (a DNS-1035 label): ``user-service``, not
    ``user.service``, ``user_service`` or ``User``."""
    return bool(_DNS_1035().match(name))


def _port_value(text: str) -> int | None:
    text = text.strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def _kubernetes_env(
    name: str, prefix: str, env: Mapping[str, str], default: httpx.URL | None
) -> tuple[str | None, str]:
    """Rule 2 (see the module docstring): ``(url or None, what was found)``."""
    host_key, port_key = f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"
    if not is_service_name(name):
        return None, f"not a Service name (DNS-1035 label), {host_key} not read"
    host = env.get(host_key, "").strip()
    if not host:
        return None, f"{host_key} not set"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None, f"{host_key}={host!r} is not an IP address (ignored)"
    first_raw = env.get(port_key, "").strip()
    first = _port_value(first_raw)
    named: dict[str, int] = {}
    pfx = port_key + "_"
    for var, value in env.items():
        if var.startswith(pfx) and not _DOCKER_LINK_SUFFIX().match(var[len(pfx) :]):
            value_port = _port_value(value)
            if value_port is not None:
                named[var[len(pfx) :]] = value_port
    # The Docker-link variables <NAME>_PORT=tcp://<ip>:<port> and <NAME>_PORT_<port>_TCP
    # name the Service's ports too; checked against the cluster IP, they cannot be another
    # Service's (whose variables would be <NAME>_<X>_PORT...).
    link_ports = {
        int(m.group(1))
        for var, value in env.items()
        if (m := _LINK_VAR().match(var[len(prefix) :]))
        and var.startswith(prefix + "_PORT_")
        and _link_port(value, ip) == int(m.group(1))
    }
    link_first = _link_port(env.get(f"{prefix}_PORT", ""), ip)
    notes: list[str] = []
    if first_raw and first is None:
        # e.g. USER_SERVICE_PORT=tcp://... is Service user-service's Docker-link variable
        notes.append(f"{port_key}={first_raw!r} is not a port (another Service's variable?)")
        if link_first is not None:
            first = link_first
            notes.append(f"first port {first} from {prefix}_PORT")
    wanted = default.port if default is not None else None
    port: int
    if wanted is not None:
        listed = set(named.values()) | link_ports | ({first} if first is not None else set())
        if wanted not in listed:
            seen = ", ".join(str(p) for p in sorted(listed)) or "none"
            notes.append(f"the default URL's port {wanted} is not a port of the Service ({seen})")
            return None, f"{host_key}={host}; " + "; ".join(notes)
        port, how = wanted, "the default URL's port"
    elif "HTTP" in named:
        port, how = named["HTTP"], f"{pfx}HTTP"
    elif "HTTPS" in named:
        port, how = named["HTTPS"], f"{pfx}HTTPS"
    elif first is not None:
        port, how = first, port_key
    else:
        notes.append(f"no usable {port_key} or {pfx}HTTP")
        return None, f"{host_key}={host}; " + "; ".join(notes)
    secure = (
        port == 443
        or (named.get("HTTPS") == port and named.get("HTTP") != port)
        or (default is not None and default.scheme == "https")
    )
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    url = f"{'https' if secure else 'http'}://{shown}:{port}"
    notes.insert(0, f"{host_key}={host}, port from {how}")
    return url, "; ".join(notes) + f" -> {url}"


def discover(
    name: str,
    default: str | None = None,
    *,
    namespace: str | None = None,
    port: int | None = None,
    cluster_domain: str = "cluster.local",
    environ: Mapping[str, str] | None = None,
    namespace_file: str = SERVICE_ACCOUNT_NAMESPACE,
) -> Discovery:
    """Find the base URL of service ``name``; see the module docstring for the rules.

    ``port`` is used by the cluster-DNS rule (default 80). ``environ`` defaults to
    ``os.environ``. A malformed URL in ``<NAME>_URL`` or ``default`` raises
    :class:`ConfigError` naming the variable or key that held it; the kubelet's variables
    never raise (a value that does not parse is noted in ``tried``).

    >>> discover("user-service", "http://user-service:3000").source
    'default'
    """
    env = os.environ if environ is None else environ
    if "://" in name:
        parse_service_url(name, service=name, key="url")
        return Discovery(name, name.rstrip("/"), "url", ("url: given as a URL",), (("url", name),))
    if not _NAME_RE().match(name):
        raise ConfigError(name, "name", name, "a service name is letters, digits, '-', '.', '_'")

    prefix = env_name(name)
    tried: list[str] = []
    candidates: list[tuple[str, str]] = []

    url_key = f"{prefix}_URL"
    env_url = env.get(url_key, "").strip()
    if env_url:
        parse_service_url(env_url, service=name, key=url_key)
        candidates.append(("env", env_url.rstrip("/")))
        tried.append(f"env: {url_key}={env_url}")
    else:
        tried.append(f"env: {url_key} not set")

    default_url = parse_service_url(default, service=name, key="url") if default else None
    k8s, found = _kubernetes_env(name, prefix, env, default_url)
    if k8s is not None:
        candidates.append(("kubernetes_env", k8s))
    tried.append(f"kubernetes_env: {found}")

    if default:
        candidates.append(("default", default.rstrip("/")))
        tried.append(f"default: {default}")
    else:
        tried.append("default: none given")

    ns = namespace or env.get("POD_NAMESPACE", "").strip() or _read_namespace_file(namespace_file)
    ns_source = "argument" if namespace else "POD_NAMESPACE" if env.get("POD_NAMESPACE") else None
    if ns and not ns_source:
        ns_source = namespace_file
    if not ns:
        ns, ns_source = "default", "fallback"
    dns_port = 80 if port is None else port
    if not 0 < dns_port < 65536:
        raise ConfigError(name, "port", dns_port, "not a TCP port")
    # Absolute (trailing dot): the resolver asks exactly this name instead of walking the
    # pod's search list first (ndots:5 would otherwise cost 3 NXDOMAINs per record type).
    cluster = f"http://{name}.{ns}.svc.{cluster_domain.rstrip('.')}.:{dns_port}"
    candidates.append(("cluster_dns", cluster))
    tried.append(f"cluster_dns: {cluster} (namespace from {ns_source})")

    source, url = candidates[0]
    return Discovery(name, url, source, tuple(tried), tuple(candidates))
