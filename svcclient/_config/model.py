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
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .._balancing.balancer import BalancingPolicy
from .._balancing.outlier import OutlierPolicy
from .._discovery.rules import parse_service_url
from .._exceptions import ConfigError
from .._policies.breaker.policy import BreakerPolicy
from .._policies.budget import BudgetPolicy
from .._policies.bulkhead import BulkheadPolicy
from .._policies.concurrency import ConcurrencyPolicy
from .._policies.hedge import HedgePolicy
from .._policies.retry import RetryPolicy
from .._policies.throttle import ThrottlePolicy
from .env import env_overrides

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
    "hedge": HedgePolicy,
    "throttle": ThrottlePolicy,
    "concurrency": ConcurrencyPolicy,
}
_NOT_FROM_FILE = frozenset({"name", "fallback"})


# The default bulkhead admits as many calls as the connection pool has connections and
# queues the rest in its O(1) FIFO. Without it, a burst far above the pool size queues
# inside httpcore's pool, whose scheduling is quadratic in the queue length: measured
# with 1,000 concurrent requests to one local server, bare httpx finished 766 in 40 s,
# svcclient with this bulkhead all 1,000 in 5 s.
@dataclass(frozen=True, slots=True)
class PoolBulkhead(BulkheadPolicy):
    """The default bulkhead: re-derived from ``max_connections`` and ``deadline``."""


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
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(None, "name", name, "a service needs a name")
        if self.url is not None:
            parse_service_url(self.url, service=name, key="url")
        for key in ("timeout", "deadline", "dns_timeout", "keepalive_expiry"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(name, key, value, "must be a number of seconds > 0")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(name, "port", self.port, "not a TCP port")
        age = self.max_connection_age
        if age is not None and (
            isinstance(age, bool) or not isinstance(age, int | float) or not 0 < age < math.inf
        ):
            raise ConfigError(name, "max_connection_age", age, "must be seconds > 0 or None")
        if self.resolve not in _RESOLVE_MODES:
            raise ConfigError(name, "resolve", self.resolve, f"one of {', '.join(_RESOLVE_MODES)}")
        if self.max_connections < 1 or self.max_keepalive_connections < 0:
            raise ConfigError(name, "max_connections", self.max_connections, "must be >= 1")
        if type(self.bulkhead) is PoolBulkhead:
            # Left at the default: follow the pool size, and let queued calls wait as long
            # as their deadline allows.
            sized = dataclasses.replace(
                POOL_BULKHEAD, max_concurrent=self.max_connections, wait_timeout=self.deadline
            )
            object.__setattr__(self, "bulkhead", sized)
        if self.dns_nameservers is not None:
            if isinstance(self.dns_nameservers, str):
                object.__setattr__(self, "dns_nameservers", (self.dns_nameservers,))
            object.__setattr__(self, "dns_nameservers", tuple(self.dns_nameservers or ()))
        for key in ("dns_search", "dns_allow_addresses"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        self._check_cross_fields()

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


def _field_types(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(service: str, key: str, value: Any, hint: Any) -> Any:
    """Turn TOML or environment text into the type a dataclass field declares."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        empty = value is None or (isinstance(value, str) and value.strip().lower() in ("none", ""))
        if empty and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(service, key, value, arg)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(service, key, value, "; ".join(errors) or "wrong type")
    if origin is Literal:
        if value not in args:
            raise ConfigError(service, key, value, f"one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(service, key, value, "expected true or false")
    if hint is int or hint is float:
        if isinstance(value, bool):
            raise ConfigError(service, key, value, f"expected {hint.__name__}")
        try:
            number = hint(value.strip()) if isinstance(value, str) else value
        except ValueError as exc:
            raise ConfigError(service, key, value, f"expected {hint.__name__}") from exc
        if hint is float and isinstance(number, int):
            number = float(number)
        if not isinstance(number, hint):
            raise ConfigError(service, key, value, f"expected {hint.__name__}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(service, key, value, "expected a string")
        return value
    if origin in (tuple, frozenset):
        items = value
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(items, list | tuple | set | frozenset):
            raise ConfigError(service, key, value, "expected a list")
        item_hint = args[0] if args else str
        return origin(_coerce(service, key, v, item_hint) for v in items)
    return value


def _build_policy(service: str, section: str, cls: type[Any], base: Any, data: Any) -> Any:
    if data is None or data is False:
        return None
    if isinstance(data, cls):
        return data
    if data is True:
        return base if base is not None else cls()
    if not isinstance(data, Mapping):
        raise ConfigError(service, section, data, "expected a table of policy settings")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names:
            raise ConfigError(
                service, f"{section}.{key}", raw, f"unknown key; known: {', '.join(sorted(names))}"
            )
        values[key] = _coerce(service, f"{section}.{key}", raw, hints[key])
    if base is not None and type(base) is not cls:
        # A derived default (PoolBulkhead) edited by the user becomes the user's own policy.
        base = cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(cls)})
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ConfigError as exc:
        raise ConfigError(service, f"{section}.{exc.key}", exc.value, exc.reason) from exc
    except TypeError as exc:
        raise ConfigError(service, section, data, str(exc)) from exc


def _apply(config: ServiceConfig, data: Mapping[str, Any], *, source: str) -> ServiceConfig:
    name = config.name
    hints = _field_types(ServiceConfig)
    known = {f.name for f in dataclasses.fields(ServiceConfig)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in known or (source != "override" and key in _NOT_FROM_FILE):
            raise ConfigError(name, key, raw, f"unknown key; known: {', '.join(sorted(known))}")
        if key in _SECTIONS:
            values[key] = _build_policy(name, key, _SECTIONS[key], getattr(config, key), raw)
        elif source == "override" and key == "fallback":
            values[key] = raw
        else:
            values[key] = _coerce(name, key, raw, hints[key])
    try:
        return dataclasses.replace(config, **values)
    except ConfigError as exc:
        if exc.service is None:
            raise ConfigError(name, exc.key, exc.value, exc.reason) from exc
        raise


def _env_overrides(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    top = {f.name for f in dataclasses.fields(ServiceConfig)} - _NOT_FROM_FILE - set(_SECTIONS)
    return env_overrides(name, env, top, _SECTIONS)
