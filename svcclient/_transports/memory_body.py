"""``InMemoryBody``: a body already in memory whose async iteration is no async generator.

httpx's ``ByteStream.__aiter__`` is an async generator. Two places in svcclient hold a
whole body and hand it on:

* a request body every attempt sends again: an attempt whose write fails leaves httpx's
  generator suspended, and when a retry drops that attempt's exception the generator is
  collected unfinished, which trio reports as a ``ResourceWarning`` (an error under
  ``filterwarnings = error``);
* a response body read inside the attempt (the drivers, the aiohttp wire): the event
  loop registers every async generator it starts (a weak set add and remove each), and
  the service clients take such a body as it is instead of iterating it (see
  :func:`svcclient._client.take_body`).

Iterating a plain object instead avoids both. It is still an ``httpx.ByteStream``, so
httpx and the drivers treat it as a body already read.
"""

from __future__ import annotations

import httpx

__all__ = ["InMemoryBody"]


class InMemoryBody(httpx.ByteStream):
    """``content`` as an ``httpx.ByteStream`` (sync and async) that iterates without a frame."""

    def __aiter__(self) -> _Chunk:
        return _Chunk(self._stream)  # httpx's ByteStream keeps its bytes in ``_stream``


class _Chunk:
    """Yields its one bytes object (even an empty one, as httpx does), then stops."""

    __slots__ = ("_left",)

    def __init__(self, content: bytes) -> None:
        self._left: bytes | None = content

    def __aiter__(self) -> _Chunk:
        return self

    async def __anext__(self) -> bytes:
        left = self._left
        if left is None:
            raise StopAsyncIteration
        self._left = None
        return left
