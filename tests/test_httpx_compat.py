"""Bugs that httpx's own test suite found through the transports (.ci/httpx_compat), each
pinned here without that suite."""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from svcclient import AsyncResilientTransport, RetryPolicy, ServiceConfig
from svcclient.testing import no_retry_sleeps

URL = "http://user-service:3000"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_retry_after_a_failed_body_write_leaves_no_abandoned_generator() -> None:
    """A PUT whose body write times out is retried with the same bytes, and the failed
    attempt's body iteration is no half-run async generator (trio: ResourceWarning)."""
    bodies: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        async for chunk in request.stream:
            if not bodies:
                bodies.append(b"")
                raise httpx.WriteTimeout("write timed out", request=request)
            bodies.append(chunk)
        return httpx.Response(200)

    transport = AsyncResilientTransport(
        ServiceConfig("user-service", url=URL),
        httpx.MockTransport(handler),
        registry=CollectorRegistry(),
    )
    with no_retry_sleeps():
        async with httpx.AsyncClient(transport=transport, base_url=URL) as client:
            response = await client.put("/users/1", content=b"x" * 1000)
            gc.collect()  # an abandoned generator would be finalized (and warn) here
    assert response.status_code == 200
    assert bodies == [b"", b"x" * 1000]
    assert isinstance(response.request.stream, httpx.ByteStream)
    assert response.request.content == b"x" * 1000


@pytest.fixture
def unread_socket() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback HTTP 'server' that accepts and never reads: request writes stall."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for conn in accepted:
        conn.close()
    thread.join(5)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_aiohttp_wire_write_timeout(
    unread_socket: tuple[str, list[socket.socket]],
) -> None:
    """wire="aiohttp": a body the server does not read raises httpx.WriteTimeout within
    the caller's write timeout (aiohttp has none); the stalled connection is aborted (not
    left closing behind a buffer nobody reads), and no large-body ResourceWarning."""
    pytest.importorskip("aiohttp")
    url, accepted = unread_socket
    config = ServiceConfig(
        url, retry=RetryPolicy(attempts=1), wire="aiohttp", timeout=5, deadline=10
    )
    transport = AsyncResilientTransport(config, registry=CollectorRegistry())
    timeout = httpx.Timeout(10.0, write=0.2)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(httpx.WriteTimeout):
            await client.put(url + "/upload", content=b"*" * (64 * 1024 * 1024))
        elapsed = time.monotonic() - started
        await anyio.sleep(0.1)
        gc.collect()  # a stalled connection left open would warn here (unclosed transport)
    assert elapsed < 4.0  # generous: neither the 5 s attempt nor the 10 s read timeout
    assert len(accepted) == 1  # one attempt, one connection: aborted, not left closing


@pytest.mark.anyio
async def test_redirect_keeps_the_body_through_the_transport() -> None:
    """A 307 re-sends the body (httpx builds the new request on the same, unread stream)."""
    seen: list[tuple[str, bytes]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, await request.aread()))
        if request.url.path == "/old":
            return httpx.Response(307, headers={"location": "/new"})
        return httpx.Response(200)

    transport = AsyncResilientTransport(
        ServiceConfig("user-service", url=URL),
        httpx.MockTransport(handler),
        registry=CollectorRegistry(),
    )
    async with httpx.AsyncClient(transport=transport, base_url=URL) as client:
        response = await client.post("/old", content=b"payload", follow_redirects=True)
        again = await client.get("/old", follow_redirects=True)
    assert response.status_code == again.status_code == 200
    assert seen == [("/old", b"payload"), ("/new", b"payload"), ("/old", b""), ("/new", b"")]
