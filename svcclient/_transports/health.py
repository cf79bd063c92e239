"""Active health checks: probe each endpoint's health path on an interval.

Which endpoint is due, and what a result does to rotation, is decided by the balancer's
outlier detector (``due_health_checks`` / ``mark_health``); this module only sends the
probes — from a daemon thread for the sync transport, from a task for the async one.
A probe is a GET of ``OutlierPolicy.health_check_path`` with the service's Host header;
2xx and 3xx pass, anything else (or no answer within the timeout) fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from .._endpoint import Endpoint
from .._pipeline.service_state import ServiceRuntime

__all__ = ["AsyncHealthChecker", "HealthChecker", "probe_request"]

log = logging.getLogger("svcclient")


def probe_request(rt: ServiceRuntime, timeout: float) -> httpx.Request:
    """The GET a health probe sends (same URL host, so Host and SNI name the service)."""
    path = rt.config.outlier.health_check_path or "/"
    request = httpx.Request("GET", rt.base_url.join(path))
    request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), timeout)
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
            for endpoint in self._rt.balancer.due_health_checks():
                healthy = False
                try:
                    response = self._send(endpoint, probe_request(self._rt, timeout))
                    healthy = _passed(response.status_code)
                    response.close()
                except httpx.HTTPError as exc:
                    log.info("%s: health check of %s failed: %s", self._rt.name, endpoint, exc)
                self._rt.balancer.mark_health(endpoint, healthy)
            self._stop.wait(min(interval / 4, 1.0))

    def close(self) -> None:
        """Stop probing and wait (bounded) for the thread to finish."""
        self._stop.set()
        self._thread.join(timeout=5.0)


class AsyncHealthChecker:
    """An asyncio task probing due endpoints through ``send(endpoint, request)``."""

    def __init__(
        self,
        rt: ServiceRuntime,
        send: Callable[[Endpoint, httpx.Request], Coroutine[Any, Any, httpx.Response]],
    ) -> None:
        self._rt = rt
        self._send = send
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        interval, timeout = _period(self._rt)
        while True:
            for endpoint in self._rt.balancer.due_health_checks():
                healthy = False
                try:
                    async with asyncio.timeout(timeout):
                        response = await self._send(endpoint, probe_request(self._rt, timeout))
                    healthy = _passed(response.status_code)
                    await response.aclose()
                except (httpx.HTTPError, TimeoutError) as exc:
                    log.info("%s: health check of %s failed: %s", self._rt.name, endpoint, exc)
                self._rt.balancer.mark_health(endpoint, healthy)
            await asyncio.sleep(min(interval / 4, 1.0))

    async def aclose(self) -> None:
        """Cancel the probing task."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
