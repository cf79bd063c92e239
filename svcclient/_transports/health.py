"""Active health checks: probe each endpoint's health path on an interval.

Which endpoint is due, and what a result does to rotation, is decided by the balancer's
outlier detector (``due_health_checks`` / ``mark_health``); this module only sends the
probes, from a daemon thread: the sync transport's thread sends them itself; the async
transport's thread wakes on the interval and runs each round of probes on the caller's
event loop (``anyio.from_thread`` with the loop's token), so it works on asyncio and
trio alike and needs no task group that would outlive a request. The two rounds
(``_round``) are twins of a dozen lines that differ only in the I/O (the async one
awaits under a timer); each stops between probes once closed.
A probe is a GET of ``OutlierPolicy.health_check_path`` with the service's Host header;
2xx and 3xx pass, anything else (or no answer within the timeout) fails.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from .._endpoint import Endpoint
from .._pipeline.extensions import TIMEOUT, TIMEOUT_KEYS
from .._pipeline.service_state import ServiceRuntime

__all__ = ["AsyncHealthChecker", "HealthChecker", "probe_request"]

log = logging.getLogger("svcclient")


def probe_request(rt: ServiceRuntime, timeout: float) -> httpx.Request:
    """The GET a health probe sends (same URL host, so Host and SNI name the service)."""
    path = rt.config.outlier.health_check_path or "/"
    request = httpx.Request("GET", rt.base_url.join(path))
    request.extensions[TIMEOUT] = dict.fromkeys(TIMEOUT_KEYS, timeout)
    return request


def _passed(status: int) -> bool:
    return 200 <= status < 400


def _period(rt: ServiceRuntime) -> tuple[float, float]:
    interval = rt.config.outlier.health_check_interval
    return interval, min(rt.config.timeout, interval)


class HealthChecker:
    """A daemon thread probing due endpoints through ``send(endpoint, request)``."""

    def __init__(
        self,
        rt: ServiceRuntime,
        send: Callable[[Endpoint, httpx.Request], httpx.Response],
    ) -> None:
        self._rt = rt
        self._send = send
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"svcclient-health-{rt.name}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        interval, timeout = _period(self._rt)
        while not self._stop.is_set():
            self._round(timeout)
            self._stop.wait(min(interval / 4, 1.0))

    def _round(self, timeout: float) -> None:
        # the I/O of AsyncHealthChecker._round, without the event loop: keep them alike
        rt = self._rt
        for endpoint in rt.balancer.due_health_checks():
            if self._stop.is_set():
                return
            healthy = False
            try:
                response = self._send(endpoint, probe_request(rt, timeout))
                healthy = _passed(response.status_code)
                response.close()
            except httpx.HTTPError as exc:
                log.info("%s: health check of %s failed: %s", rt.name, endpoint, exc)
            rt.balancer.mark_health(endpoint, healthy)

    def close(self) -> None:
        """Stop probing and wait (bounded) for the thread to finish."""
        self._stop.set()
        self._thread.join(timeout=5.0)


class AsyncHealthChecker:
    """Probes due endpoints through ``send(endpoint, request)`` on the creating task's
    event loop, woken by a daemon thread (create it from inside the loop)."""

    def __init__(
        self,
        rt: ServiceRuntime,
        send: Callable[[Endpoint, httpx.Request], Coroutine[Any, Any, httpx.Response]],
    ) -> None:
        # anyio is imported by the async driver, not with svcclient (the sync one needs none).
        import anyio.lowlevel

        self._rt = rt
        self._send = send
        self._token = anyio.lowlevel.current_token()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"svcclient-health-{rt.name}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        import anyio.from_thread

        interval, timeout = _period(self._rt)
        while not self._stop.is_set():
            try:
                anyio.from_thread.run(self._round, timeout, token=self._token)
            except Exception:  # the event loop is gone (closed without aclose)
                return
            self._stop.wait(min(interval / 4, 1.0))

    async def _round(self, timeout: float) -> None:
        # HealthChecker._round with a timer: the send is held to the timeout on any loop
        import anyio

        rt = self._rt
        for endpoint in rt.balancer.due_health_checks():
            if self._stop.is_set():
                return
            healthy = False
            try:
                with anyio.fail_after(timeout):
                    response = await self._send(endpoint, probe_request(rt, timeout))
                healthy = _passed(response.status_code)
                await response.aclose()
            except (httpx.HTTPError, TimeoutError) as exc:
                log.info("%s: health check of %s failed: %s", rt.name, endpoint, exc)
            rt.balancer.mark_health(endpoint, healthy)

    async def aclose(self) -> None:
        """Stop probing and wait (bounded) for the thread to finish."""
        import anyio.to_thread

        self._stop.set()
        await anyio.to_thread.run_sync(self._thread.join, 5.0)
