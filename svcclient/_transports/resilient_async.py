"""``AsyncResilientTransport``: the pipeline behind httpx's async transport seam.

The same :class:`~svcclient._pipeline.call.Call` decides; this driver awaits, on any
async library anyio supports (asyncio, trio). Hedging's decisions come from
:class:`~svcclient._pipeline.hedging.Race`; this driver only runs the racers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .. import _loop_timer as _lt
from .._config.model import ServiceConfig
from .._endpoint import Endpoint
from .._exceptions import BulkheadFullError
from .._loop_timer import LoopTimer, took_back
from .._observability.hooks import Hooks, enter_attempt, leave_attempt
from .._pipeline import testmode as _testmode
from .._pipeline.call import Attempt, Call, Passthrough
from .._pipeline.extensions import TIMEOUT
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

_new = object.__new__
_init = Call.__init__

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
        static = cfg.bulkhead if cfg.concurrency is None else None
        self._bulkhead = AsyncBulkhead(static, cfg.name) if static is not None else None
        self._foreign: httpx.AsyncBaseTransport | None = None
        # Health checks need a running event loop: started on the first request (again
        # in a forked child).
        self._health: AsyncHealthChecker | None = None
        self._wants_health = bool(cfg.outlier.enabled and cfg.outlier.health_check_path)
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
        ref = request.url._uri_reference  # self._for_service(request), inlined
        if (ref.scheme, ref.host, ref.port) not in self._service_origins:
            return await self._passthrough(request)
        rt = self.runtime
        if rt.throttle is not None and (refused := rt.throttled(request)) is not None:
            return refused  # first: a local rejection does no other work
        # Call(rt, request), as object.__new__ and an __init__ the interpreter runs in its
        # own frame loop: CPython 3.11 makes a class call go through type.__call__ and a
        # fresh C-level frame (about 800 instructions more per request).
        call = _new(Call)
        _init(call, rt, request)  # checks the extensions; nothing is taken yet
        if self._health_due:
            self._health_due = False
            self._health = AsyncHealthChecker(rt, self._probe)
        if rt.endpoint_set is not None:
            if rt.refresh_due():
                await self._refresh(call)
            elif not rt.first_resolution.is_set():
                await self._first_resolution(call)
        if rt.retired or self._pools.retiring:  # _retiring()'s test, without its call
            for pool in self._retiring():
                await pool.aclose()
        if rt.limiter is not None:
            refused = rt.admit(request)  # holds a limiter slot when it returns None
            if refused is not None:
                return refused
        bulkhead = self._bulkhead
        if bulkhead is not None and not bulkhead.try_acquire():
            try:
                await bulkhead.acquire(call.deadline.remaining())
            except BulkheadFullError as exc:
                return rt.bulkhead_rejected(request, exc)
        try:
            stream = request.stream
            # Checked inline: a body-less request (nearly every GET) costs no call here.
            if stream.__class__ is httpx.ByteStream and stream._stream:
                _replayable(request)  # once per call: every attempt sees an InMemoryBody
            if self.config.hedge is not None:
                return await self._run_hedged(call)
            # The retry loop, here rather than in a coroutine of its own (a frame less per
            # call); a first attempt that succeeds leaves it at once.
            while True:
                try:
                    attempt = call.begin_attempt()
                except httpx.TransportError as exc:
                    return call.fail(exc)
                try:
                    response = await self._send(attempt, call)
                except httpx.TransportError as exc:
                    try:
                        delay = call.attempt_failed(attempt, exc)
                    except httpx.TransportError as final:
                        return call.fail(final)
                else:
                    # call.attempt_done(), as its two steps: a success is one call fewer
                    # (and its books are closed as it is recorded: no finish() to call).
                    if not call.record_response(attempt, response):
                        return response
                    retry_in = call.retry_status(response)
                    if retry_in is None:
                        return call.finish(response)
                    delay = retry_in
                    await response.aclose()
                await self._sleep(delay)
        except BaseException as exc:
            call.cancel(exc)  # no-op for whatever the call already settled
            raise
        finally:
            # call.restore(), inlined: the caller's timeout extension back (attempts
            # overwrite it), so a redirect or a reused request starts from its own.
            caller_timeouts = call.caller_timeouts
            if caller_timeouts is None:
                request.extensions.pop(TIMEOUT, None)
            else:
                request.extensions[TIMEOUT] = caller_timeouts
            if bulkhead is not None:
                bulkhead.release()
            if rt.limiter is not None:
                rt.limiter.release()

    async def _run_hedged(self, call: Call) -> httpx.Response:
        """Race attempts as :class:`Race` decides; this only launches, waits and cancels."""
        policy, latencies = self.config.hedge, self.runtime.latencies
        assert policy is not None and latencies is not None
        while True:
            race = Race(call, policy, latencies)
            try:
                first = race.first()
            except httpx.TransportError as exc:
                return call.fail(exc)
            outcome = await self._race(race, first)
            attempt, result = outcome
            if isinstance(result, httpx.Response):
                retry_in = call.attempt_done(attempt, result)
                if retry_in is None:
                    return call.finish(result)
                delay = retry_in
                await result.aclose()
            elif isinstance(result, httpx.TransportError):
                try:
                    delay = call.attempt_failed(attempt, result)
                except httpx.TransportError as final:
                    return call.fail(final)
            else:
                call.abandon(attempt)
                raise result
            await self._sleep(delay)

    async def _race(self, race: Race, first: Attempt) -> tuple[Attempt, httpx.Response | Exception]:
        call = race.call
        send, receive = anyio.create_memory_object_stream[_Result](math.inf)
        outcome: tuple[Attempt, httpx.Response | Exception] | None = None
        with send, receive:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._racer, first, call, send)
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
        # self._target(), inlined for its two common cases.
        transport: httpx.AsyncBaseTransport | None = self._fixed
        if transport is not None:
            request = call.request
        elif self._inner is None:
            transport = self._pools.get(attempt.endpoint)
            request = call.request
        else:
            transport, request = self._target(attempt.endpoint, call.request)
        # Observers' attempt context (the attempt's span current) around the send, in the
        # task that sends (a hedge races in a task of its own).
        undo = enter_attempt(attempt) if attempt.enter is not None else None
        try:
            if not self._timed:
                token = BOUND.set(attempt)  # svcclient's pools cap every socket operation
                try:
                    response = await transport.handle_async_request(request)
                    if response.status_code != 101 and not isinstance(
                        response.stream, httpx.ByteStream
                    ):  # _unread(response), inlined
                        if call.buffer:
                            return await _read_body(response)
                        response.stream = AsyncBoundedBody(response.stream, call, False)
                    return response
                finally:
                    BOUND.reset(token)
            # A caller's transport or aiohttp cannot see the bound: a timer holds it. On
            # asyncio the driver's shared LoopTimer (inlined: a dict insert and delete, not
            # a cancel scope per attempt); elsewhere (trio) an anyio cancel scope.
            timeout = attempt.at - attempt.clock()  # attempt.remaining(), inlined
            loop = _lt.running_loop()
            task = _lt.current_task(loop) if loop is not None else None
            if task is None:
                return await _scoped_exchange(transport, request, call, timeout)
            timer = self._timer
            if timer is None or timer.loop is not loop:
                assert loop is not None
                timer = self._timer = LoopTimer(loop)
            if attempt.clock is timer.shared_clock:
                at = attempt.at  # the call's clock is the loop's: no conversion
            else:
                loop_time = timer.now  # read, then called (see LoopTimer): a lookup less
                at = loop_time() + timeout
            entry = (task, at, task.cancelling())
            calls = timer.calls
            key = timer.last = timer.last + 1
            calls[key] = entry
            if at < timer.when:
                timer.arm(at)
            try:
                response = await transport.handle_async_request(request)
                if response.status_code != 101 and not isinstance(
                    response.stream, httpx.ByteStream
                ):  # _unread(response), inlined
                    if call.buffer:
                        response = await _read_body(response)
                    else:
                        # The body is read after the attempt: a timer per chunk holds it.
                        response.stream = AsyncBoundedBody(response.stream, call, True, timer)
            except BaseException as exc:
                try:
                    del calls[key]
                except KeyError:  # the timer fired (and popped it)
                    if took_back(entry, exc):
                        raise _attempt_timeout(timeout, request) from exc
                raise
            try:
                del calls[key]
            except KeyError:
                took_back(entry, None)  # the transport swallowed our cancellation
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
        undo = enter_attempt(observed.attempt)
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

    async def _first_resolution(self, call: Call) -> None:
        # Another task (or thread) holds the first refresh: wait for it, bounded.
        rt = self.runtime
        give_up = time.monotonic() + min(self.config.dns_timeout, call.deadline.remaining())
        while not rt.first_resolution.is_set() and time.monotonic() < give_up:
            await anyio.sleep(0.005)

    async def _refresh(self, call: Call) -> None:
        rt = self.runtime
        assert rt.resolver is not None and rt.endpoint_set is not None
        try:
            resolution = await rt.resolver.aresolve(
                rt.origin.host, rt.origin.port, call.deadline.remaining()
            )
        except Exception as exc:
            rt.refresh_failed(exc)
        except BaseException:  # cancelled: give the refresh turn back
            rt.endpoint_set.abort_refresh()
            raise
        else:
            rt.refreshed(resolution)

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


async def _scoped_exchange(
    transport: httpx.AsyncBaseTransport, request: httpx.Request, call: Call, timeout: float
) -> httpx.Response:
    """A caller's transport's exchange under an anyio cancel scope (off asyncio: trio)."""
    try:
        with anyio.fail_after(timeout):
            response = await transport.handle_async_request(request)
            if _unread(response):
                if call.buffer:
                    return await _read_body(response)
                response.stream = AsyncBoundedBody(response.stream, call, True)
            return response
    except TimeoutError as exc:
        raise _attempt_timeout(timeout, request) from exc


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
