"""Service discovery: which URL does a service name mean here?

Rules, first match wins (the seed's ``process.env.USER_SERVICE_URL || default``, made
Kubernetes-aware):

1. ``env``             ``<NAME>_URL`` (``user-service`` reads ``USER_SERVICE_URL``)
2. ``kubernetes_env``  ``<NAME>_SERVICE_HOST`` + ``<NAME>_SERVICE_PORT`` injected by the kubelet
3. ``default``         the default URL the caller or the config gave
4. ``cluster_dns``     ``http://<name>.<namespace>.svc.<cluster-domain>:<port>``

A name that already is a URL (``https://api.stripe.com``) passes through unchanged
(source ``url``). Discovery only chooses the URL; resolving its host to endpoints
happens later, per TTL, in the pipeline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .._exceptions import ConfigError

__all__ = ["Discovery", "discover", "env_name", "parse_service_url"]

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

_SOURCES = ("url", "env", "kubernetes_env", "default", "cluster_dns")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


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


def _k8s_url(host: str, port: str, service: str, key: str) -> str:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(service, key, port, "not a TCP port")
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if port == "443" else "http"
    return f"{scheme}://{shown}:{port}"


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
    ``os.environ``. A malformed URL in any rule raises :class:`ConfigError` naming the
    environment variable or key that held it.

    >>> discover("user-service", "http://user-service:3000").source
    'default'
    """
    env = os.environ if environ is None else environ
    if "://" in name:
        parse_service_url(name, service=name, key="url")
        return Discovery(name, name.rstrip("/"), "url", ("url: given as a URL",), (("url", name),))
    if not _NAME_RE.match(name):
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

    host_key, port_key = f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"
    k8s_host, k8s_port = env.get(host_key, "").strip(), env.get(port_key, "").strip()
    if k8s_host and k8s_port:
        k8s = _k8s_url(k8s_host, k8s_port, name, port_key)
        candidates.append(("kubernetes_env", k8s))
        tried.append(f"kubernetes_env: {host_key}/{port_key} -> {k8s}")
    else:
        tried.append(f"kubernetes_env: {host_key}/{port_key} not set")

    if default:
        parse_service_url(default, service=name, key="url")
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
    cluster = f"http://{name}.{ns}.svc.{cluster_domain}:{dns_port}"
    candidates.append(("cluster_dns", cluster))
    tried.append(f"cluster_dns: {cluster} (namespace from {ns_source})")

    source, url = candidates[0]
    return Discovery(name, url, source, tuple(tried), tuple(candidates))
