"""How a transport or client turns its arguments into a config and a set of observers."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ._config import ServiceConfig, load_config
from ._hooks import Hooks

__all__ = ["CONFIG_ENV", "default_hooks", "resolve_config"]

CONFIG_ENV = "SVCCLIENT_CONFIG"
_lock = threading.Lock()
_hooks_by_registry: dict[int, tuple[Hooks, ...]] = {}


def resolve_config(config: ServiceConfig | str, overrides: Mapping[str, Any]) -> ServiceConfig:
    """A name becomes the file's entry (``$SVCCLIENT_CONFIG``) or defaults, plus env."""
    if isinstance(config, str):
        path = os.environ.get(CONFIG_ENV)
        configs = load_config(path) if path else {}
        config = configs.get(config) or ServiceConfig.from_env(config)
    return config.with_overrides(**overrides) if overrides else config


def default_hooks(registry: Any = None) -> tuple[Hooks, ...]:
    """Prometheus (``registry`` or the default one) and OpenTelemetry observers, shared."""
    from ._metrics import PrometheusHooks
    from ._tracing import TracingHooks

    key = id(registry)
    with _lock:
        hooks = _hooks_by_registry.get(key)
        if hooks is None:
            hooks = (PrometheusHooks(registry=registry), TracingHooks())
            _hooks_by_registry[key] = hooks
        return hooks
