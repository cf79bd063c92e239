"""Response bodies that stream after the call returned, still bounded by its deadline.

The transport returns as soon as the headers are in; the caller reads the body later
(httpx's ``get()`` at once, ``stream()`` chunk by chunk, with flat memory either way).
These wrappers keep the deadline on that body, and the caller gets
:class:`~svcclient.DeadlineExceeded` (an ``httpx.TimeoutException``) when it runs out:

* svcclient's own pools: each chunk is read with the call's deadline as the socket
  bound (:data:`~svcclient._transports.bound.BOUND`), so no single read outlives it;
* a caller's async transport: each chunk is read under a timer of the time left;
* a caller's sync transport (no timer, no access to its sockets): the request's httpx
  ``timeout`` extension is lowered to the time left while a chunk is read (httpcore
  takes it when the body starts), so the first read ends by the deadline and a later
  one at most one read timeout after it;
* always, a body that keeps coming past the deadline stops between chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any, Final

import httpx

from .. import _loop_timer as _lt
from .._loop_timer import LoopTimer
from .._pipeline import extensions as _ext
from .._pipeline.call import Call
from .bound import BOUND

__all__ = ["AsyncBoundedBody", "BoundedBody"]


class BoundedBody(httpx.SyncByteStream):
    """``stream`` read no later than ``call``'s deadline.

    ``sent``: the extensions of the request a caller's transport was given (None for
    svcclient's own pools, which the bound caps directly).
    """

    __slots__ = ("_call", "_sent", "_stream")

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        call: Call,
        sent: MutableMapping[str, Any] | None = None,
    ) -> None:
        assert isinstance(stream, httpx.SyncByteStream)
        self._stream = stream
        self._call = call
        self._sent = sent

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        deadline = call.deadline
        sent = self._sent
        chunks = iter(self._stream)
        while True:
            left = deadline.remaining()
            if left <= 0:
                raise call.deadline_error()
            token = BOUND.set(deadline)
            saved = _ABSENT if sent is None else _lower_timeouts(sent, left)
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
                if sent is not None:
                    if saved is _ABSENT:
                        sent.pop(_ext.TIMEOUT, None)
                    else:
                        sent[_ext.TIMEOUT] = saved
            yield chunk

    def close(self) -> None:
        self._stream.close()


class AsyncBoundedBody(httpx.AsyncByteStream):
    """The async twin of :class:`BoundedBody`; ``theirs``: a caller's transport (or the
    aiohttp wire), held by a timer: on asyncio the driver's :class:`LoopTimer`
    (``timer``, for its loop), else (trio, or another loop) an anyio cancel scope."""

    __slots__ = ("_call", "_stream", "_theirs", "_timer")

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        call: Call,
        theirs: bool = False,
        timer: LoopTimer | None = None,
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._call = call
        self._theirs = theirs
        self._timer = timer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        timer = self._timer
        if self._theirs:  # once per body, a caller's transport only; not with svcclient
            if timer is not None and _lt.running_loop() is not timer.loop:
                timer = None  # read on another loop than the attempt's
            import anyio
        call = self._call
        deadline = call.deadline
        chunks = aiter(self._stream)
        while True:
            left = deadline.remaining()
            if left <= 0:
                raise call.deadline_error()
            token = BOUND.set(deadline)
            try:
                if not self._theirs:
                    chunk = await anext(chunks)
                elif timer is not None and (task := _lt.current_task(timer.loop)) is not None:
                    chunk = await _lt.within(timer, task, anext(chunks), left)
                else:
                    with anyio.fail_after(left):
                        chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:  # our timer: the deadline passed mid-read
                raise call.deadline_error(exc) from exc
            except httpx.TimeoutException as exc:
                if deadline.remaining() <= 0:
                    raise call.deadline_error(exc) from exc
                raise
            finally:
                BOUND.reset(token)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


_ABSENT: Final = object()


def _lower_timeouts(ext: MutableMapping[str, Any], left: float) -> Any:
    """Set ``ext``'s httpx timeouts to at most ``left`` seconds; return what was there
    (``_ABSENT`` when nothing)."""
    saved = ext.get(_ext.TIMEOUT, _ABSENT)
    current = saved if isinstance(saved, dict) else {}
    lowered = {}
    for key in _ext.TIMEOUT_KEYS:
        value = current.get(key)
        lowered[key] = left if value is None or value > left else value
    ext[_ext.TIMEOUT] = lowered
    return saved
