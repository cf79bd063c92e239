"""What the sync and async drivers share: their setup and the per-request preamble.

Neither part does I/O, so one copy serves both drivers; the drivers add only what
differs between blocking and awaiting (resolving DNS, sending, sleeping, closing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import httpx

from .._config.model import ServiceConfig
from .._config.sources import resolve_config
from .._endpoint import Endpoint
from .._observability.defaults import for_config as _default_hooks
from .._observability.hooks import Hooks
from .._pipeline.call import retargeted
from .._pipeline.service_state import ServiceRuntime
from .pools import PoolSet

__all__ = ["DriverBase"]

T = TypeVar("T")


class DriverBase(Generic[T]):
    """Setup and preamble shared by :class:`ResilientTransport` and its async twin.

    ``T`` is the httpx transport type the driver sends through (sync or async).
    """

    def _setup(
        self,
        config: ServiceConfig | str,
        transport: T | None,
        *,
        hooks: Sequence[Hooks] | None,
        registry: Any,
        clock: Callable[[], float],
        overrides: dict[str, Any],
    ) -> None:
        self.config = cfg = resolve_config(config, overrides)
        self._hooks = _default_hooks(cfg, registry) if hooks is None else tuple(hooks)
        self._inner = transport
        self.runtime = rt = ServiceRuntime(
            cfg, self._hooks, owns_transport=transport is None, clock=clock
        )
        # pinned imports httpcore (and with it anyio/trio): ~half of svcclient's import
        # time, so it is imported when the first transport is built, not with svcclient.
        from .pinned import transport_options

        self._options = transport_options(
            cfg.verify,
            cfg.http2,
            httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_keepalive_connections,
                keepalive_expiry=cfg.keepalive_expiry,
            ),
        )
        self._pools: PoolSet[T] = PoolSet(self._new_pool, cfg.deadline + 1.0)
        # Compared with each request's parse result (httpx's private ``_uri_reference``,
        # pinned in tests/test_httpx_private.py): its scheme, host (IDNA-encoded, as
        # parsed) and port are plain fields, where ``url.host``/``.scheme``/``.port`` are
        # a Python property call each. The same parse of the same name gives the same
        # encoded host, so equal raw hosts are equal hosts.
        ref = rt.base_url._uri_reference
        self._origin_scheme: str = ref.scheme
        self._origin_host: str = ref.host
        self._origin_port: int = rt.origin.port
        # The caller's transport, when no DNS is ours to do: it then decides where bytes go
        # and gets the caller's request as it is (see _target).
        self._fixed: T | None = transport if rt.endpoint_set is None else None
        # Health checks (outlier detection with a health path): the driver starts them,
        # at once or (``_health_due``) on the first request: the async driver's need a
        # running event loop, and a forked child's are restarted there.
        self._wants_health = bool(cfg.outlier.enabled and cfg.outlier.health_check_path)
        self._health_due = False
        self._health_lock = threading.Lock()
        self._health: Any = None

    def _new_pool(self, endpoint: Endpoint) -> T:  # pragma: no cover - each driver overrides
        raise NotImplementedError

    @property
    def base_url(self) -> httpx.URL:
        """The discovered base URL of the service."""
        return self.runtime.base_url

    def _serves(self, request: httpx.Request) -> bool:
        """Is ``request`` for the service (its scheme, host and port)? Another origin
        (a redirect elsewhere, an absolute URL) is sent to its own host, unchanged."""
        ref = request.url._uri_reference
        port = ref.port
        return (
            ref.host == self._origin_host
            and ref.scheme == self._origin_scheme
            and (port is None or port == self._origin_port)
        )

    def _new_health(self) -> Any:  # pragma: no cover - each driver overrides
        raise NotImplementedError

    def _restart_health(self) -> None:
        """Start the health checks the first request is due to start (once, whichever
        thread's request comes first)."""
        with self._health_lock:
            if self._health_due:
                self._health = self._new_health()
                self._health_due = False

    def _retiring(self) -> list[T]:
        """Retire pools of endpoints that left; return the retired pools now due to close."""
        rt = self.runtime
        if rt.retired or self._pools.retiring:
            now = rt.clock()
            self._pools.retire(rt.retired, now)
            return self._pools.due(now)
        return []

    def _target(self, endpoint: Endpoint, request: httpx.Request) -> tuple[T, httpx.Request]:
        """Where a request for ``endpoint`` goes: the caller's transport as it is (no DNS
        of ours), the endpoint's pool, or the caller's transport with a copy pointed at
        the endpoint (never the caller's request)."""
        fixed = self._fixed
        if fixed is not None:
            return fixed, request
        inner = self._inner
        if inner is None:
            return self._pools.get(endpoint), request
        return inner, retargeted(request, endpoint, self.runtime.origin)
