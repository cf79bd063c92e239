"""Per-service configuration: code, environment variables and TOML files.

``ServiceConfig`` is frozen; make variants with ``dataclasses.replace`` or
``config.with_overrides(...)``. Every value is checked on construction and every error
is a :class:`ConfigError` naming the service, the key and the bad value. Cross-field rules
(after Microsoft.Extensions.Http.Resilience's options validator):

* per-attempt ``timeout`` <= total ``deadline``;
* the breaker's sampling window >= 2 x the per-attempt timeout;
* the sum of the worst-case retry backoff sleeps <= the total deadline;
* an adaptive ``concurrency`` limit replaces the bulkhead: not both (the default bulkhead
  steps aside), and its ``max_limit`` <= ``max_connections``.

Environment overrides: ``SVCCLIENT_<NAME>__<KEY>`` for top-level keys and
``SVCCLIENT_<NAME>__<SECTION>_<KEY>`` for policy keys (a double underscore ends the name,
see :mod:`svcclient._config.env`), e.g. ``SVCCLIENT_USER_SERVICE__TIMEOUT=1.5`` or
``SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS=5``. They override the TOML file, which
overrides the built-in defaults.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx

from .._balancing.balancer import BalancingPolicy
from .._balancing.outlier import OutlierPolicy
from .._discovery.dns import parse_nameserver, parse_networks
from .._discovery.rules import parse_service_url
from .._exceptions import ConfigError
from .._policies.breaker.policy import BreakerPolicy
from .._policies.budget import BudgetPolicy
from .._policies.bulkhead import BulkheadPolicy
from .._policies.retry import RetryPolicy
from .._validate import (
    check_choice,
    check_count,
    check_dns_label,
    check_dns_name,
    check_flag,
    check_header_name,
    check_metric_prefix,
    check_seconds,
)
from .env import env_overrides

if TYPE_CHECKING:
    from .._policies.concurrency import ConcurrencyPolicy
    from .._policies.hedge import HedgePolicy
    from .._policies.throttle import ThrottlePolicy

__all__ = ["ServiceConfig", "deep_merge", "load_config"]

Fallback = Callable[[httpx.Request, BaseException], httpx.Response]

# Sections of a service table that hold a policy object; ``None`` disables where allowed.
_SECTIONS: dict[str, type[Any]] = {
    "retry": RetryPolicy,
    "budget": BudgetPolicy,
    "breaker": BreakerPolicy,
    "balancing": BalancingPolicy,
    "outlier": OutlierPolicy,
    "bulkhead": BulkheadPolicy,
}
# Off by default: imported with the first ServiceConfig (``_sections``), not with svcclient.
_LATER: Final = (
    ("hedge", "hedge", "HedgePolicy"),
    ("throttle", "throttle", "ThrottlePolicy"),
    ("concurrency", "concurrency", "ConcurrencyPolicy"),
)
_ALL_SECTIONS: list[dict[str, type[Any]]] = []


def _sections() -> dict[str, type[Any]]:
    """Every policy section, the off-by-default ones imported on the first call."""
    if _ALL_SECTIONS:
        return _ALL_SECTIONS[0]
    import importlib

    every = dict(_SECTIONS)
    for key, module, name in _LATER:
        cls = getattr(importlib.import_module(f".._policies.{module}", __package__), name)
        globals()[name] = cls  # for typing.get_type_hints(ServiceConfig)
        every[key] = cls
    _ALL_SECTIONS.append(every)
    return every


_NOT_FROM_FILE = frozenset({"name", "fallback"})
_OPTIONAL = frozenset({"budget", "breaker", "bulkhead", "hedge", "throttle", "concurrency"})


# The default bulkhead admits as many calls as the connection pool has connections and
# queues the rest in its O(1) FIFO. Without it, a burst far above the pool size queues
# inside httpcore's pool, whose scheduling is quadratic in the queue length: measured
# with 1,000 concurrent requests to one local server, bare httpx finished 766 in 40 s,
# svcclient with this bulkhead all 1,000 in 5 s.
class PoolBulkhead(BulkheadPolicy):
    """The default bulkhead: re-derived from ``max_connections`` and ``deadline``."""

    # A plain subclass: BulkheadPolicy's dataclass methods (init, eq, repr, frozen) serve
    # it as they are; a second @dataclass would compile them again at import (~1 ms).
    __slots__ = ()


POOL_BULKHEAD = PoolBulkhead(max_concurrent=100, max_waiting=10_000, wait_timeout=3.0)
_RESOLVE_MODES = ("auto", "dns", "system")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything svcclient needs to call one target service.

    Defaults: per-attempt ``timeout`` 2 s, total ``deadline`` 3 s, retries (3 attempts,
    full-jitter backoff), a 20 % retry budget, a breaker (50 % errors over 10 s, 30 s reset),
    round-robin balancing with outlier ejection, a bulkhead sized to the connection pool
    (``max_connections`` in flight, up to 10,000 queued, each waiting up to the deadline);
    hedging, adaptive throttling (``throttle``) and the adaptive concurrency limit
    (``concurrency``, used instead of the bulkhead) off.

    ``url`` is the default URL (discovery rule 3); ``namespace``, ``port`` and
    ``cluster_domain`` shape the cluster-DNS rule. ``resolve`` chooses how the host
    becomes endpoints: ``auto`` (DNS with TTLs when svcclient owns the connection pool,
    falling back to the system resolver), ``dns`` (dnspython only; failures are errors)
    or ``system`` (leave the host to httpx). ``dns_nameservers`` like
    ``["127.0.0.1:5353"]`` point DNS at a chosen server; the search list and ``ndots``
    still come from resolv.conf unless ``dns_search`` gives them (``[]``: none).
    ``dns_allow_addresses`` (networks) lets link-local/multicast/unspecified answers
    through, which are dropped otherwise. ``max_connection_age`` (300 s, ±10 % jitter;
    None: never) retires a pooled connection between requests once it is that old, so
    kube-proxy can spread a ClusterIP's connections over pods that joined since.
    ``wire`` (``"httpx"``) chooses the async clients' connection pools: ``"aiohttp"``
    (extra ``svcclient[aiohttp]``, asyncio only, HTTP/1.1) sends through aiohttp behind the
    same httpx API, several times faster under bursts; sync clients always use httpx.

    >>> ServiceConfig("user-service", url="http://user-service:3000", timeout=1.0)
    """

    name: str
    url: str | None = None
    timeout: float = 2.0
    deadline: float = 3.0
    namespace: str | None = None
    port: int | None = None
    cluster_domain: str = "cluster.local"
    resolve: Literal["auto", "dns", "system"] = "auto"
    dns_nameservers: tuple[str, ...] | None = None
    dns_search: tuple[str, ...] | None = None
    dns_allow_addresses: tuple[str, ...] = ()
    dns_timeout: float = 1.0
    use_srv: bool = False
    deadline_header: str | None = None
    max_connections: int = 100
    max_keepalive_connections: int = 20
    max_connection_age: float | None = 300.0
    keepalive_expiry: float = 5.0
    http2: bool = False
    wire: Literal["httpx", "aiohttp"] = "httpx"
    verify: bool = True
    metric_prefix: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: BudgetPolicy | None = field(default_factory=BudgetPolicy)
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    balancing: BalancingPolicy = field(default_factory=BalancingPolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    bulkhead: BulkheadPolicy | None = field(default_factory=lambda: POOL_BULKHEAD)
    hedge: HedgePolicy | None = None
    throttle: ThrottlePolicy | None = None
    concurrency: ConcurrencyPolicy | None = None
    fallback: Fallback | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str):
            raise ConfigError(None, "name", name, "a service name is a string")
        try:
            if "://" in name:  # a URL given as the name (discovery then uses it as is)
                url = parse_service_url(name, service=None, key="name")
                if url.userinfo:
                    reason = "a URL used as the name is a metric label: no credentials"
                    raise ConfigError(None, "name", name, reason)
            else:
                check_dns_name("name", name, absolute=False)
            self._check_fields()
        except ConfigError as exc:
            if exc.service is None:
                raise ConfigError(name, exc.key, exc.value, exc.reason) from None
            raise
        if type(self.bulkhead) is PoolBulkhead:
            # Left at the default: follow the pool size, and let queued calls wait as long
            # as their deadline allows.
            sized = dataclasses.replace(
                POOL_BULKHEAD, max_concurrent=self.max_connections, wait_timeout=self.deadline
            )
            object.__setattr__(self, "bulkhead", sized)
        for key in ("dns_search", "dns_allow_addresses"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        self._check_cross_fields()

    def _check_fields(self) -> None:
        if self.url is not None:
            if not isinstance(self.url, str):
                raise ConfigError(None, "url", self.url, "must be a string")
            parse_service_url(self.url, service=None, key="url")
        for key in ("timeout", "deadline", "dns_timeout", "keepalive_expiry"):
            check_seconds(key, getattr(self, key))
        if self.max_connection_age is not None:
            check_seconds("max_connection_age", self.max_connection_age)
        check_dns_label("namespace", self.namespace, optional=True)
        if self.port is not None:
            check_count("port", self.port, low=1, high=65535)
        check_dns_name("cluster_domain", self.cluster_domain)
        check_choice("resolve", self.resolve, _RESOLVE_MODES)
        check_choice("wire", self.wire, ("httpx", "aiohttp"))
        if self.wire == "aiohttp" and self.http2:
            raise ConfigError(None, "wire", self.wire, "aiohttp speaks HTTP/1.1 only (http2)")
        servers = self.dns_nameservers
        if servers is not None:
            if isinstance(servers, str):
                servers = (servers,)
            if not isinstance(servers, list | tuple) or not servers:
                reason = "must be a non-empty list of IP addresses (None: the system's)"
                raise ConfigError(None, "dns_nameservers", servers, reason)
            for server in servers:
                if not isinstance(server, str):
                    raise ConfigError(None, "dns_nameservers", server, "must be a string")
                parse_nameserver(server)  # parsed now, so a typo fails here, not per client
            object.__setattr__(self, "dns_nameservers", tuple(servers))
        search = self.dns_search
        if search is not None:
            if not isinstance(search, list | tuple):
                raise ConfigError(None, "dns_search", search, "must be a list of domains")
            for domain in search:
                check_dns_name("dns_search", domain)
        allow = self.dns_allow_addresses
        if not isinstance(allow, list | tuple) or not all(isinstance(a, str) for a in allow):
            raise ConfigError(None, "dns_allow_addresses", allow, "must be a list of networks")
        parse_networks(allow)
        check_metric_prefix("metric_prefix", self.metric_prefix)
        for key in ("use_srv", "http2", "verify"):
            check_flag(key, getattr(self, key))
        check_header_name("deadline_header", self.deadline_header, optional=True)
        check_count("max_connections", self.max_connections)
        check_count("max_keepalive_connections", self.max_keepalive_connections, low=0)
        for key, cls in _sections().items():
            value = getattr(self, key)
            if not isinstance(value, cls) and (value is not None or key not in _OPTIONAL):
                kind = f"a {cls.__name__}" + (" or None" if key in _OPTIONAL else "")
                raise ConfigError(None, key, value, f"must be {kind}")
        if self.fallback is not None and not callable(self.fallback):
            raise ConfigError(None, "fallback", self.fallback, "must be a callable or None")

    def _check_cross_fields(self) -> None:
        name = self.name
        if self.timeout > self.deadline:
            reason = f"per-attempt timeout exceeds deadline {self.deadline}"
            raise ConfigError(name, "timeout", self.timeout, reason)
        if self.breaker is not None and self.breaker.sampling_window < 2 * self.timeout:
            raise ConfigError(
                name,
                "breaker.window_duration",
                self.breaker.sampling_window,
                f"sampling window must be >= 2 x timeout ({2 * self.timeout:g}s)",
            )
        limit = self.concurrency
        if limit is not None:
            if self.bulkhead is not None and type(self.bulkhead) is not PoolBulkhead:
                raise ConfigError(
                    name,
                    "concurrency",
                    limit.algorithm,
                    "an adaptive concurrency limit replaces the bulkhead: set bulkhead = false",
                )
            if limit.max_limit > self.max_connections:
                raise ConfigError(
                    name,
                    "concurrency.max_limit",
                    limit.max_limit,
                    f"exceeds max_connections {self.max_connections}: the excess would queue "
                    "inside the connection pool",
                )
        worst = self.retry.worst_case_delay()
        if worst > self.deadline:
            raise ConfigError(
                name,
                "retry",
                worst,
                f"worst-case retry delays ({worst:g}s) exceed the deadline {self.deadline:g}s",
            )

    def with_overrides(self, **overrides: Any) -> ServiceConfig:
        """Return a copy with ``overrides`` applied (nested dicts update policy fields)."""
        return _apply(self, overrides, source="override")

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> ServiceConfig:
        """Build from a TOML-style mapping (policy sections as nested tables)."""
        if cls is ServiceConfig:
            # One construction per service, not two: start from a shared default (policies
            # are immutable) and validate once with the name and the file's values.
            return _apply(_template(), data, source="file", name=name)
        return _apply(cls(name), data, source="file")

    @classmethod
    def from_env(
        cls, name: str, base: ServiceConfig | None = None, environ: Mapping[str, str] | None = None
    ) -> ServiceConfig:
        """Apply ``SVCCLIENT_<NAME>_...`` environment overrides to ``base``."""
        env = os.environ if environ is None else environ
        config = base or cls(name)
        overrides = _env_overrides(name, env)
        return _apply(config, overrides, source="env") if overrides else config


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> dict[str, ServiceConfig]:
    """Load ``[services.<name>]`` tables from a TOML file; ``[defaults]`` apply to all.

    Environment overrides are applied on top. Returns ``{name: ServiceConfig}``.

    .. code-block:: toml

        [defaults]
        timeout = 1.5

        [services.user-service]
        url = "http://user-service:3000"
        [services.user-service.retry]
        attempts = 4
    """
    import tomllib  # only for a config file, not with svcclient

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(None, "path", os.fspath(path), f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(None, "path", os.fspath(path), f"invalid TOML: {exc}") from exc
    unknown = set(data) - {"defaults", "services"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(None, key, data[key], "unknown top-level table (defaults, services)")
    defaults = data.get("defaults", {})
    services = data.get("services", {})
    if not isinstance(defaults, dict) or not isinstance(services, dict):
        raise ConfigError(None, "services", services, "must be TOML tables")
    result: dict[str, ServiceConfig] = {}
    for name, table in services.items():
        if not isinstance(table, dict):
            raise ConfigError(name, "services", table, "a service entry must be a table")
        merged = deep_merge(defaults, table)
        config = ServiceConfig.from_mapping(name, merged)
        result[name] = ServiceConfig.from_env(name, config, environ)
    return result


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, merging nested tables (how ``[defaults]`` meet a service)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _field_types(cls: type[Any]) -> dict[str, Any]:
    """Field name -> resolved type of a dataclass's init fields (resolved once per class)."""
    hints = _HINTS.get(cls)
    if hints is None:
        _sections()  # the lazily imported policy classes are names the hints use
        every = typing.get_type_hints(cls)
        hints = _HINTS[cls] = {f.name: every[f.name] for f in dataclasses.fields(cls) if f.init}
    return hints


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _coerce(service: str, key: str, value: Any, hint: Any, *, text: bool) -> Any:
    """Check a TOML or code value against the type a dataclass field declares.

    With ``text`` (environment variables) strings are parsed into that type first;
    otherwise the value must already have it (TOML has real booleans and numbers).
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if text and type(None) in args and value.strip().lower() in ("none", ""):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(service, key, value, arg, text=text)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(service, key, value, "; ".join(errors) or "wrong type")
    if origin is Literal:
        if text and isinstance(value, str):
            value = value.strip()
        if not isinstance(value, str) or value not in args:
            raise ConfigError(service, key, value, f"one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
        raise ConfigError(service, key, value, "expected true or false")
    if hint is int or hint is float:
        return _number(service, key, value, hint, text=text)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(service, key, value, "expected a string")
        return value
    if origin in (tuple, frozenset):
        items = value
        if text and isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(items, list | tuple | set | frozenset):
            raise ConfigError(service, key, value, "expected a list")
        item_hint = args[0] if args else str
        return origin(_coerce(service, key, v, item_hint, text=text) for v in items)
    return value


def _number(service: str, key: str, value: Any, hint: type[Any], *, text: bool) -> Any:
    name = hint.__name__
    if isinstance(value, bool):
        raise ConfigError(service, key, value, f"expected {name}")
    number = value
    if text and isinstance(value, str):
        try:
            number = hint(value.strip())
        except ValueError:
            raise ConfigError(service, key, value, f"expected {name}") from None
    if hint is float and isinstance(number, int) and not isinstance(number, bool):
        try:
            number = float(number)
        except OverflowError:
            raise ConfigError(service, key, value, "must be a finite number") from None
    if not isinstance(number, hint):
        raise ConfigError(service, key, value, f"expected {name}")
    return number


def _build_policy(
    service: str, section: str, cls: type[Any], base: Any, data: Any, *, text: bool
) -> Any:
    if data is None or data is False:
        return None
    if isinstance(data, cls):
        return data
    if data is True:
        return base if base is not None else cls()
    if not isinstance(data, Mapping):
        raise ConfigError(service, section, data, "expected a table of policy settings")
    hints = _field_types(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(service, f"{section}.{key}", raw, f"unknown key; known: {known}")
        values[key] = _coerce(service, f"{section}.{key}", raw, hints[key], text=text)
    if base is not None and type(base) is not cls:
        # A derived default (PoolBulkhead) edited by the user becomes the user's own policy.
        base = cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(cls)})
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ConfigError as exc:
        raise ConfigError(service, f"{section}.{exc.key}", exc.value, exc.reason) from exc
    except TypeError as exc:
        raise ConfigError(service, section, data, str(exc)) from exc


_TEMPLATE: list[ServiceConfig] = []


def _template() -> ServiceConfig:
    if not _TEMPLATE:
        _TEMPLATE.append(ServiceConfig("template"))
    return _TEMPLATE[0]


def _apply(
    config: ServiceConfig, data: Mapping[str, Any], *, source: str, name: str | None = None
) -> ServiceConfig:
    """``config`` with ``data`` applied; ``name`` (when given) replaces the config's name."""
    renamed = name is not None
    if name is None:
        name = config.name
    hints = _field_types(ServiceConfig)
    text = source == "env"
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in hints or (source != "override" and key in _NOT_FROM_FILE):
            known = ", ".join(sorted(hints))
            raise ConfigError(name, str(key), raw, f"unknown key; known: {known}")
        sections = _sections()
        if key in sections:
            base = getattr(config, key)
            values[key] = _build_policy(name, key, sections[key], base, raw, text=text)
        elif source == "override" and key == "fallback":
            values[key] = raw
        else:
            values[key] = _coerce(name, key, raw, hints[key], text=text)
    if renamed:
        values["name"] = name
        if not isinstance(name, str):
            raise ConfigError(None, "name", name, "a service name is a string")
    try:
        return dataclasses.replace(config, **values)
    except ConfigError as exc:
        if exc.service is None:
            raise ConfigError(name, exc.key, exc.value, exc.reason) from exc
        raise


def _env_overrides(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    if not _TOP_KEYS:
        _TOP_KEYS.update(set(_field_types(ServiceConfig)) - _NOT_FROM_FILE - set(_sections()))
    return env_overrides(name, env, _TOP_KEYS, _sections())


_TOP_KEYS: set[str] = set()  # filled on first use: the settable top-level keys
