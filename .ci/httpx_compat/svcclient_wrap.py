"""pytest plugin: every transport an ``httpx.Client``/``AsyncClient`` builds goes through svcclient.

Loaded with ``-p svcclient_wrap`` into httpx's own (unmodified) test suite by
``.ci/httpx_compat/run.py``. After a client's ``__init__`` ran, its transport and every
mounted transport (caller-supplied such as ``MockTransport``, the default
``HTTPTransport``, proxies, ``mounts=``) is replaced by a router that sends each request
through a ``ResilientTransport`` / ``AsyncResilientTransport`` built for the request's
origin, with svcclient's defaults (Prometheus and OpenTelemetry hooks included), over the
transport httpx built. One transport per origin, because that is how a user deploys it:
``ResilientTransport("http://example.org")`` is a client *of example.org*; a request to
another origin through it is sent unchanged (passthrough), so a single wrapper per client
would leave most of httpx's requests (``client.get("https://example.com/...")``) outside
the pipeline.

The router itself only dispatches. Its ``__enter__``/``__exit__``/``close`` go through one
``ResilientTransport`` that owns the inner transport (so its context-manager forwarding is
what httpx's tests see); the per-origin transports borrow the inner one and close only
what is theirs.

Environment:

* ``SVCCLIENT_COMPAT_POLICIES``: ``defaults`` (default) or ``off`` (no retries, budget,
  breaker, bulkhead or outlier ejection: the bare drivers); ``plain`` wraps nothing (the
  baseline: bare httpx under the same pins and skip list).
* ``SVCCLIENT_COMPAT_WIRE``: ``httpx`` (default) or ``aiohttp``: an ``AsyncClient`` whose
  default transport httpx built with default options gets svcclient's own pools on the
  aiohttp wire instead (``wire="aiohttp"``, svcclient owns the connections).
* ``SVCCLIENT_COMPAT_STATS``: a file the counts are written to (JSON) at the end.

Liveness: every call svcclient's pipeline starts is counted by a hook of its own
(``on_request_start`` / ``on_attempt_end``); at session start a 503 from a
``MockTransport`` must be tried 3 times with defaults (1 with policies off) through a
plain ``httpx.Client``, or the run aborts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections import Counter
from typing import Any

import httpx
import pytest

import svcclient
from svcclient._observability.defaults import for_config
from svcclient._pipeline.testmode import set_state
from svcclient._policies.breaker.registry import breakers

POLICIES = os.environ.get("SVCCLIENT_COMPAT_POLICIES", "defaults")
WIRE = os.environ.get("SVCCLIENT_COMPAT_WIRE", "httpx")
STATS_FILE = os.environ.get("SVCCLIENT_COMPAT_STATS")
SKIP_FILE = os.environ.get("SVCCLIENT_COMPAT_SKIP")
if POLICIES not in ("defaults", "off", "plain") or WIRE not in ("httpx", "aiohttp"):
    raise RuntimeError(f"bad SVCCLIENT_COMPAT_POLICIES={POLICIES!r} or _WIRE={WIRE!r}")

STATS: Counter[str] = Counter()
_lock = threading.Lock()
_OWNER_ORIGIN = "http://svcclient-compat-owner.invalid"


def _bump(key: str, n: int = 1) -> None:
    with _lock:
        STATS[key] += n


class _Counting(svcclient.Hooks):
    """Counts the pipeline's own events for one service (the liveness proof)."""

    def __init__(self, service: str) -> None:
        self._service = service

    def on_request_start(self, call: svcclient.CallInfo) -> None:
        _bump("pipeline_calls" if call.service == self._service else "passthrough_calls")

    def on_attempt_end(self, attempt: svcclient.AttemptInfo) -> None:
        if attempt.call.service == self._service:
            _bump("pipeline_attempts")
            if attempt.number:
                _bump("pipeline_retries")


def _config(origin: str, **extra: Any) -> svcclient.ServiceConfig:
    cfg = svcclient.ServiceConfig(origin, **extra)
    if POLICIES == "off":
        cfg = dataclasses.replace(
            cfg,
            retry=dataclasses.replace(cfg.retry, attempts=1),
            budget=None,
            breaker=None,
            bulkhead=None,
            outlier=dataclasses.replace(cfg.outlier, enabled=False),
        )
    return cfg


def _hooks(cfg: svcclient.ServiceConfig) -> list[svcclient.Hooks]:
    return [*for_config(cfg), _Counting(cfg.name)]


def _origin(url: httpx.URL) -> str | None:
    """``scheme://host[:port]`` of ``url`` when svcclient accepts it as a service, else None."""
    if url.scheme not in ("http", "https") or not url.host:
        return None
    host = f"[{url.host}]" if ":" in url.host else url.host
    origin = f"{url.scheme}://{host}" + (f":{url.port}" if url.port is not None else "")
    try:
        svcclient.ServiceConfig(origin)
    except svcclient.ConfigError:
        return None
    return origin


class _Borrowed(httpx.BaseTransport):
    """The inner transport seen by a per-origin ResilientTransport: its life is the owner's."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class _AsyncBorrowed(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> _AsyncBorrowed:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass


class SyncRouter(httpx.BaseTransport):
    """Each request through the ResilientTransport of its origin, over ``inner``."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        cfg = _config(_OWNER_ORIGIN)
        self._owner = svcclient.ResilientTransport(cfg, inner, hooks=_hooks(cfg))
        self._inner = inner
        self._services: dict[str, svcclient.ResilientTransport] = {}
        _bump("transports_wrapped")

    def _service(self, request: httpx.Request) -> svcclient.ResilientTransport:
        origin = _origin(request.url)
        if origin is None:
            return self._owner  # not a service URL svcclient accepts: observed passthrough
        service = self._services.get(origin)
        if service is None:
            cfg = _config(origin)
            service = svcclient.ResilientTransport(cfg, _Borrowed(self._inner), hooks=_hooks(cfg))
            self._services[origin] = service
        return service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._service(request).handle_request(request)

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        self._owner.close()

    def __enter__(self) -> SyncRouter:
        self._owner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        for service in self._services.values():
            service.close()
        self._owner.__exit__(*args)


class AsyncRouter(httpx.AsyncBaseTransport):
    """Async twin of :class:`SyncRouter`; ``inner=None``: svcclient's own pools (aiohttp)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None) -> None:
        wire = {"wire": "aiohttp"} if inner is None else {}
        self._wire = wire
        cfg = _config(_OWNER_ORIGIN, **wire)
        self._owner = svcclient.AsyncResilientTransport(cfg, inner, hooks=_hooks(cfg))
        self._inner = inner
        self._services: dict[str, svcclient.AsyncResilientTransport] = {}
        _bump("transports_wrapped")
        if inner is None:
            _bump("transports_aiohttp")

    def _service(self, request: httpx.Request) -> svcclient.AsyncResilientTransport:
        origin = _origin(request.url)
        if origin is None:
            return self._owner
        service = self._services.get(origin)
        if service is None:
            cfg = _config(origin, **self._wire)
            inner = None if self._inner is None else _AsyncBorrowed(self._inner)
            service = svcclient.AsyncResilientTransport(cfg, inner, hooks=_hooks(cfg))
            self._services[origin] = service
        return service

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = self._service(request)
        if self._inner is None and service is not self._owner:
            _bump("aiohttp_requests")
        return await service.handle_async_request(request)

    async def aclose(self) -> None:
        for service in self._services.values():
            await service.aclose()
        await self._owner.aclose()

    async def __aenter__(self) -> AsyncRouter:
        await self._owner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        for service in self._services.values():
            await service.aclose()
        await self._owner.__aexit__(*args)


_DEFAULT_OPTIONS = {
    "verify": True,
    "cert": None,
    "http1": True,
    "http2": False,
    "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
    "proxy": None,
    "mounts": None,
}


def _aiohttp_eligible(kwargs: dict[str, Any]) -> bool:
    """Did httpx build its default network transport with default options?"""
    if kwargs.get("transport") is not None:
        return False
    return all(kwargs.get(k, v) == v for k, v in _DEFAULT_OPTIONS.items())


def _wrap_client(client: httpx.Client) -> None:
    client._transport = SyncRouter(client._transport)
    client._mounts = {
        pattern: None if t is None else SyncRouter(t) for pattern, t in client._mounts.items()
    }


def _wrap_async_client(client: httpx.AsyncClient, kwargs: dict[str, Any]) -> None:
    inner: httpx.AsyncBaseTransport | None = client._transport
    if WIRE == "aiohttp" and _aiohttp_eligible(kwargs):
        inner = None  # svcclient's own pools, on aiohttp; httpx's default one is dropped
    client._transport = AsyncRouter(inner)
    client._mounts = {
        pattern: None if t is None else AsyncRouter(t) for pattern, t in client._mounts.items()
    }


_original_sync_init = httpx.Client.__init__
_original_async_init = httpx.AsyncClient.__init__


def _sync_init(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
    _original_sync_init(self, *args, **kwargs)
    _wrap_client(self)
    _bump("clients")


def _async_init(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
    _original_async_init(self, *args, **kwargs)
    _wrap_async_client(self, kwargs)
    _bump("async_clients")


def _self_check() -> None:
    """A 503 through a plain httpx.Client is retried as svcclient's defaults say."""
    seen: list[int] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(503)

    with httpx.Client(transport=httpx.MockTransport(unavailable)) as client:
        status = client.get("http://svcclient-compat-selfcheck.invalid/").status_code
    expected = 3 if POLICIES == "defaults" else 1
    if status != 503 or len(seen) != expected:
        raise pytest.UsageError(
            f"svcclient_wrap is not live: a 503 was tried {len(seen)} times, expected {expected}"
        )
    STATS["selfcheck_tries_of_503"] = len(seen)


def pytest_configure(config: pytest.Config) -> None:
    if POLICIES == "plain":
        return
    httpx.Client.__init__ = _sync_init  # type: ignore[method-assign]
    httpx.AsyncClient.__init__ = _async_init  # type: ignore[method-assign]
    set_state(True, None)  # svcclient test mode: retries without backoff sleeps
    _self_check()
    breakers.clear()


@pytest.fixture(autouse=True)
def _svcclient_isolation() -> Any:
    """Each httpx test starts with no breaker state left by another (shared by name)."""
    breakers.clear()
    yield
    breakers.clear()


def _skips() -> dict[str, str]:
    """``skip.txt``: ``<test id>  # <reason>`` per line; an id without ``[...]`` names all."""
    skips: dict[str, str] = {}
    if SKIP_FILE:
        with open(SKIP_FILE) as f:
            for line in f:
                test_id, _, reason = line.strip().partition("  # ")
                if test_id and not test_id.startswith("#"):
                    skips[test_id.strip()] = reason.strip()
    return skips


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = _skips()
    used: set[str] = set()
    for item in items:
        for key in (item.nodeid, item.nodeid.split("[", 1)[0]):
            if key in skips:
                item.add_marker(pytest.mark.skip(reason=f"svcclient_wrap: {skips[key]}"))
                used.add(key)
                STATS["skip_matched"] += 1
                break
    STATS["skip_unmatched"] = sorted(set(skips) - used)  # type: ignore[assignment]


def pytest_unconfigure(config: pytest.Config) -> None:
    httpx.Client.__init__ = _original_sync_init  # type: ignore[method-assign]
    httpx.AsyncClient.__init__ = _original_async_init  # type: ignore[method-assign]
    if STATS_FILE:
        with open(STATS_FILE, "w") as f:
            json.dump(dict(STATS), f, indent=1, sort_keys=True)
