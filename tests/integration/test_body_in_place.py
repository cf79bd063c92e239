"""ServiceClient reads the body inside the attempt, in place: the response httpx hands
back is decoded as usual and has ``elapsed`` set, sync and async."""

from __future__ import annotations

import datetime
import gzip
from collections.abc import Callable

import pytest

from svcclient import AsyncServiceClient, ServiceClient
from svcclient.testing import Fault, FaultServer

BODY = b'{"users": [1, 2, 3]}' * 50


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _gzip_server(fault_server: Callable[..., FaultServer]) -> FaultServer:
    server = fault_server()
    server.set_fault(Fault.ok(body=gzip.compress(BODY), headers={"content-encoding": "gzip"}))
    return server


def test_sync_body_is_decoded_and_elapsed_is_set(
    fault_server: Callable[..., FaultServer],
) -> None:
    """A gzip body read inside the attempt reaches the caller decoded, with elapsed."""
    server = _gzip_server(fault_server)
    with ServiceClient("in-place", url=server.url, hooks=[]) as client:
        for _ in range(2):  # the second one on the kept-alive connection
            response = client.get("/users")
            assert response.content == BODY
            assert response.num_bytes_downloaded == len(gzip.compress(BODY))
            assert isinstance(response.elapsed, datetime.timedelta)
            assert response.elapsed.total_seconds() > 0
            assert response.is_closed and response.request.url.path == "/users"
    assert server.accepted == 1


@pytest.mark.anyio
async def test_async_body_is_decoded_and_elapsed_is_set(
    fault_server: Callable[..., FaultServer],
) -> None:
    """The async twin: decoded body, elapsed set, the connection reused."""
    server = _gzip_server(fault_server)
    async with AsyncServiceClient("in-place-async", url=server.url, hooks=[]) as client:
        for _ in range(2):
            response = await client.get("/users")
            assert response.content == BODY
            assert response.elapsed.total_seconds() > 0
            assert response.is_closed
    assert server.accepted == 1
