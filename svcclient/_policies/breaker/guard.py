"""``CircuitBreaker``: the breaker around a callable (sync or async), as a wrapper or decorator.

The rules live in ``machine.py``; this module only *performs* its decisions through the
machine's interface (``admit``/``record_*``/``release``/``rejection``/``emit``), times the
call on the breaker's clock, enforces the call timeout and answers from the fallback.

Fallbacks. The fallback's signature is read once, when it meets the function (at
``fallback()`` or when the function is bound), and fixes how it is called:

* a parameter named ``cause`` - ``fb(*args, cause=exc, **kwargs)``;
* no parameters - ``fb()`` (the seed's ``breaker.fallback(lambda: {...})``);
* as many required positional parameters as the function has positional ones (or
  fewer) - ``fb(*args, **kwargs)``;
* one required positional more than the function, or ``*args`` -
  ``fb(*args, exc, **kwargs)`` (opossum's order: the call's arguments, then the error).

Sync timeouts. Python cannot stop a running thread, so a sync function is never
abandoned mid-call in the caller's thread: without an executor the call runs to its end
and is then judged against ``timeout`` (late results are discarded and counted as
failures). With ``executor=`` the caller waits at most ``timeout``; the worker finishes
in the background inside the executor's fixed pool, so no thread is ever created here.

Async timeouts. Under asyncio a call registers with one shared deadline timer per breaker
and event loop (:class:`~svcclient._loop_timer.LoopTimer`; calls of one breaker share one
timeout, so their deadlines come in start order and the timer seldom re-arms): a closed
call costs a dict insert and delete, not a cancel scope. An overdue call's task is
cancelled and the cancellation turned into ``CallTimeoutError``, the way
``asyncio.timeout`` does it (``Task.uncancel``). Other event loops (trio) get an anyio
cancel scope. Without a ``timeout`` no timer or scope is involved at all.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any, Final

from ... import _loop_timer as _lt
from ..._exceptions import CallTimeoutError
from ..._loop_timer import LoopTimer
from .machine import DISABLED, OPEN, BreakerMachine
from .policy import POLICY_FIELDS, BreakerPolicy

if TYPE_CHECKING:
    from concurrent.futures import Executor

__all__ = ["CircuitBreaker"]

log = logging.getLogger("svcclient")

Args = tuple[Any, ...]
Kwargs = dict[str, Any]

_INF: Final = float("inf")

# How a fallback is called (decided once from its signature; see the module docstring).
_FB_NONE: Final = 0
_FB_ARGS: Final = 1
_FB_ARGS_CAUSE: Final = 2
_FB_CAUSE_KW: Final = 3

_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


class CircuitBreaker(BreakerMachine):
    """A circuit breaker around a callable, or driven step by step by the HTTP pipeline.

    Around a callable (sync or async), opossum style::

        breaker = CircuitBreaker(get_user, timeout=3.0, error_threshold_percentage=50,
                                 reset_timeout=30.0)
        breaker.fallback(lambda user_id, cause: {"id": user_id, "cached": True})
        user = breaker(42)            # or: await breaker(42) when get_user is async

        @CircuitBreaker(timeout=1.0)  # as a decorator, on def or async def
        async def get_stock(sku): ...

    Policy fields (see :class:`BreakerPolicy`) may be given as keywords or as ``policy=``
    (keywords then override the policy's fields). ``name`` defaults to the function's
    qualified name; ``clock`` is any monotonic ``() -> float`` (inject a fake in tests):
    call durations, the slow-call rule, the timeout verdict and the open interval are
    all measured on it.

    Failures: ``is_failure(exc)`` decides whether an exception counts (default: any
    ``Exception``); an exception that does not count is recorded as a success and still
    raised. ``BaseException``s that are not ``Exception`` (cancellation, KeyboardInterrupt)
    give no verdict: the call is released and the exception propagates.

    Fallback: ``fallback(fn)`` or ``fallback=fn``. It runs when the breaker rejects a
    call, when the call fails, or when it times out, and its result is returned. It may
    take nothing, the call's arguments, or those and the cause last, or the cause as the
    keyword ``cause`` (``CircuitOpenError``, ``CallTimeoutError`` or the failure); the
    signature is read once, at registration. It may be async when the function is.
    Without one, a rejection raises ``CircuitOpenError(name, retry_after)``.

    Timeouts: async calls are cancelled at ``timeout`` (None: never). A sync function
    cannot be interrupted: by default it runs in the caller's thread and, if it returned
    or raised after ``timeout``, its outcome is discarded, a failure is recorded and
    ``CallTimeoutError`` raised (no threads, nothing leaks). To bound the caller's wait
    too, pass ``executor=`` (e.g. a ``ThreadPoolExecutor(max_workers=4)`` you own): the
    call runs there and the caller gets ``CallTimeoutError`` at the deadline, while the
    worker finishes the call in the background and returns to the pool.

    Events (``on(event, handler)``, handlers that raise are logged and ignored):
    ``open``, ``close``, ``half_open``, ``reject`` get no arguments; ``success(duration)``,
    ``timeout(duration)``, ``failure(duration, cause)`` (cause may be None),
    ``fallback(result, cause)`` and ``state_change(old, new)``.

    Pipeline use (no I/O, never blocks): ``allow()`` before sending; then exactly one of
    ``record_success(duration)``, ``record_failure(duration)`` or ``release()``, with the
    duration measured on ``breaker.clock``.
    """

    __slots__ = (
        "__dict__",  # only for the wrapped function's __name__, __doc__, __wrapped__
        "_decorated",
        "_executor",
        "_fallback",
        "_fb_mode",
        "_func",
        "_is_async",
        "_is_failure",
        "_limit",
        "_named",
        "_sync_fast",
        "_timeout",
        "_watch",
    )

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] | None = None,
        fallback: Callable[..., Any] | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        executor: Executor | None = None,
        **policy_fields: Any,
    ) -> None:
        unknown = set(policy_fields) - POLICY_FIELDS
        if unknown:
            raise TypeError(
                f"CircuitBreaker got unknown option(s) {sorted(unknown)}; "
                f"policy fields are {sorted(POLICY_FIELDS)}"
            )
        if policy is None:
            policy = BreakerPolicy(**policy_fields)
        elif policy_fields:
            policy = dataclasses.replace(policy, **policy_fields)
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        super().__init__(
            name=name if name is not None else f"breaker-{id(self):x}", policy=policy, **kwargs
        )
        self._named = name is not None
        self._is_failure = is_failure if is_failure is not None else _is_exception
        self._executor = executor
        self._fallback = fallback
        self._fb_mode = _FB_CAUSE_KW
        self._func: Callable[..., Any] | None = None
        self._is_async = False
        self._sync_fast = False
        self._timeout = policy.timeout
        # A call that ends within this many seconds is a plain success (no timeout, not slow).
        self._limit = min(policy.timeout if policy.timeout is not None else _INF, policy.slow_limit)
        self._decorated = False
        self._watch: LoopTimer | None = None
        if fallback is not None:
            self._fb_mode = _fallback_mode(fallback, None)
        if func is not None:
            self._bind(func)

    # -- the callable wrapper --------------------------------------------------------------

    def fallback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Set the fallback (see the class doc for the accepted signatures); returns ``fn``."""
        if self._func is not None and not self._is_async and inspect.iscoroutinefunction(fn):
            raise TypeError(f"{self.name}: an async fallback needs an async function")
        self._fb_mode = _fallback_mode(fn, self._func)
        self._fallback = fn
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the guarded function through the breaker (``await`` it when async)."""
        if self._sync_fast:
            # Closed/half-open sync path, flat (a method call here costs as much as the
            # bookkeeping): admit, time the call, count a success, done.
            func: Callable[..., Any] = self._func  # type: ignore[assignment]  # bound: sync
            if not self.is_closed:
                state = self.admit()
                if state is OPEN:
                    return self._rejected_sync(args, kwargs)
                if state is DISABLED:
                    return func(*args, **kwargs)
            clock = self.clock
            start = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                return self._sync_error(exc, clock() - start, args, kwargs)
            now = clock()
            if now - start <= self._limit:
                self.record_success(now - start, now)
                return result
            return self._sync_late(result, now - start, args, kwargs)
        if self._func is None:
            if len(args) == 1 and not kwargs and callable(args[0]):
                self._bind(args[0])
                self._decorated = True
                return self
            raise TypeError(f"{self.name}: no function to call; use the breaker as a decorator")
        if self._is_async:  # bound before the class switch below (not expected)
            return self._acall(*args, **kwargs)
        return self._call_in_executor(args, kwargs)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        # A breaker made by decorating a method binds like the function it replaced.
        if obj is None or not self._decorated:
            return self
        return MethodType(self, obj)

    def _bind(self, func: Callable[..., Any]) -> None:
        if self._func is not None:
            raise TypeError(f"{self.name}: already guards {self._func!r}")
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        if not is_async and inspect.iscoroutinefunction(self._fallback):
            raise TypeError(f"{self.name}: an async fallback needs an async function")
        if self._fallback is not None:
            self._fb_mode = _fallback_mode(self._fallback, func)
        self._func = func
        self._is_async = is_async
        if is_async:
            # ``await breaker(x)`` then runs one coroutine frame, ``_acall``, instead of a
            # sync __call__ that builds one (same slots, so the switch is safe).
            self.__class__ = _AsyncCircuitBreaker
        if not self._named:
            self.name = getattr(func, "__qualname__", None) or self.name
        # Look like the function (as functools.wraps would), for decorators and introspection.
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            if hasattr(func, attr):
                self.__dict__[attr] = getattr(func, attr)
        self.__dict__["__wrapped__"] = func
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if is_async and mark is not None:
            mark(self)  # so inspect.iscoroutinefunction(breaker) is True, as for the function
        self._sync_fast = not is_async and (self._timeout is None or self._executor is None)

    # -- sync ------------------------------------------------------------------------------

    def _call_in_executor(self, args: Args, kwargs: Kwargs) -> Any:
        """A sync call bounded by ``timeout`` in the caller's wait: it runs on the executor."""
        executor, func, timeout = self._executor, self._func, self._timeout
        assert executor is not None and func is not None and timeout is not None
        state = self.admit()
        if state is OPEN:
            return self._rejected_sync(args, kwargs)
        if state is DISABLED:
            return func(*args, **kwargs)
        from concurrent.futures import wait  # loaded already: the caller made an executor

        clock = self.clock
        start = clock()
        try:
            future = executor.submit(func, *args, **kwargs)
            done, _ = wait((future,), timeout)
        except BaseException:
            self.release()  # executor shut down, or the caller was interrupted while waiting
            raise
        if not done:
            # The worker keeps running until the function returns (threads cannot be killed);
            # cancel() only helps if it had not started yet. Its late outcome is ignored.
            future.cancel()
            return self._timed_out_sync(clock() - start, args, kwargs, None)
        try:
            result = future.result()
        except BaseException as exc:
            return self._sync_error(exc, clock() - start, args, kwargs)
        return self._sync_late(result, clock() - start, args, kwargs)

    def _sync_late(self, result: Any, duration: float, args: Args, kwargs: Kwargs) -> Any:
        """A sync call returned; past ``timeout`` it is a timeout, else a (maybe slow) success."""
        timeout = self._timeout
        if timeout is not None and duration > timeout:
            return self._timed_out_sync(duration, args, kwargs, None)
        self.record_success(duration)
        return result

    def _sync_error(self, exc: BaseException, duration: float, args: Args, kwargs: Kwargs) -> Any:
        """A sync call raised ``exc`` after ``duration`` seconds."""
        if not isinstance(exc, Exception):
            self.release()  # KeyboardInterrupt, SystemExit, ...: no verdict on the dependency
            raise exc
        timeout = self._timeout
        if timeout is not None and duration > timeout:
            return self._timed_out_sync(duration, args, kwargs, exc)
        if not self._counts(exc):
            self.record_success(duration)
            raise exc
        self.record_failure(duration, exc)
        if self._fallback is None:
            raise exc
        return self._fallback_sync(args, kwargs, exc)

    def _timed_out_sync(
        self, duration: float, args: Args, kwargs: Kwargs, exc: BaseException | None
    ) -> Any:
        error = self._timeout_error(duration)
        if self._fallback is None:
            raise error from exc
        return self._fallback_sync(args, kwargs, error)

    def _rejected_sync(self, args: Args, kwargs: Kwargs) -> Any:
        error = self.rejection()
        if self._fallback is None:
            raise error
        return self._fallback_sync(args, kwargs, error)

    def _fallback_sync(self, args: Args, kwargs: Kwargs, cause: BaseException) -> Any:
        """Answer the call from the fallback, handing it ``cause``; emits ``fallback``."""
        result = self._run_fallback(args, kwargs, cause)
        if self.listens("fallback"):
            self.emit("fallback", result, cause)
        return result

    # -- async -----------------------------------------------------------------------------

    async def _acall(self, *args: Any, **kwargs: Any) -> Any:
        """The async path: admission, the call (under the deadline timer), its verdict."""
        func: Callable[..., Any] = self._func  # type: ignore[assignment]  # bound: async
        if not self.is_closed:
            state = self.admit()
            if state is OPEN:
                error = self.rejection()
                if self._fallback is None:
                    raise error
                return await self._fallback_async(args, kwargs, error)
            if state is DISABLED:
                return await func(*args, **kwargs)
        clock = self.clock
        timeout = self._timeout
        start = clock()
        if timeout is None:
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                return await self._async_error(exc, clock() - start, args, kwargs)
        else:
            loop = _lt.running_loop()
            task = _lt.current_task(loop) if loop is not None else None
            if task is None:
                return await self._call_scoped(func, timeout, start, args, kwargs)
            watch = self._watch
            if watch is None or watch.loop is not loop:
                assert loop is not None
                watch = self._watch = LoopTimer(loop)
            # The breaker's own start reading serves when it is the loop's clock (the default).
            deadline = start + timeout if watch.shared_clock is clock else watch.now() + timeout
            key, entry = watch.add(task, deadline)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                if watch.remove(key, entry, exc):
                    return await self._timed_out_async(clock() - start, args, kwargs, None)
                return await self._async_error(exc, clock() - start, args, kwargs)
            if watch.remove(key, entry, None):
                # The function swallowed our cancellation: it still ran past its timeout,
                # and a call longer than its timeout is a timeout (the rule below).
                return await self._timed_out_async(clock() - start, args, kwargs, None)
        now = clock()
        duration = now - start
        if duration <= self._limit:
            self.record_success(duration, now)
            return result
        # Judged by the breaker's clock too, so a fake clock can drive timeouts in tests.
        if timeout is not None and duration > timeout:
            return await self._timed_out_async(duration, args, kwargs, None)
        self.record_success(duration, now)
        return result

    async def _call_scoped(
        self, func: Callable[..., Any], timeout: float, start: float, args: Args, kwargs: Kwargs
    ) -> Any:
        """The timed call on an event loop other than asyncio (trio): an anyio cancel scope."""
        import anyio  # an httpx dependency; only needed here

        clock = self.clock
        try:
            with anyio.move_on_after(timeout) as scope:
                result = await func(*args, **kwargs)
        except BaseException as exc:
            return await self._async_error(exc, clock() - start, args, kwargs)
        duration = clock() - start
        if scope.cancel_called or duration > timeout:
            return await self._timed_out_async(duration, args, kwargs, None)
        self.record_success(duration)
        return result

    async def _async_error(
        self, exc: BaseException, duration: float, args: Args, kwargs: Kwargs
    ) -> Any:
        """An async call raised ``exc`` after ``duration`` seconds (not our timeout)."""
        if not isinstance(exc, Exception):
            self.release()  # we were cancelled from outside: no verdict on the dependency
            raise exc
        timeout = self._timeout
        if timeout is not None and duration > timeout:
            return await self._timed_out_async(duration, args, kwargs, exc)
        if not self._counts(exc):
            self.record_success(duration)
            raise exc
        self.record_failure(duration, exc)
        if self._fallback is None:
            raise exc
        return await self._fallback_async(args, kwargs, exc)

    async def _timed_out_async(
        self, duration: float, args: Args, kwargs: Kwargs, exc: BaseException | None
    ) -> Any:
        error = self._timeout_error(duration)
        if self._fallback is None:
            raise error from exc
        return await self._fallback_async(args, kwargs, error)

    async def _fallback_async(self, args: Args, kwargs: Kwargs, cause: BaseException) -> Any:
        result = self._run_fallback(args, kwargs, cause)
        if inspect.isawaitable(result):
            result = await result
        if self.listens("fallback"):
            self.emit("fallback", result, cause)
        return result

    # -- shared ----------------------------------------------------------------------------

    def _timeout_error(self, duration: float) -> CallTimeoutError:
        timeout = self._timeout
        assert timeout is not None
        error = CallTimeoutError(self.name, timeout)
        self.record_failure(duration, error, timed_out=True)
        return error

    def _run_fallback(self, args: Args, kwargs: Kwargs, cause: BaseException) -> Any:
        fallback = self._fallback
        assert fallback is not None
        mode = self._fb_mode
        if mode == _FB_CAUSE_KW:
            return fallback(*args, cause=cause, **kwargs)
        if mode == _FB_ARGS_CAUSE:
            return fallback(*args, cause, **kwargs)
        if mode == _FB_ARGS:
            return fallback(*args, **kwargs)
        return fallback()

    def _counts(self, exc: BaseException) -> bool:
        """Does ``exc`` count as a failure? A predicate that raises is logged; then it does."""
        try:
            return bool(self._is_failure(exc))
        except Exception:
            log.exception("circuit breaker %r: is_failure(%r) raised", self.name, exc)
            return True


class _AsyncCircuitBreaker(CircuitBreaker):
    """A ``CircuitBreaker`` bound to a coroutine function: calling it is the coroutine."""

    __slots__ = ()

    __call__ = CircuitBreaker._acall


# -- fallback signatures ------------------------------------------------------------------


def _positional(fn: Callable[..., Any]) -> tuple[int, bool] | None:
    """(positional parameters, has ``*args``) of ``fn``; None when it has no signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = sum(1 for p in params if p.kind in _POSITIONAL)
    return count, any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _fallback_mode(fallback: Callable[..., Any], func: Callable[..., Any] | None) -> int:
    """How to call ``fallback`` for ``func`` (module docstring); TypeError if it cannot fit."""
    try:
        params = inspect.signature(fallback).parameters.values()
    except (TypeError, ValueError):
        return _FB_CAUSE_KW  # no signature to read (some builtins): the keyword form
    if any(p.name == "cause" and p.kind is not p.POSITIONAL_ONLY for p in params):
        return _FB_CAUSE_KW
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return _FB_ARGS_CAUSE
    count = sum(1 for p in params if p.kind in _POSITIONAL)
    if count == 0:
        return _FB_NONE
    target = _positional(func) if func is not None else None
    if target is None or target[1]:
        return _FB_ARGS  # the function's arity is unknown (not bound yet, or *args)
    arity = target[0]
    required = sum(1 for p in params if p.kind in _POSITIONAL and p.default is p.empty)
    if required > arity + 1:
        raise TypeError(
            f"fallback {getattr(fallback, '__qualname__', fallback)!r} needs {required} "
            f"positional arguments; a fallback takes none, the call's {arity}, or those "
            f"and the cause"
        )
    return _FB_ARGS_CAUSE if required == arity + 1 else _FB_ARGS
