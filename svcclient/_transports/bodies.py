"""Response bodies that stream after the call returned, still bounded by its deadline.

The transport returns as soon as the headers are in; the caller reads the body later
(httpx's ``get()`` at once, ``stream()`` chunk by chunk, with flat memory either way).
These wrappers keep the deadline on that body: each chunk is read with the call's
deadline as the socket bound (:data:`~svcclient._transports.bound.BOUND`), a body that
keeps coming past the deadline stops between chunks, and either way the caller gets
:class:`~svcclient.DeadlineExceeded` (an ``httpx.TimeoutException``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from .._pipeline.call import Call
from .bound import BOUND

__all__ = ["AsyncBoundedBody", "BoundedBody"]


class BoundedBody(httpx.SyncByteStream):
    """``stream`` read no later than ``call``'s deadline."""

    __slots__ = ("_call", "_stream")

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, call: Call) -> None:
        assert isinstance(stream, httpx.SyncByteStream)
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        deadline = call.deadline
        chunks = iter(self._stream)
        while True:
            if deadline.remaining() <= 0:
                raise call.deadline_error()
            token = BOUND.set(deadline)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except httpx.TimeoutException as exc:
                if deadline.remaining() <= 0:
                    raise call.deadline_error(exc) from exc
                raise
            finally:
                BOUND.reset(token)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class AsyncBoundedBody(httpx.AsyncByteStream):
    """The async twin of :class:`BoundedBody`."""

    __slots__ = ("_call", "_stream")

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, call: Call) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self._call
        deadline = call.deadline
        chunks = aiter(self._stream)
        while True:
            if deadline.remaining() <= 0:
                raise call.deadline_error()
            token = BOUND.set(deadline)
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except httpx.TimeoutException as exc:
                if deadline.remaining() <= 0:
                    raise call.deadline_error(exc) from exc
                raise
            finally:
                BOUND.reset(token)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()
