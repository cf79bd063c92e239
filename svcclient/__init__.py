"""svcclient: call other services over HTTP and survive it.

One pipeline per target service — deadline, retry (budgeted), circuit breaker with
fallback, bulkhead, endpoint choice, per-attempt timeout — behind httpx's transport seam,
with Prometheus metrics and OpenTelemetry traces on every attempt.

>>> from svcclient import ServiceClient
>>> users = ServiceClient("user-service", url="http://user-service:3000")
"""

from __future__ import annotations

import importlib
import typing

from ._balancing.balancer import BalancingPolicy, LoadBalancer
from ._balancing.outlier import OutlierPolicy
from ._classify import ERROR_TYPES, classify_error
from ._client import AsyncServiceClient, ServiceClient
from ._config.model import ServiceConfig, load_config
from ._discovery.dns import DnsLookupError, DnsResolver, Resolution
from ._discovery.endpoint_set import EndpointSet
from ._discovery.rules import Discovery, discover
from ._endpoint import Endpoint
from ._exceptions import (
    AttemptRecord,
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConfigError,
    DeadlineExceeded,
    DiscoveryError,
    NoHealthyEndpointError,
    RequestFailedError,
    SvcClientError,
    ThrottledError,
)
from ._observability.hooks import AttemptInfo, CallInfo, Hooks
from ._observability.routes import RouteTable, normalize_route
from ._policies.breaker.guard import CircuitBreaker
from ._policies.breaker.machine import BreakerStats
from ._policies.breaker.policy import BreakerPolicy
from ._policies.breaker.registry import BreakerRegistry, breakers
from ._policies.budget import BudgetPolicy, BudgetStats, RetryBudget
from ._policies.bulkhead import AsyncBulkhead, Bulkhead, BulkheadPolicy
from ._policies.deadline import Deadline
from ._policies.retry import RetryDecision, RetryPolicy
from ._policies.retry_after import parse_retry_after
from ._redact import redact_url
from ._transports.resilient import ResilientTransport

if typing.TYPE_CHECKING:
    from ._observability.instrument import default_service_name, instrument
    from ._observability.otel import TracingHooks
    from ._observability.prometheus import DEFAULT_BUCKETS, PrometheusHooks
    from ._policies.concurrency import ConcurrencyLimiter, ConcurrencyPolicy
    from ._policies.hedge import HedgePolicy
    from ._policies.throttle import Throttle, ThrottlePolicy
    from ._transports.resilient_async import AsyncResilientTransport

# Imported on first access (PEP 562), not with svcclient: these modules bring in
# OpenTelemetry, the async driver (anyio) or code only a few programs use. A client
# that needs one imports it itself when it is built (default hooks, async clients, the
# first ServiceConfig for the off-by-default policies).
_LAZY: dict[str, str] = {
    "AsyncResilientTransport": "._transports.resilient_async",
    "ConcurrencyLimiter": "._policies.concurrency",
    "ConcurrencyPolicy": "._policies.concurrency",
    "DEFAULT_BUCKETS": "._observability.prometheus",
    "HedgePolicy": "._policies.hedge",
    "PrometheusHooks": "._observability.prometheus",
    "Throttle": "._policies.throttle",
    "ThrottlePolicy": "._policies.throttle",
    "TracingHooks": "._observability.otel",
    "default_service_name": "._observability.instrument",
    "instrument": "._observability.instrument",
}

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BUCKETS",
    "ERROR_TYPES",
    "AsyncBulkhead",
    "AsyncResilientTransport",
    "AsyncServiceClient",
    "AttemptInfo",
    "AttemptRecord",
    "BalancingPolicy",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerStats",
    "BudgetPolicy",
    "BudgetStats",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadPolicy",
    "CallInfo",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConcurrencyLimiter",
    "ConcurrencyPolicy",
    "ConfigError",
    "Deadline",
    "DeadlineExceeded",
    "Discovery",
    "DiscoveryError",
    "DnsLookupError",
    "DnsResolver",
    "Endpoint",
    "EndpointSet",
    "HedgePolicy",
    "Hooks",
    "LoadBalancer",
    "NoHealthyEndpointError",
    "OutlierPolicy",
    "PrometheusHooks",
    "RequestFailedError",
    "ResilientTransport",
    "Resolution",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RouteTable",
    "ServiceClient",
    "ServiceConfig",
    "SvcClientError",
    "Throttle",
    "ThrottlePolicy",
    "ThrottledError",
    "TracingHooks",
    "breakers",
    "classify_error",
    "default_service_name",
    "discover",
    "instrument",
    "load_config",
    "normalize_route",
    "parse_retry_after",
    "redact_url",
    "__version__",
]


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups never come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
