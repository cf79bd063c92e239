"""Metrics and spans for an ``httpx.Client`` / ``AsyncClient`` you already have.

``instrument(client)`` wraps the client's transports in a thin observer transport that
reports every request to the hooks as one call with one attempt: the same
``http_request_duration_seconds`` / ``network_errors_total`` series, spans and
``traceparent`` as the full svcclient pipeline, without retries, breakers or discovery.
Do not instrument a client whose transport is already a svcclient ``ResilientTransport``:
the pipeline reports its own attempts and they would be counted twice.

``target_service`` comes from the request's host through :func:`default_service_name`
unless a function or a mapping is given. The route comes from
``extensions={"route": "/users/{id}"}`` when the request has one, else the normaliser.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Final, TypeVar

import httpx

from .._classify import classify_error
from .._exceptions import ConfigError
from .hooks import Hooks, HookTable, ObservedExchange, enter_attempt, leave_attempt
from .routes import OTHER_ROUTE, route_table

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "AsyncInstrumentedTransport",
    "InstrumentedTransport",
    "default_service_name",
    "instrument",
]

logger = logging.getLogger("svcclient")

ServiceNamer = str | Mapping[str, str] | Callable[[str], str | None]

# Distinct target services one instrumented client reports before folding into "other"
# a client that follows arbitrary URLs must not explode the target_service label.
_MAX_SERVICES: Final = 1000
_MAX_HOSTS: Final = 10_000
_CLUSTER_SUFFIXES: Final = (".svc.cluster.local", ".svc")


def default_service_name(host: str) -> str:
    """The default ``target_service`` for a host name.

    ``users.prod.svc.cluster.local`` and ``users.prod.svc`` give ``users``; a bare name
    (``users``) gives itself; IP addresses and other hosts are kept as they are.

    >>> default_service_name("orders.shop.svc.cluster.local")
    'orders'
    >>> default_service_name("api.example.com")
    'api.example.com'
    """
    name = host.rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return name
    for suffix in _CLUSTER_SUFFIXES:
        if name.endswith(suffix):
            return name.split(".", 1)[0]
    return name


class _Observer:
    """What both transports share: the hooks' table, service names and route tables."""

    __slots__ = ("_known", "_lock", "_namer", "_services", "hooks", "table")

    def __init__(self, hooks: Sequence[Hooks], namer: ServiceNamer | None) -> None:
        self.hooks = tuple(hooks)
        self.table = HookTable(self.hooks)
        self._namer = namer
        self._services: dict[str, str] = {}
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def service(self, host: str) -> str:
        name = self._services.get(host)
        if name is not None:
            return name
        namer = self._namer
        name = None
        try:
            if isinstance(namer, str):
                name = namer
            elif isinstance(namer, Mapping):
                name = namer.get(host)
            elif namer is not None:
                name = namer(host)
        except Exception:
            logger.exception("svcclient service_name function failed for %r", host)
        if name is not None and not isinstance(name, str):
            logger.error(
                "svcclient service_name function returned %s for %r, not a str or None",
                type(name).__name__,
                host,
            )
            name = None
        if not name:
            name = default_service_name(host)
        with self._lock:
            if name not in self._known:
                if len(self._known) >= _MAX_SERVICES:
                    name = OTHER_ROUTE
                else:
                    self._known.add(name)
            if len(self._services) < _MAX_HOSTS:
                self._services[host] = name
        return name

    def route(self, service: str, request: httpx.Request) -> str:
        table = route_table(service)
        explicit = request.extensions.get("route")
        return table.route(request.url.path, explicit if isinstance(explicit, str) else None)

    def begin(self, request: httpx.Request) -> ObservedExchange:
        service = self.service(request.url.host)
        route = self.route(service, request)
        return ObservedExchange(self.table, service, route, request, perf_counter)


def _error_type(exc: BaseException) -> str:
    return classify_error(exc) if isinstance(exc, Exception) else "unknown"


class InstrumentedTransport(httpx.BaseTransport):
    """Wraps a sync transport; each request becomes one call with one attempt."""

    def __init__(self, transport: httpx.BaseTransport, observer: _Observer) -> None:
        self.transport = transport
        self._observer = observer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the wrapped transport, reporting the attempt to the hooks."""
        observed = self._observer.begin(request)
        undo = enter_attempt(observed.enter) if observed.enter is not None else None
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            if undo is not None:
                leave_attempt(undo)
                undo = None
            observed.done(None, _error_type(exc))
            raise
        if undo is not None:
            leave_attempt(undo)
        observed.done(response.status_code, None)
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()


class AsyncInstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport; each request becomes one call with one attempt."""

    def __init__(self, transport: httpx.AsyncBaseTransport, observer: _Observer) -> None:
        self.transport = transport
        self._observer = observer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the wrapped transport, reporting the attempt to the hooks."""
        observed = self._observer.begin(request)
        undo = enter_attempt(observed.enter) if observed.enter is not None else None
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            if undo is not None:
                leave_attempt(undo)
                undo = None
            observed.done(None, _error_type(exc))
            raise
        if undo is not None:
            leave_attempt(undo)
        observed.done(response.status_code, None)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()


_C = TypeVar("_C", httpx.Client, httpx.AsyncClient)


def _host_map(mapping: Mapping[str, str]) -> dict[str, str]:
    """``service_name`` as a mapping, checked and keyed as httpx gives hosts (lower case)."""
    out: dict[str, str] = {}
    for host, name in mapping.items():
        if not isinstance(host, str) or not isinstance(name, str):
            raise TypeError(
                "instrument(service_name=...) as a mapping takes str hosts to str names, "
                f"not {type(host).__name__} -> {type(name).__name__}"
            )
        if not name.strip():
            raise ConfigError(None, f"service_name[{host!r}]", name, "must not be empty")
        out[host.lower()] = name
    return out


def instrument(
    client: _C,
    *,
    service_name: ServiceNamer | None = None,
    hooks: Sequence[Hooks] | None = None,
    registry: CollectorRegistry | None = None,
) -> _C:
    """Add svcclient metrics and spans to an existing httpx client; returns the client.

    ``service_name`` names ``target_service``:

    * a string: every request (``"billing"``);
    * a mapping of host to name (``{"10.0.0.7": "billing"}``; hosts are matched in lower
      case, the mapping is copied here);
    * a function of the request's host returning a name, or ``None`` for the default.

    A host the mapping lacks, a function that returns ``None`` (or fails: logged), and no
    ``service_name`` at all use the default rule, :func:`default_service_name`. A name is
    worked out once per host. Another type, or a mapping with a key or value that is not
    a string, is a ``TypeError`` here, not on every request.
    ``hooks`` replace the default observers, ``PrometheusHooks(registry)`` and
    ``TracingHooks()``. Instrumenting a client again replaces its observers.

    Example::

        client = svcclient.instrument(httpx.Client(), service_name={"10.0.0.7": "billing"})
        client.get("http://users.prod.svc.cluster.local/users/42")
        # http_request_duration_seconds{target_service="users", route="/users/{id}", ...}
    """
    if not (
        service_name is None or isinstance(service_name, str | Mapping) or callable(service_name)
    ):
        raise TypeError(
            "instrument(service_name=...) takes a str, a mapping of hosts or a callable, "
            f"not {type(service_name).__name__}"
        )
    if isinstance(service_name, str) and not service_name.strip():
        raise ConfigError(None, "service_name", service_name, "must not be empty")
    if isinstance(service_name, Mapping):
        service_name = _host_map(service_name)
    if hooks is None:
        from .otel import TracingHooks
        from .prometheus import PrometheusHooks

        hooks = (PrometheusHooks(registry), TracingHooks())
    observer = _Observer(hooks, service_name)
    # httpx offers no public way to swap a built client's transports, and its public
    # event_hooks see neither transport errors nor attempt timing. ``_transport`` and
    # ``_mounts`` have been stable across httpx 0.2x; the wrap is idempotent.
    if isinstance(client, httpx.AsyncClient):
        aclient: httpx.AsyncClient = client

        def awrap(t: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            if isinstance(t, AsyncInstrumentedTransport):
                t = t.transport
            return AsyncInstrumentedTransport(t, observer)

        aclient._transport = awrap(aclient._transport)
        aclient._mounts = {p: None if t is None else awrap(t) for p, t in aclient._mounts.items()}
    else:
        sclient: httpx.Client = client

        def wrap(t: httpx.BaseTransport) -> httpx.BaseTransport:
            if isinstance(t, InstrumentedTransport):
                t = t.transport
            return InstrumentedTransport(t, observer)

        sclient._transport = wrap(sclient._transport)
        sclient._mounts = {p: None if t is None else wrap(t) for p, t in sclient._mounts.items()}
    return client
