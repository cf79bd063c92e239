"""A coroutine function as a service's fallback: the async driver awaits its answer."""

from __future__ import annotations

import httpx
import pytest

from svcclient import AsyncServiceClient, CircuitOpenError


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _cached(request: httpx.Request, cause: BaseException) -> httpx.Response:
    return httpx.Response(200, json={"cached": True, "cause": type(cause).__name__})


def _client(answer: int) -> AsyncServiceClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(answer))
    return AsyncServiceClient(
        "users", url="http://users:80", transport=transport, fallback=_cached, retry={"attempts": 1}
    )


@pytest.mark.anyio
async def test_an_async_fallback_answers_a_failed_call() -> None:
    """A final 503 goes to the async fallback, whose awaited response is the answer."""
    async with _client(503) as client:
        response = await client.get("/users/1")
    assert response.status_code == 200
    assert response.json() == {"cached": True, "cause": "HTTPStatusError"}


@pytest.mark.anyio
async def test_an_async_fallback_answers_an_open_breaker() -> None:
    """A call the open breaker refuses gets the async fallback's answer, not an error."""
    async with _client(503) as client:
        for _ in range(30):  # enough failures to open the breaker with its defaults
            await client.get("/users/1")
        breaker = client.resilient.runtime.breaker
        assert breaker is not None and breaker.state == "open"
        response = await client.get("/users/1")
    assert response.json()["cause"] == CircuitOpenError.__name__
