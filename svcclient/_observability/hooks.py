"""The observer interface every pipeline event goes through.

Prometheus metrics and OpenTelemetry tracing are observers like any user's: subclass
:class:`Hooks`, override what you need, and pass it in ``hooks=[...]``. A hook that
raises is logged and ignored; it never breaks the call.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import httpx

    from .._endpoint import Endpoint

__all__ = [
    "KNOWN_METHODS",
    "OTEL_DURATION_BUCKETS",
    "CallTally",
    "TRACE_ID_STATE_KEY",
    "AttemptInfo",
    "CallInfo",
    "Dispatch",
    "HookTable",
    "Hooks",
    "compile_dispatch",
    "enter_attempt",
    "fast_context_getter",
    "fire",
    "hook_failed",
    "leave_attempt",
]

log = logging.getLogger("svcclient")

# Shared by the Prometheus and OpenTelemetry observers; here so that neither has to import
# the other's library to know them.
KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
"""HTTP methods reported as themselves; any other is reported as ``_OTHER``."""

TRACE_ID_STATE_KEY: Final = "svcclient.trace_id"
"""Key in ``CallInfo.state`` holding the call's sampled trace id (32 hex digits).

Set by ``TracingHooks``, read by ``PrometheusHooks`` for exemplars.
"""

OTEL_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""The OpenTelemetry HTTP semantic conventions' advisory bucket boundaries for
``http.client.request.duration`` (seconds)."""


@dataclass(slots=True, eq=False)
class CallInfo:
    """One logical call (all its attempts). ``state`` is free for observers to use."""

    service: str
    method: str
    route: str
    request: httpx.Request
    started: float
    attempts: int = 0
    status_code: int | None = None
    error_type: str | None = None
    duration: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class AttemptInfo:
    """One attempt of a call, to one endpoint.

    ``number`` is the resend count (0 for the first attempt). ``request`` may be given
    headers by ``on_attempt_start`` (trace context). ``state`` is for observers.

    ``enter`` may be set by an observer in ``on_attempt_start``: the driver calls it in the
    task that sends, right before sending, and calls what it returns right after (the
    tracing observer makes the attempt's span current there). An observer that sets it
    chains to the value it found.
    """

    call: CallInfo
    number: int
    endpoint: Endpoint | None
    request: httpx.Request
    started: float
    status_code: int | None = None
    error_type: str | None = None
    duration: float = 0.0
    state: Any = None
    enter: Callable[[], Callable[[], object]] | None = None


class Hooks:
    """Base observer: every method is a no-op. Override the events you care about."""

    def on_request_start(self, call: CallInfo) -> None:
        """A logical call entered the pipeline."""

    def on_request_end(self, call: CallInfo) -> None:
        """A logical call left the pipeline (``call.status_code`` or ``call.error_type``)."""

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        """An attempt is about to be sent; ``attempt.request`` headers may be edited."""

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """An attempt finished with a status code or an error type."""

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        """The pipeline will retry ``call`` after ``delay`` seconds."""

    def on_retry_budget_exhausted(self, service: str) -> None:
        """A retry was denied because the service's retry budget is spent."""

    def on_breaker_transition(self, service: str, old: str, new: str) -> None:
        """A circuit breaker changed state (``closed``/``open``/``half_open``/...)."""

    def on_breaker_reject(self, service: str) -> None:
        """A call was rejected by an open breaker."""

    def on_ejection(self, service: str, endpoint: Endpoint, ejected: bool) -> None:
        """An endpoint was ejected (``ejected=True``) or returned to rotation."""

    def on_bulkhead_rejected(self, service: str) -> None:
        """A call was rejected because the bulkhead was full."""

    def on_hedge(self, service: str) -> None:
        """A hedged (speculative) attempt was sent."""

    def on_throttled(self, service: str) -> None:
        """Adaptive throttling rejected a call locally (it was never sent)."""

    def on_concurrency_limit(self, service: str, limit: int) -> None:
        """The adaptive concurrency limit changed (also reported once at start)."""


_EVENTS = tuple(name for name in vars(Hooks) if name.startswith("on_"))


class CallTally(Protocol):
    """What an observer may count a service's calls in flight in: the pipeline appends
    once when a call starts and pops once when it ends (a deque, or anything alike)."""

    def append(self, value: None, /) -> None: ...

    def pop(self) -> None: ...


# An observer's offer to count calls in flight itself (see Dispatch): the tally, and the
# method that stands for its ``on_request_end`` at a call's unsuccessful end.
_Offer = tuple[CallTally, Callable[[CallInfo], None]]


def _tally_offer(hooks: Sequence[Hooks], service: str | None) -> tuple[Hooks, _Offer] | None:
    """The first observer that offers a tally for ``service`` (``_call_tally(service)``)."""
    if service is None:
        return None
    for hook in hooks:
        offer = getattr(hook, "_call_tally", None)
        made = offer(service) if offer is not None else None
        if made is not None:
            return hook, made
    return None


# The per-request events, also kept compiled (see HookTable): name -> compiled slot.
_HOT: Final = {
    "on_request_start": "request_start",
    "on_request_end": "request_end",
    "on_attempt_start": "attempt_start",
    "on_attempt_end": "attempt_end",
}


def _listeners(hooks: Sequence[Hooks], event: str) -> tuple[Callable[..., None], ...]:
    """The bound ``event`` methods of the observers that override Hooks' no-op."""
    base = getattr(Hooks, event)
    return tuple(getattr(hook, event) for hook in hooks if getattr(type(hook), event) is not base)


def _call_listeners(
    hooks: Sequence[Hooks], event: str, tally: tuple[Hooks, _Offer] | None, failed: bool = False
) -> tuple[Callable[..., None], ...]:
    """``_listeners`` for the compiled per-call slots: an observer that counts its calls
    in flight in a tally (see :class:`Dispatch`) is left out of ``on_request_start``, and
    of a call's successful end; at an unsuccessful one its offered method stands in."""
    if tally is None or event not in ("on_request_start", "on_request_end"):
        return _listeners(hooks, event)
    owner, (_, at_failure) = tally
    base = getattr(Hooks, event)
    methods: list[Callable[..., None]] = []
    for hook in hooks:
        if hook is owner:
            if failed:
                methods.append(at_failure)
        elif getattr(type(hook), event) is not base:
            methods.append(getattr(hook, event))
    return tuple(methods)


class Dispatch:
    """The per-request events of some observers, each the one method that listens
    (called as it is: the caller guards it with ``try``/:func:`hook_failed`), the
    compiled dispatch of several, or None when none listens.

    ``in_flight``: built for a service, an observer may count that service's calls in
    flight itself through a ``_call_tally(service)`` method returning a tally (append at
    a call's start, pop at its end; see :class:`CallTally`) and the method to call at an
    unsuccessful end instead of its ``on_request_end`` (``PrometheusHooks`` does, for its
    in-flight gauge). The pipeline then appends and pops that tally itself, and calls the
    observer at neither a call's start nor its successful end: two Python calls fewer per
    request. ``request_end`` is for a successful end, ``request_failed`` for any other
    (the two are the same unless a tally was offered). A passthrough request (another
    origin) still goes through every observer's ``on_request_start``/``on_request_end``.
    """

    __slots__ = (*_HOT.values(), "in_flight", "request_failed")

    request_start: Callable[[CallInfo], None] | None
    request_end: Callable[[CallInfo], None] | None
    request_failed: Callable[[CallInfo], None] | None
    attempt_start: Callable[[AttemptInfo], None] | None
    attempt_end: Callable[[AttemptInfo], None] | None
    in_flight: CallTally | None

    def __init__(
        self, hooks: Sequence[Hooks], service: str | None = None, untraced: bool = False
    ) -> None:
        tally = _tally_offer(hooks, service)
        self.in_flight = None if tally is None else tally[1][0]
        for event, slot in _HOT.items():
            methods = _call_listeners(hooks, event, tally)
            if untraced:
                methods = tuple(_untraced(method, event) for method in methods)
            setattr(self, slot, methods[0] if len(methods) == 1 else compile_dispatch(methods))
        methods = _call_listeners(hooks, "on_request_end", tally, failed=True)
        self.request_failed = methods[0] if len(methods) == 1 else compile_dispatch(methods)


class HookTable(Dispatch):
    """For each event, the bound methods of the observers that override it.

    Built once per transport, so an event nobody listens to costs one empty-tuple test
    and a listened-to event skips every observer that kept the base no-op.

    The four per-request events are also compiled into one function each
    (``request_start``, ``request_end``, ``attempt_start``, ``attempt_end``; None when
    nobody listens): it calls the observers one after the other, each in its own
    ``try``, with no loop and no argument packing -- about 1 k instructions less per
    event than :func:`fire` with the two default observers.

    An observer last in line may compile that function itself: a ``_dispatch_after(event,
    first)`` method returning it, where ``first`` is the one observer before it (or
    None). ``TracingHooks`` does, so that with no OpenTelemetry SDK an event it has
    nothing to do for costs no call of it at all.

    Better still, the last observer may say once per call that it sits the call out: an
    ``_idle_gate()`` method returning a ``() -> bool`` (:attr:`idle`). A call it answers
    True for dispatches through :attr:`lean`, the other observers alone, where a sole
    remaining observer's method is called directly: one Python call per event, not a
    wrapper and the method (with the defaults and no OpenTelemetry SDK, about 1.5 k
    instructions per request).
    """

    __slots__ = (*_EVENTS, "idle", "lean")

    # Every event's methods, set in __init__. Declared one by one (a ``__getattr__`` for
    # mypy's sake would make every attribute read of the table go through a Python-level
    # hook: some 170 instructions each, on every request).
    on_request_start: tuple[Callable[..., None], ...]
    on_request_end: tuple[Callable[..., None], ...]
    on_attempt_start: tuple[Callable[..., None], ...]
    on_attempt_end: tuple[Callable[..., None], ...]
    on_retry: tuple[Callable[..., None], ...]
    on_retry_budget_exhausted: tuple[Callable[..., None], ...]
    on_breaker_transition: tuple[Callable[..., None], ...]
    on_breaker_reject: tuple[Callable[..., None], ...]
    on_ejection: tuple[Callable[..., None], ...]
    on_bulkhead_rejected: tuple[Callable[..., None], ...]
    on_hedge: tuple[Callable[..., None], ...]
    on_throttled: tuple[Callable[..., None], ...]
    on_concurrency_limit: tuple[Callable[..., None], ...]

    idle: Callable[[], bool] | None
    """Asked once per call: True when the one observer that may sit a call out (the last,
    through its ``_idle_gate()``; ``TracingHooks`` with no SDK and no incoming trace) has
    nothing to do for it. The call then dispatches through :attr:`lean`."""
    lean: Dispatch
    """The per-request dispatch for such a call, without that observer (with every
    observer when ``idle`` is None: then every call uses it). A sole observer's method
    is called as it is, with no wrapper: the caller guards it (see :class:`Dispatch`)."""

    def __init__(self, hooks: Sequence[Hooks], service: str | None = None) -> None:
        tally = _tally_offer(hooks, service)
        self.in_flight = None if tally is None else tally[1][0]
        for event in _EVENTS:
            methods = _listeners(hooks, event)
            setattr(self, event, methods)  # every observer's (passthroughs, fire())
            if event in _HOT:
                setattr(
                    self, _HOT[event], _compile_hot(event, _call_listeners(hooks, event, tally))
                )
        failed = _call_listeners(hooks, "on_request_end", tally, failed=True)
        self.request_failed = _compile_hot("on_request_end", failed)
        gate = getattr(hooks[-1], "_idle_gate", None) if hooks else None
        self.idle = idle = gate() if gate is not None else None
        # A call tracing sat out has no OpenTelemetry context when the gate looked at it:
        # an observer may then use a method that does not look again (see _untraced).
        untraced = idle is not None and getattr(hooks[-1], "_idle_means_untraced", False)
        self.lean = Dispatch(hooks if idle is None else hooks[:-1], service, untraced)


def _untraced(method: Callable[..., None], event: str) -> Callable[..., None]:
    """The observer's method for ``event`` when the call has no OpenTelemetry context:
    what its ``_untraced(event)`` offers, else ``method`` itself."""
    offer = getattr(getattr(method, "__self__", None), "_untraced", None)
    replacement = offer(event) if offer is not None else None
    return method if replacement is None else replacement


def hook_failed(method: Callable[..., None]) -> None:
    """Log the exception an observer's ``method`` just raised (it is then ignored)."""
    log.exception("svcclient hook %r failed", method)


def compile_dispatch(methods: tuple[Callable[[Any], None], ...]) -> Callable[[Any], None] | None:
    """One function calling each of ``methods`` with one argument, as :func:`fire` does
    (one that raises is logged and skipped); None for no methods."""
    if not methods:
        return None
    if len(methods) == 1:
        (first,) = methods

        def one(arg: Any) -> None:
            try:
                first(arg)
            except Exception:
                hook_failed(first)

        return one
    if len(methods) == 2:
        first, second = methods

        def two(arg: Any) -> None:
            try:
                first(arg)
            except Exception:
                hook_failed(first)
            try:
                second(arg)
            except Exception:
                hook_failed(second)

        return two

    def many(arg: Any) -> None:
        fire(methods, arg)

    return many


def _compile_hot(
    event: str, methods: tuple[Callable[[Any], None], ...]
) -> Callable[[Any], None] | None:
    """The dispatch of a per-request event: the last observer's own (see HookTable)
    when it compiles one and has at most one observer before it, else compile_dispatch."""
    if 1 <= len(methods) <= 2:
        last = getattr(methods[-1], "__self__", None)
        compiler = getattr(last, "_dispatch_after", None)
        if compiler is not None:
            dispatch: Callable[[Any], None] | None = compiler(
                event, methods[0] if len(methods) == 2 else None
            )
            if dispatch is not None:  # None: the observer has no dispatch of its own
                return dispatch
    return compile_dispatch(methods)


def fast_context_getter(otel_context: Any) -> Callable[[], Any]:
    """``opentelemetry.context.get_current`` for the imported module, as cheap as it can be.

    The API's default runtime context (contextvars; chosen once, when the API is first
    imported, and never swapped afterwards) keeps the current context in one
    ``ContextVar``: its ``get`` is then returned, which reads the same value two Python
    calls sooner. Any other runtime context: the public function.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    cls = type(runtime)
    if (
        cls.__name__ == "ContextVarsRuntimeContext"
        and cls.__module__ == "opentelemetry.context.contextvars_context"
        and isinstance(var, contextvars.ContextVar)
    ):
        return var.get
    get_current: Callable[[], Any] = otel_context.get_current
    return get_current


def enter_attempt(info: AttemptInfo | None) -> Callable[[], object] | None:
    """What a driver calls right before sending an attempt; returns the undo (or None)."""
    if info is None or info.enter is None:
        return None
    try:
        return info.enter()
    except Exception:
        log.exception("svcclient attempt context failed")
        return None


def leave_attempt(undo: Callable[[], object]) -> None:
    """Undo :func:`enter_attempt` (right after the send, in the same task)."""
    try:
        undo()
    except Exception:
        log.exception("svcclient attempt context failed")


def fire(methods: tuple[Callable[..., None], ...], *args: Any) -> None:
    """Call each observer method; one that raises is logged and skipped."""
    for method in methods:
        try:
            method(*args)
        except Exception:
            log.exception("svcclient hook %r failed", method)
