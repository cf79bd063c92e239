"""svcclient: call other services over HTTP and survive it.

One pipeline per target service — deadline, retry (budgeted), circuit breaker with
fallback, bulkhead, endpoint choice, per-attempt timeout — behind httpx's transport seam,
with Prometheus metrics and OpenTelemetry traces on every attempt.

>>> from svcclient import ServiceClient
>>> users = ServiceClient("user-service", url="http://user-service:3000")
"""

from __future__ import annotations

from ._async_transport import AsyncResilientTransport
from ._balancing import BalancingPolicy, LoadBalancer
from ._breaker import BreakerPolicy, BreakerStats, CircuitBreaker
from ._breaker_registry import BreakerRegistry, breakers
from ._budget import BudgetPolicy, BudgetStats, RetryBudget
from ._bulkhead import AsyncBulkhead, Bulkhead, BulkheadPolicy
from ._client import AsyncServiceClient, ServiceClient
from ._config import ServiceConfig, load_config
from ._deadline import Deadline
from ._discovery import Discovery, discover
from ._dns import DnsLookupError, DnsResolver, Resolution
from ._endpoint import Endpoint
from ._endpoints import EndpointSet
from ._exceptions import (
    AttemptRecord,
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    DiscoveryError,
    NoHealthyEndpointError,
    RequestFailedError,
    SvcClientError,
)
from ._hedge import HedgePolicy
from ._hooks import AttemptInfo, CallInfo, Hooks
from ._instrument import default_service_name, instrument
from ._metrics import DEFAULT_BUCKETS, PrometheusHooks
from ._outcome import ERROR_TYPES, classify_error
from ._outlier import OutlierPolicy
from ._retry import RetryDecision, RetryPolicy
from ._retry_after import parse_retry_after
from ._routes import RouteTable, normalize_route
from ._tracing import TracingHooks, redact_url
from ._transport import ResilientTransport

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
