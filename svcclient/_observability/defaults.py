"""The observers a transport gets when the caller names none: Prometheus and OpenTelemetry."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .hooks import Hooks

__all__ = ["default_hooks", "for_config"]

_lock = threading.Lock()
# Per registry (weakly: a registry a test dropped takes its hooks with it), per metric
# prefix and extra buckets. The hooks are thin; the collectors live on the registry.
_tracing: list[Hooks] = []  # one TracingHooks for all: OTel instruments are per process
_hooks_by_registry: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[Hooks, ...]]] = (
    weakref.WeakKeyDictionary()
)


def default_hooks(
    registry: Any = None, *, metric_prefix: str = "", extra_buckets: tuple[float, ...] = ()
) -> tuple[Hooks, ...]:
    """Prometheus (``registry`` or the default one) and OpenTelemetry observers, shared.

    ``extra_buckets`` (a client's timeout and deadline) join the histogram's default
    buckets when this registry's histogram is created.
    """
    from .otel import TracingHooks
    from .prometheus import PrometheusHooks

    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    key = (metric_prefix, extra_buckets)
    with _lock:
        per_registry = _hooks_by_registry.setdefault(registry, {})
        hooks = per_registry.get(key)
        if hooks is None:
            prom = PrometheusHooks(
                registry, metric_prefix=metric_prefix, extra_buckets=extra_buckets
            )
            if not _tracing:
                _tracing.append(TracingHooks())
            hooks = per_registry[key] = (prom, _tracing[0])
        return hooks


def for_config(config: Any, registry: Any = None) -> tuple[Hooks, ...]:
    """The default observers for a client of ``config`` (its prefix, timeout, deadline)."""
    return default_hooks(
        registry,
        metric_prefix=config.metric_prefix,
        extra_buckets=(config.timeout, config.deadline),
    )
