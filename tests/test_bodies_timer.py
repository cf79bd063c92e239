"""A streamed body from a caller's async transport: each chunk is held to the call's
deadline, by the driver's loop timer on asyncio and by a cancel scope on trio; a
cancellation from elsewhere stays a cancellation, and no timer entry is left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from svcclient import AsyncServiceClient, DeadlineExceeded


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _Slow(httpx.AsyncByteStream):
    """``parts`` chunks, the one at index ``stall`` arriving only after 30 s."""

    def __init__(self, parts: int, stall: int | None) -> None:
        self.parts, self.stall, self.closed = parts, stall, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.parts):
            if i == self.stall:
                await anyio.sleep(30)
            await anyio.sleep(0)
            yield b"x" * 10

    async def aclose(self) -> None:
        self.closed = True


def _client(stream: _Slow) -> AsyncServiceClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    return AsyncServiceClient(
        "body-timer",
        url="http://body-timer.test",
        transport=httpx.MockTransport(handler),
        deadline=0.3,
        timeout=0.3,
        hooks=[],
    )


def _timer_entries(client: AsyncServiceClient) -> int:
    timer = client.resilient._timer
    return 0 if timer is None else len(timer.calls)


@pytest.mark.anyio
async def test_every_chunk_of_a_healthy_stream_arrives_and_no_entry_is_left(
    anyio_backend: str,
) -> None:
    """200 chunks read through the timer: all arrive, the timer holds nothing after."""
    stream = _Slow(200, None)
    async with _client(stream) as client:
        async with client.stream("GET", "/") as response:
            body = b"".join([part async for part in response.aiter_raw()])
        # on asyncio the driver's loop timer held the attempt and then each chunk
        assert (client.resilient._timer is not None) is (anyio_backend == "asyncio")
        assert body == b"x" * 2000
        assert _timer_entries(client) == 0
    assert stream.closed


@pytest.mark.anyio
async def test_a_chunk_stalling_past_the_deadline_raises_deadline_exceeded() -> None:
    """The fourth chunk never comes in time: DeadlineExceeded by the deadline (0.3 s),
    generously bounded, and the timer holds nothing after."""
    stream = _Slow(10, 3)
    async with _client(stream) as client:
        with anyio.fail_after(10):
            start = anyio.current_time()
            with pytest.raises(DeadlineExceeded):
                async with client.stream("GET", "/") as response:
                    async for _ in response.aiter_raw():
                        pass
            assert anyio.current_time() - start < 5
        assert _timer_entries(client) == 0
    assert stream.closed


@pytest.mark.anyio
async def test_a_cancellation_from_elsewhere_mid_chunk_stays_a_cancellation() -> None:
    """A caller's own cancel scope ending while a chunk is awaited cancels the read (no
    DeadlineExceeded, no timeout swallowed), and the timer holds nothing after."""
    stream = _Slow(10, 2)
    async with _client(stream) as client:
        got: list[bytes] = []
        with anyio.move_on_after(0.05) as scope:
            async with client.stream("GET", "/") as response:
                async for part in response.aiter_raw():
                    got.append(part)
        assert scope.cancelled_caught and len(got) == 2
        assert _timer_entries(client) == 0
