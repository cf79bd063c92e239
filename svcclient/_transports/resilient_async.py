"""``AsyncResilientTransport``: the pipeline behind httpx's async transport seam.

The same :class:`~svcclient._pipeline.call.Call` decides; this driver awaits, on any
async library anyio supports (asyncio, trio). Hedging's decisions come from
:class:`~svcclient._pipeline.hedging.Race`; this driver only runs the racers.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx

from .. import _loop_timer as _lt
from .._config.model import ServiceConfig
from .._endpoint import Endpoint
from .._exceptions import BulkheadFullError
from .._loop_timer import LoopTimer
from .._observability.hooks import Hooks, enter_attempt, leave_attempt
from .._pipeline import testmode as _testmode
from .._pipeline.actions import AwaitResolution, AwaitSlot, Fallback, Resolve, Sleep
from .._pipeline.call import Action, Attempt, Call, Passthrough
from .._pipeline.hedging import Race
from .._policies.bulkhead import AsyncBulkhead
from .base import DriverBase
from .bodies import AsyncBoundedBody
from .bound import BOUND
from .forksafe import discard_async
from .forksafe import register as _fork_aware
from .health import AsyncHealthChecker
from .memory_body import InMemoryBody

if TYPE_CHECKING:
    from anyio.abc import ObjectSendStream
    from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = ["AsyncResilientTransport"]

_POLL = 0.005  # how often a call waiting for another's first DNS answer looks (seconds)

_Result = tuple[Attempt, httpx.Response | BaseException]


class AsyncResilientTransport(DriverBase[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport`, with optional hedging.

    Runs on asyncio and trio. ``sleep`` defaults to ``anyio.sleep``.

    >>> client = httpx.AsyncClient(transport=AsyncResilientTransport("user-service"))
    """

    def __init__(
        self,
        config: ServiceConfig | str,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        hooks: Sequence[Hooks] | None = None,
        registry: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **overrides: Any,
    ) -> None:
        self._setup(
            config, transport, hooks=hooks, registry=registry, clock=clock, overrides=overrides
        )
        self._sleep = _testmode.guard_async_sleep(sleep)
        cfg = self.config
        # An adaptive concurrency limit (ServiceRuntime.limiter) replaces the bulkhead.
        if cfg.bulkhead is not None and cfg.concurrency is None:
            self.runtime.bulkhead = AsyncBulkhead(cfg.bulkhead, cfg.name)
        self._foreign: httpx.AsyncBaseTransport | None = None
        # Health checks need a running event loop: started on the first request (again
        # in a forked child).
        self._health_due = self._wants_health
        _fork_aware(self)
        # Transports that cannot see the socket bound (a caller's, the aiohttp wire) are
        # held to the deadline by a timer instead.
        self._timed = transport is not None or cfg.wire == "aiohttp"
        self._timer: LoopTimer | None = None  # the timed attempts' timer, on the last loop
        if cfg.wire == "aiohttp" and transport is None:
            # aiohttp's import (a few hundred ms) here, not in the first call's attempt.
            from . import aiohttp_wire  # noqa: F401

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the pipeline (see :class:`ResilientTransport`)."""
        if not self._serves(request):
            return await self._passthrough(request)
        if self._health_due:
            self._restart_health()
        call = Call(self.runtime, request, races=True)  # checks the extensions; takes nothing
        try:
            stream = request.stream
            if stream.__class__ is httpx.ByteStream and stream._stream:
                _replayable(request)  # once per call: every attempt sees an InMemoryBody
            action: Action | None = call.next()
            while True:
                match action:
                    case Attempt():
                        action = await self._exchange(call, action)
                    case httpx.Response():
                        return action
                    case Fallback():
                        answer = action.run()
                        if inspect.isawaitable(answer):
                            answer = await answer
                        return cast("httpx.Response", answer)
                    case BaseException():
                        try:
                            raise action
                        finally:
                            # The frame must not hold the error its traceback holds the
                            # frame of: a reference cycle per refused or failed call.
                            del action
                    case _:
                        action = await self._wait(call, action)
        except BaseException as exc:
            call.cancel(exc)  # nothing to do for a call that has its verdict
            raise
        finally:
            call.close()

    async def _wait(self, call: Call, action: Action | None) -> Action | None:
        """Perform an action that waits (a hedging race, backoff, DNS, another's lookup,
        a bulkhead slot); the call's next action."""
        match action:
            case Race():
                return call.raced(*await self._race(call, action))
            case Sleep(seconds=seconds, discard=discard):
                if discard is not None:
                    await discard.aclose()
                await self._sleep(seconds)
            case Resolve(host=host, port=port, timeout=timeout):
                resolver = self.runtime.resolver
                assert resolver is not None
                try:
                    resolution = await resolver.aresolve(host, port, timeout)
                except Exception as exc:
                    return call.resolved(None, exc)
                return call.resolved(resolution)
            case AwaitResolution(event=event, timeout=timeout):
                await _wait_for(event, timeout, call.clock)
            case AwaitSlot(bulkhead=bulkhead, timeout=timeout):
                try:
                    await bulkhead.acquire(timeout)
                except BulkheadFullError as exc:
                    return call.refused(exc)
            case _:
                raise TypeError(f"{self.runtime.name}: no such action: {action!r}")
        return call.next()

    async def _exchange(self, call: Call, attempt: Attempt) -> Action | None:
        """Send one attempt and report how it went: the call's next action."""
        try:
            response = await self._send(attempt, call)
        except httpx.TransportError as exc:
            return call.failed(attempt, exc)
        return call.responded(attempt, response)

    async def _race(self, call: Call, race: Race) -> tuple[Attempt, httpx.Response | Exception]:
        """Run the race's attempts as it decides; its outcome (the losers cancelled)."""
        send, receive = anyio.create_memory_object_stream[_Result](math.inf)
        outcome: tuple[Attempt, httpx.Response | Exception] | None = None
        with send, receive:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._racer, race.first, call, send)
                    while outcome is None:
                        got = await _next_result(receive, race.wait())
                        if got is None:
                            extra = race.quiet()
                            if extra is not None:
                                tg.start_soon(self._racer, extra, call, send)
                            continue
                        attempt, result = got
                        outcome = race.finished(attempt, result)
                        if outcome is None and isinstance(result, httpx.Response):
                            await result.aclose()  # a failure status, booked by the race
                    tg.cancel_scope.cancel()  # the losers
            finally:
                for loser in race.racing:
                    call.abandon(loser)
                while True:  # a loser that finished before it was cancelled
                    try:
                        _, late = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(late, httpx.Response):
                        await late.aclose()
        assert outcome is not None
        return outcome

    async def _racer(self, attempt: Attempt, call: Call, send: ObjectSendStream[_Result]) -> None:
        try:
            result: httpx.Response | BaseException = await self._send(attempt, call)
        except Exception as exc:
            result = exc
        await send.send((attempt, result))

    async def _send(self, attempt: Attempt, call: Call) -> httpx.Response:
        """One attempt's exchange: the response, its body read or bounded."""
        if self.runtime.retired or self._pools.retiring:
            for pool in self._retiring():
                await pool.aclose()
        transport, request = self._target(attempt.endpoint, call.request)
        # Observers' attempt context (the attempt's span current) around the send, in the
        # task that sends (a hedge races in a task of its own).
        undo = enter_attempt(attempt.enter) if attempt.enter is not None else None
        try:
            if not self._timed:
                token = BOUND.set(attempt)  # svcclient's pools cap every socket operation
                try:
                    return await _exchange(transport, request, call, False)
                finally:
                    BOUND.reset(token)
            # A caller's transport or aiohttp cannot see the bound: a timer holds it. On
            # asyncio the driver's LoopTimer (a dict entry per attempt, not a cancel scope);
            # elsewhere (trio) an anyio cancel scope.
            timeout = attempt.remaining()
            loop = _lt.running_loop()
            task = _lt.current_task(loop) if loop is not None else None
            if task is None:
                return await _scoped_exchange(transport, request, call, timeout)
            assert loop is not None
            timer = self._timer
            if timer is None or timer.loop is not loop:
                timer = self._timer = LoopTimer(loop)
            # The call's clock, when it is the loop's, gives the deadline as it is.
            at = attempt.at if attempt.clock is timer.shared_clock else timer.now() + timeout
            key, entry = timer.add(task, at)
            try:
                response = await _exchange(transport, request, call, True, timer)
            except BaseException as exc:
                if timer.remove(key, entry, exc):
                    raise _attempt_timeout(timeout, request) from exc
                raise
            # A response the transport returned although the timer fired (it swallowed the
            # cancellation) stands, as with asyncio.timeout.
            timer.remove(key, entry, None)
            return response
        finally:
            if undo is not None:
                leave_attempt(undo)

    async def _passthrough(self, request: httpx.Request) -> httpx.Response:
        observed = Passthrough(self.runtime, request)
        transport = self._inner
        if transport is None:
            transport = self._foreign
            if transport is None:
                from .pinned import AsyncPinnedTransport  # httpcore: imported when first needed

                transport = self._foreign = AsyncPinnedTransport(None, self._options)
        undo = enter_attempt(observed.enter)
        try:
            response = await transport.handle_async_request(request)
        except BaseException as exc:
            if undo is not None:
                leave_attempt(undo)
            observed.done(None, exc)
            raise
        if undo is not None:
            leave_attempt(undo)
        observed.done(response)
        return response

    def _new_health(self) -> AsyncHealthChecker:
        return AsyncHealthChecker(self.runtime, self._probe)

    async def _probe(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        transport, request = self._target(endpoint, request)
        return await _read_body(await transport.handle_async_request(request))

    def _new_pool(self, endpoint: Endpoint) -> httpx.AsyncBaseTransport:
        if self.config.wire == "aiohttp":
            from .aiohttp_wire import AiohttpTransport

            pinned = None if endpoint == self.runtime.origin else endpoint
            opts = self._options
            return AiohttpTransport(pinned, verify=opts["verify"], limits=opts["limits"])
        from .pinned import AsyncPinnedTransport  # httpcore: imported with the first pool

        age = self.config.max_connection_age
        return AsyncPinnedTransport(endpoint, self._options, max_age=age, clock=self.runtime.clock)

    async def aclose(self) -> None:
        """Stop health checks and close every pool: svcclient's own and, when one was
        given, the caller's transport (closing the client closes what it was built on)."""
        await self._close_own()
        if self._inner is not None:
            await self._inner.aclose()

    async def _close_own(self) -> None:
        if self._health is not None:
            await self._health.aclose()
        for pool in self._pools.drain():
            await pool.aclose()
        if self._foreign is not None:
            await self._foreign.aclose()

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`.forksafe`, which has already pointed the child's
        copies of the pooled sockets at /dev/null): the parent's pools and health checker
        belong to its event loop; they are kept, unused, and new ones are built on first
        use, on the child's own loop."""
        discard_async(*self._pools.drain(), self._foreign, self._health)
        self._foreign = None
        self._timer = None  # the parent's tasks' entries, on the parent's loop
        self._health = None
        self._health_due = self._wants_health
        if self.runtime.endpoint_set is not None:
            self.runtime.endpoint_set.abort_refresh()  # a parent task's turn, never ending

    async def __aenter__(self) -> AsyncResilientTransport:
        if self._inner is not None:
            await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._close_own()
        if self._inner is not None:
            await self._inner.__aexit__(exc_type, exc_value, traceback)


async def _next_result(
    receive: MemoryObjectReceiveStream[_Result], wait: float | None
) -> _Result | None:
    """The next racer's result, or None when none came within ``wait`` seconds."""
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        if wait is not None and wait <= 0:
            return None
    if wait is None:
        return await receive.receive()
    with anyio.move_on_after(wait):
        return await receive.receive()
    return None


async def _exchange(
    transport: httpx.AsyncBaseTransport,
    request: httpx.Request,
    call: Call,
    timed: bool,
    timer: LoopTimer | None = None,
) -> httpx.Response:
    """Send ``request``; its body read now (``call.buffer``) or bounded as it streams.

    ``timed``: the transport cannot see the socket bound (a caller's, aiohttp): the body's
    chunks are held to the deadline by ``timer`` (asyncio) or a cancel scope each."""
    response = await transport.handle_async_request(request)
    if _unread(response):
        if call.buffer:
            return await _read_body(response)
        response.stream = AsyncBoundedBody(response.stream, call, timed, timer)
    return response


async def _scoped_exchange(
    transport: httpx.AsyncBaseTransport, request: httpx.Request, call: Call, timeout: float
) -> httpx.Response:
    """A caller's transport's exchange under an anyio cancel scope (off asyncio: trio)."""
    try:
        with anyio.fail_after(timeout):
            return await _exchange(transport, request, call, True)
    except TimeoutError as exc:
        raise _attempt_timeout(timeout, request) from exc


async def _wait_for(event: threading.Event, timeout: float, clock: Callable[[], float]) -> None:
    """Wait for ``event`` (set by another thread or task), at most ``timeout`` seconds on the
    call's ``clock``, looking every 5 ms (a bounded number of times, whatever the clock)."""
    give_up = clock() + timeout
    for _ in range(math.ceil(timeout / _POLL) + 1):
        if event.is_set() or clock() >= give_up:
            return
        await anyio.sleep(_POLL)


def _attempt_timeout(timeout: float, request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(f"attempt exceeded {timeout:.3f}s in total", request=request)


def _replayable(request: httpx.Request) -> None:
    """Give a request with an in-memory body an :class:`InMemoryBody` (same bytes, same type:
    an attempt whose write fails leaves no suspended generator behind)."""
    try:
        content = request.content
    except httpx.RequestNotRead:  # a redirect's copy shares the stream, unread
        content = request.read()
    if content:
        request.stream = InMemoryBody(content)


def _unread(response: httpx.Response) -> bool:
    """A body still to read (not in memory already, not a 101 Upgrade's raw socket)."""
    return not isinstance(response.stream, httpx.ByteStream) and response.status_code != 101


async def _read_body(response: httpx.Response) -> httpx.Response:
    """Read the body inside the attempt, in place (see the sync driver's twin)."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    try:
        raw = b"".join([part async for part in stream])
    finally:
        await stream.aclose()  # the connection goes back to the pool
    response.stream = InMemoryBody(raw)
    return response
