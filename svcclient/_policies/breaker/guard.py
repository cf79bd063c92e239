"""Running a callable through a circuit breaker: admission, timing, timeout, fallback.

The breaker's own ``__call__`` handles the common case inline (closed, sync, fast, no
error). Everything else lands here: async calls, rejections, errors, calls that ran past
the timeout or the slow-call limit, executor-bounded sync calls and the disabled state.
These functions only *perform* the breaker's decisions (``allow``/``record_*``/
``release``); the rules live in ``_breaker``.

Sync timeouts. Python cannot stop a running thread, so a sync function is never
abandoned mid-call in the caller's thread: without an executor the call runs to its end
and is then judged against ``timeout`` (late results are discarded and counted as
failures). With ``executor=`` the caller waits at most ``timeout``; the worker finishes
in the background inside the executor's fixed pool, so no thread is ever created here.
"""

from __future__ import annotations

import inspect
import logging
from concurrent.futures import wait
from typing import TYPE_CHECKING, Any

from ..._exceptions import CallTimeoutError

if TYPE_CHECKING:
    from .machine import CircuitBreaker

__all__ = ["call_async", "call_sync", "fallback_sync", "sync_error", "sync_late"]

log = logging.getLogger("svcclient")

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


# -- sync ---------------------------------------------------------------------------------


def call_sync(b: CircuitBreaker, args: Args, kwargs: Kwargs) -> Any:
    """The general sync path: admission, the call, then its verdict."""
    func = b._func
    assert func is not None
    if b._state == "disabled":
        return func(*args, **kwargs)
    if not b.allow():
        return _reject_sync(b, args, kwargs)
    clock = b._clock
    start = clock()
    timeout = b.policy.timeout
    if b._executor is not None and timeout is not None:
        return _call_in_executor(b, args, kwargs, start, timeout)
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        return sync_error(b, exc, clock() - start, args, kwargs)
    return sync_late(b, result, clock() - start, args, kwargs)


def sync_late(b: CircuitBreaker, result: Any, duration: float, args: Args, kwargs: Kwargs) -> Any:
    """A sync call returned; past ``timeout`` it is a timeout, else a (maybe slow) success."""
    timeout = b.policy.timeout
    if timeout is not None and duration > timeout:
        return _timed_out_sync(b, duration, args, kwargs, None)
    b.record_success(duration)
    return result


def sync_error(
    b: CircuitBreaker, exc: BaseException, duration: float, args: Args, kwargs: Kwargs
) -> Any:
    """A sync call raised ``exc`` after ``duration`` seconds."""
    if not isinstance(exc, Exception):
        b.release()  # KeyboardInterrupt, SystemExit, ...: no verdict on the dependency
        raise exc
    timeout = b.policy.timeout
    if timeout is not None and duration > timeout:
        return _timed_out_sync(b, duration, args, kwargs, exc)
    if not _counts(b, exc):
        b.record_success(duration)
        raise exc
    b.record_failure(duration, exc)
    if b._fallback is None:
        raise exc
    return fallback_sync(b, args, kwargs, exc)


def _call_in_executor(
    b: CircuitBreaker, args: Args, kwargs: Kwargs, start: float, timeout: float
) -> Any:
    executor = b._executor
    assert executor is not None and b._func is not None
    try:
        future = executor.submit(b._func, *args, **kwargs)
        done, _ = wait((future,), timeout)
    except BaseException:
        b.release()  # executor shut down, or the caller was interrupted while waiting
        raise
    clock = b._clock
    if not done:
        # The worker keeps running until the function returns (threads cannot be killed);
        # cancel() only helps if it had not started yet. Its late outcome is ignored.
        future.cancel()
        return _timed_out_sync(b, clock() - start, args, kwargs, None)
    try:
        result = future.result()
    except BaseException as exc:
        return sync_error(b, exc, clock() - start, args, kwargs)
    return sync_late(b, result, clock() - start, args, kwargs)


def _timed_out_sync(
    b: CircuitBreaker, duration: float, args: Args, kwargs: Kwargs, exc: BaseException | None
) -> Any:
    timeout = b.policy.timeout
    assert timeout is not None
    error = CallTimeoutError(b.name, timeout)
    b.record_failure(duration, error, timed_out=True)
    if b._fallback is None:
        raise error from exc
    return fallback_sync(b, args, kwargs, error)


def _reject_sync(b: CircuitBreaker, args: Args, kwargs: Kwargs) -> Any:
    error = b._reject_error()
    if b._fallback is None:
        raise error
    return fallback_sync(b, args, kwargs, error)


def fallback_sync(b: CircuitBreaker, args: Args, kwargs: Kwargs, cause: BaseException) -> Any:
    """Answer the call from the fallback, handing it ``cause``; emits ``fallback``."""
    fallback = b._fallback
    assert fallback is not None
    result = fallback(*args, cause=cause, **kwargs)
    if "fallback" in b._handlers:
        b._emit("fallback", result, cause)
    return result


# -- async --------------------------------------------------------------------------------


async def call_async(b: CircuitBreaker, args: Args, kwargs: Kwargs) -> Any:
    """The async path: admission, the call under a cancel scope, then its verdict."""
    func = b._func
    assert func is not None
    if b._state == "disabled":
        return await func(*args, **kwargs)
    if not b.allow():
        error = b._reject_error()
        if b._fallback is None:
            raise error
        return await _fallback_async(b, args, kwargs, error)
    clock = b._clock
    timeout = b.policy.timeout
    start = clock()
    cancelled = False
    try:
        if timeout is None:
            result = await func(*args, **kwargs)
        else:
            # anyio (already an httpx dependency) so trio works as well as asyncio.
            import anyio

            with anyio.move_on_after(timeout) as scope:
                result = await func(*args, **kwargs)
            cancelled = scope.cancelled_caught
    except BaseException as exc:
        duration = clock() - start
        if not isinstance(exc, Exception):
            b.release()  # we were cancelled from outside: no verdict on the dependency
            raise
        if timeout is not None and duration > timeout:
            return await _timed_out_async(b, duration, args, kwargs, exc)
        if not _counts(b, exc):
            b.record_success(duration)
            raise
        b.record_failure(duration, exc)
        if b._fallback is None:
            raise
        return await _fallback_async(b, args, kwargs, exc)
    duration = clock() - start
    # Judged by the breaker's clock too, so a fake clock can drive timeouts in tests.
    if cancelled or (timeout is not None and duration > timeout):
        return await _timed_out_async(b, duration, args, kwargs, None)
    b.record_success(duration)
    return result


async def _timed_out_async(
    b: CircuitBreaker, duration: float, args: Args, kwargs: Kwargs, exc: BaseException | None
) -> Any:
    timeout = b.policy.timeout
    assert timeout is not None
    error = CallTimeoutError(b.name, timeout)
    b.record_failure(duration, error, timed_out=True)
    if b._fallback is None:
        raise error from exc
    return await _fallback_async(b, args, kwargs, error)


async def _fallback_async(
    b: CircuitBreaker, args: Args, kwargs: Kwargs, cause: BaseException
) -> Any:
    fallback = b._fallback
    assert fallback is not None
    result = fallback(*args, cause=cause, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    if "fallback" in b._handlers:
        b._emit("fallback", result, cause)
    return result


# -- shared -------------------------------------------------------------------------------


def _counts(b: CircuitBreaker, exc: BaseException) -> bool:
    """Does ``exc`` count as a failure? A predicate that raises is logged; then it does."""
    try:
        return bool(b._is_failure(exc))
    except Exception:
        log.exception("circuit breaker %r: is_failure(%r) raised", b.name, exc)
        return True
