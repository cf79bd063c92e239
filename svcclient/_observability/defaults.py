"""The observers a transport gets when the caller names none: Prometheus and OpenTelemetry."""

from __future__ import annotations

import threading
from typing import Any

from .hooks import Hooks

__all__ = ["default_hooks"]

_lock = threading.Lock()
_hooks_by_registry: dict[int, tuple[Hooks, ...]] = {}


def default_hooks(registry: Any = None) -> tuple[Hooks, ...]:
    """Prometheus (``registry`` or the default one) and OpenTelemetry observers, shared."""
    from .otel import TracingHooks
    from .prometheus import PrometheusHooks

    key = id(registry)
    with _lock:
        hooks = _hooks_by_registry.get(key)
        if hooks is None:
            hooks = (PrometheusHooks(registry=registry), TracingHooks())
            _hooks_by_registry[key] = hooks
        return hooks
