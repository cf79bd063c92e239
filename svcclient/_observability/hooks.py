"""The observer protocol every pipeline event goes through.

Prometheus metrics and OpenTelemetry tracing are observers like any user's: subclass
:class:`Hooks`, override what you need, and pass it in ``hooks=[...]``. A hook that
raises is logged and ignored; it never breaks the call.

Theory of operation
-------------------
* **Values, not the pipeline's objects.** A hook gets a :class:`CallInfo` or an
  :class:`AttemptInfo`: immutable values the pipeline builds from its own state (as
  cheaply as any object with those slots: no Python frame), never its own objects. A call's value is
  built once when it starts and again only for an event that reports something new (its
  end, a retry); an attempt's when it starts (if anyone listens) and when it ends. What
  an observer keeps between events goes in ``state``, a dict per call (shared by every
  value of that call) and one per attempt (shared by its start and end values).
* **Who has work for a call, asked once per call** (Polly's telemetry ``Enabled``): an
  observer that overrides :meth:`Hooks.enabled` is asked when the call starts; False and
  it hears none of the call's events. ``TracingHooks`` says False when there is nothing
  to trace, measure or propagate (no SDK, no incoming trace).
* **A tally instead of two calls.** An observer that only counts calls in flight at a
  call's start and successful end may hand the pipeline the tally
  (:meth:`Hooks.calls_in_flight`): the pipeline appends and pops it itself, and calls
  neither method for that (``PrometheusHooks`` does, for its in-flight gauge).
* **One way to call them.** A :class:`HookTable` is built once per transport: every
  event's listeners as a tuple (rare events go through :func:`fire`), and for the
  per-call events a :class:`CallEvents` per combination of :meth:`Hooks.enabled`
  answers, each event compiled into one function (or the one listener's method itself).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import httpx

    from .._endpoint import Endpoint

__all__ = [
    "KNOWN_METHODS",
    "OTEL_DURATION_BUCKETS",
    "TRACE_ID_STATE_KEY",
    "FIELD_ORDER",
    "AttemptContext",
    "AttemptFields",
    "AttemptInfo",
    "CallEvents",
    "CallFields",
    "CallInfo",
    "CallTally",
    "HookTable",
    "Hooks",
    "ObservedExchange",
    "call_ended",
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


class CallFields:
    """:class:`CallInfo`'s fields, for the pipeline only: it fills them in on a
    ``CallFields()``, then makes the object a CallInfo (``value.__class__ = CallInfo``:
    the same layout, and no attribute can be set any more). Built so, a value costs what
    any object with these slots does, with no Python frame (CallInfo's own ``__init__``
    sets each field through ``object.__setattr__``: several times the cost).
    ``tests/test_call_objects.py`` checks that every event's value is complete and
    immutable."""

    __slots__ = (
        "attempts",
        "duration",
        "error_type",
        "method",
        "request",
        "route",
        "service",
        "started",
        "state",
        "status_code",
        "trace_context",
    )

    service: str
    method: str
    route: str
    request: httpx.Request
    started: float
    attempts: int
    status_code: int | None
    error_type: str | None
    duration: float
    state: dict[str, Any]
    trace_context: Any


class CallInfo(CallFields):
    """One logical call (all its attempts), as the observers see it: an immutable value
    (setting an attribute raises ``AttributeError``), never the pipeline's own object.

    ``service``, ``method`` and ``route`` (a template, never a raw path) label it;
    ``request`` is the caller's request; ``started`` the pipeline clock's reading when it
    arrived. ``attempts``, ``status_code`` (the final response's, if any), ``error_type``
    (the failure's class, if any) and ``duration`` (seconds) describe the call as it
    ended, in ``on_request_end``; before that they are 0, None, None and 0.0 (in
    ``on_retry``, ``attempts`` is the number made so far). ``state`` is one dict per call,
    the same in every value of that call: observers keep what they carry between events
    there, under keys of their own. ``trace_context`` is the OpenTelemetry context current
    when the call started, when it carries anything (an incoming trace, baggage); None
    otherwise, or when OpenTelemetry is not imported. It is looked up once per call.
    """

    __slots__ = ()

    def __init__(  # noqa: PLR0917 - positional, as the fields were
        self,
        service: str,
        method: str,
        route: str,
        request: httpx.Request,
        started: float,
        attempts: int = 0,
        status_code: int | None = None,
        error_type: str | None = None,
        duration: float = 0.0,
        state: dict[str, Any] | None = None,
        trace_context: Any = None,
    ) -> None:
        """``state`` defaults to a new dict."""
        _fill(
            self,
            service=service,
            method=method,
            route=route,
            request=request,
            started=started,
            attempts=attempts,
            status_code=status_code,
            error_type=error_type,
            duration=duration,
            state={} if state is None else state,
            trace_context=trace_context,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __repr__(self) -> str:
        return _repr(self)


def _fill(value: object, **fields: object) -> None:
    for name, field in fields.items():
        object.__setattr__(value, name, field)


def _repr(value: CallFields | AttemptFields) -> str:
    fields = ", ".join(f"{name}={getattr(value, name)!r}" for name in FIELD_ORDER[type(value)])
    return f"{type(value).__name__}({fields})"


def call_ended(
    call: CallInfo, attempts: int, status_code: int | None, error_type: str | None, duration: float
) -> CallInfo:
    """``call`` with an outcome (the value ``on_request_end`` gets; ``on_retry``'s has
    only ``attempts``): the same call, the same ``state``."""
    return CallInfo(
        call.service,
        call.method,
        call.route,
        call.request,
        call.started,
        attempts,
        status_code,
        error_type,
        duration,
        call.state,
        call.trace_context,
    )


class AttemptFields:
    """:class:`AttemptInfo`'s fields (filled in as :class:`CallFields`' are)."""

    __slots__ = (
        "call",
        "duration",
        "endpoint",
        "error_type",
        "number",
        "request",
        "started",
        "state",
        "status_code",
    )

    call: CallInfo
    number: int
    endpoint: Endpoint | None
    request: httpx.Request
    started: float
    status_code: int | None
    error_type: str | None
    duration: float
    state: dict[str, Any]


class AttemptInfo(AttemptFields):
    """One attempt of a call, to one endpoint, as the observers see it: an immutable
    value (setting an attribute raises ``AttributeError``), never the pipeline's object.

    ``number`` is the resend count (0 for the first attempt); ``endpoint`` the pod it went
    to (None for a request to another origin, which is not balanced); ``request`` may be
    given headers by ``on_attempt_start`` (trace context). ``status_code``,
    ``error_type`` and ``duration`` are set in the value ``on_attempt_end`` gets (None,
    None and 0.0 at the start). ``state`` is one dict per attempt, the same in its start
    and end values: observers keep what they carry from start to end there.
    """

    __slots__ = ()

    def __init__(  # noqa: PLR0917 - positional, as the fields were
        self,
        call: CallInfo,
        number: int,
        endpoint: Endpoint | None,
        request: httpx.Request,
        started: float,
        status_code: int | None = None,
        error_type: str | None = None,
        duration: float = 0.0,
        state: dict[str, Any] | None = None,
    ) -> None:
        """``state`` defaults to a new dict."""
        _fill(
            self,
            call=call,
            number=number,
            endpoint=endpoint,
            request=request,
            started=started,
            status_code=status_code,
            error_type=error_type,
            duration=duration,
            state={} if state is None else state,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __repr__(self) -> str:
        return _repr(self)


FIELD_ORDER: Final[dict[type, tuple[str, ...]]] = {
    # Each value's fields in the order of its __init__ (repr, tests).
    CallInfo: (
        "service",
        "method",
        "route",
        "request",
        "started",
        "attempts",
        "status_code",
        "error_type",
        "duration",
        "state",
        "trace_context",
    ),
    AttemptInfo: (
        "call",
        "number",
        "endpoint",
        "request",
        "started",
        "status_code",
        "error_type",
        "duration",
        "state",
    ),
}


AttemptContext = Callable[[], Callable[[], object]]
"""What ``on_attempt_start`` may return: a function the driver calls in the task that
sends, right before sending, and whose return value it calls right after (the tracing
observer makes the attempt's span current there)."""


class CallTally(Protocol):
    """What an observer may count a service's calls in flight in: the pipeline appends
    once when a call starts and pops once when it ends (a deque, or anything alike)."""

    def append(self, value: None, /) -> None: ...

    def pop(self) -> None: ...


class Hooks:
    """Base observer: every event is a no-op. Override the events you care about.

    Two more methods let an observer skip work it has none of (both are asked only when
    overridden): :meth:`enabled`, once per call, and :meth:`calls_in_flight`, once per
    service.
    """

    def enabled(self, call: CallInfo) -> bool:
        """Does this observer have work for ``call``? Asked once, when the call starts,
        before any of its events; False and it hears none of them (start and end of the
        call and of its attempts, retries). Not asked when not overridden: always True."""
        return True

    def calls_in_flight(self, service: str) -> CallTally | None:
        """A tally the pipeline may keep ``service``'s calls in flight in for this
        observer, asked once per service when a transport is built (None: no tally).

        For an observer whose ``on_request_start`` only appends to that tally and whose
        ``on_request_end`` only pops it when the call succeeded: the pipeline then
        appends to it itself instead of calling ``on_request_start``, and pops it instead
        of calling ``on_request_end`` when the call succeeded. ``on_request_end`` is still
        called at any other end (it pops the tally itself then), and for requests to
        another origin (their service is that host) both methods are called as usual.
        """
        return None

    def on_request_start(self, call: CallInfo) -> None:
        """A logical call entered the pipeline."""

    def on_request_end(self, call: CallInfo) -> None:
        """A logical call left the pipeline (``call.status_code`` or ``call.error_type``)."""

    def on_attempt_start(self, attempt: AttemptInfo) -> AttemptContext | None:
        """An attempt is about to be sent; ``attempt.request`` headers may be edited.

        May return an :data:`AttemptContext`: a function called right before the send,
        in the task that sends, returning the function to call right after it."""
        return None

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


def _listeners(hooks: Sequence[Hooks], event: str) -> tuple[Callable[..., Any], ...]:
    """The bound ``event`` methods of the observers that override Hooks' no-op."""
    base = getattr(Hooks, event)
    return tuple(getattr(hook, event) for hook in hooks if getattr(type(hook), event) is not base)


def _overrides(hook: Hooks, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hooks, name)


class CallEvents:
    """The per-call events of the observers that have work for a call, each compiled
    (:func:`compile_dispatch`): None when nobody listens, the one listener's method as it
    is (the caller guards it with ``try``/:func:`hook_failed`), or one function calling
    each in turn. ``attempt_start`` returns the listeners' :data:`AttemptContext`, if any.

    ``in_flight`` is the tally an observer offered (:meth:`Hooks.calls_in_flight`), None
    if none: its owner is then left out of ``request_start`` and ``request_succeeded``
    (the end of a call that succeeded), which the tally's append and pop stand for.
    ``request_end`` is for every other end, with every listener. ``retry``: the
    ``on_retry`` listeners, for :func:`fire`.
    """

    __slots__ = (
        "attempt_end",
        "attempt_start",
        "in_flight",
        "request_end",
        "request_start",
        "request_succeeded",
        "retry",
    )

    request_start: Callable[[CallInfo], None] | None
    request_succeeded: Callable[[CallInfo], None] | None
    request_end: Callable[[CallInfo], None] | None
    attempt_start: Callable[[AttemptInfo], AttemptContext | None] | None
    attempt_end: Callable[[AttemptInfo], None] | None
    retry: tuple[Callable[..., None], ...]
    in_flight: CallTally | None

    def __init__(self, hooks: Sequence[Hooks], tally: tuple[Hooks, CallTally] | None) -> None:
        owner = None
        self.in_flight = None
        if tally is not None and tally[0] in hooks:
            owner, self.in_flight = tally
        others = [hook for hook in hooks if hook is not owner]
        self.request_start = compile_dispatch(_listeners(others, "on_request_start"))
        self.request_succeeded = compile_dispatch(_listeners(others, "on_request_end"))
        self.request_end = compile_dispatch(_listeners(hooks, "on_request_end"))
        self.attempt_start = _compile_attempt_start(_listeners(hooks, "on_attempt_start"))
        self.attempt_end = compile_dispatch(_listeners(hooks, "on_attempt_end"))
        self.retry = _listeners(hooks, "on_retry")


class _Variants(dict[Any, CallEvents]):
    """A call's :class:`CallEvents` by its observers' :meth:`Hooks.enabled` answers (bit
    ``i`` set: the i-th observer that asks has work), each built the first time."""

    def __init__(
        self,
        hooks: tuple[Hooks, ...],
        asking: tuple[Hooks, ...],
        tally: tuple[Hooks, CallTally] | None,
    ) -> None:
        super().__init__()
        self._hooks = hooks
        self._asking = asking
        self._tally = tally

    def __missing__(self, answers: Any) -> CallEvents:
        if not isinstance(answers, int):  # one observer asks, and answered with a non-bool
            return self[1 if answers else 0]
        idle = {id(hook) for bit, hook in enumerate(self._asking) if not answers >> bit & 1}
        events = CallEvents([h for h in self._hooks if id(h) not in idle], self._tally)
        self[answers] = events
        return events


class HookTable:
    """The observers of one transport, built once: what every event calls.

    * ``on_<event>``: for each event, the bound methods of the observers that override it
      (an event nobody listens to costs one empty-tuple test); the events that are not
      per call go through :func:`fire` with these.
    * ``events``: the per-call events (:class:`CallEvents`) of a call every observer has
      work for; ``gate`` (None when no observer overrides :meth:`Hooks.enabled`) is asked
      once per call and ``variants[gate(call)]`` are that call's events.
    * ``trace_context``: returns the current OpenTelemetry context (empty, hence false,
      when there is none), or None while OpenTelemetry is not imported.

    Built for a ``service``, the first observer that offers a tally
    (:meth:`Hooks.calls_in_flight`) has it kept by the pipeline (``CallEvents.in_flight``).
    """

    __slots__ = (*_EVENTS, "_foreign", "events", "gate", "hooks", "trace_context", "variants")

    # Every event's methods, set in __init__. Declared one by one (a ``__getattr__`` for
    # mypy's sake would make every attribute read of the table go through a Python-level
    # hook: some 170 instructions each, on every request).
    on_request_start: tuple[Callable[..., None], ...]
    on_request_end: tuple[Callable[..., None], ...]
    on_attempt_start: tuple[Callable[..., AttemptContext | None], ...]
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

    events: CallEvents
    gate: Callable[[CallInfo], Any] | None
    variants: dict[Any, CallEvents]
    trace_context: Callable[[], Any]

    def __init__(self, hooks: Sequence[Hooks], service: str | None = None) -> None:
        self.hooks = hooks = tuple(hooks)
        for event in _EVENTS:
            setattr(self, event, _listeners(hooks, event))
        tally = None
        if service is not None:
            for hook in hooks:
                offered = (
                    hook.calls_in_flight(service) if _overrides(hook, "calls_in_flight") else None
                )
                if offered is not None:
                    tally = hook, offered
                    break
        self.events = CallEvents(hooks, tally)
        asking = tuple(hook for hook in hooks if _overrides(hook, "enabled"))
        variants: dict[Any, CallEvents] = _Variants(hooks, asking, tally)
        variants[(1 << len(asking)) - 1] = self.events
        self.gate = None
        if len(asking) == 1:
            # One observer asks: its own method is the gate, and a plain dict (the
            # interpreter's fast path for it) holds the two answers' events.
            self.gate = asking[0].enabled
            variants = {False: variants[False], True: self.events}
        elif asking:
            self.gate = _gate(tuple(hook.enabled for hook in asking))
        self.variants = variants
        self.trace_context = _context_getter()
        self._foreign: HookTable | None = None if service is not None else self

    def select(self, call: CallInfo) -> CallEvents:
        """The events of ``call``: its observers asked whether they have work for it."""
        gate = self.gate
        if gate is None:
            return self.events
        try:
            return self.variants[gate(call)]
        except Exception:
            hook_failed(gate)
            return self.events

    def foreign(self) -> HookTable:
        """The table for requests to another origin (their service is that host): the same
        observers, no tally (made the first time it is asked for)."""
        table = self._foreign
        if table is None:
            table = self._foreign = HookTable(self.hooks)
        return table


def _gate(tests: tuple[Callable[[CallInfo], bool], ...]) -> Callable[[CallInfo], int]:
    """Several observers ask: their answers as bits (one that raises has work)."""

    def gate(call: CallInfo) -> int:
        answers = 0
        for bit, test in enumerate(tests):
            try:
                if test(call):
                    answers |= 1 << bit
            except Exception:
                hook_failed(test)
                answers |= 1 << bit
        return answers

    return gate


def hook_failed(method: Callable[..., Any]) -> None:
    """Log the exception an observer's ``method`` just raised (it is then ignored)."""
    log.exception("svcclient hook %r failed", method)


def fire(methods: tuple[Callable[..., Any], ...], *args: Any) -> None:
    """Call each observer method; one that raises is logged and skipped."""
    for method in methods:
        try:
            method(*args)
        except Exception:
            hook_failed(method)


def compile_dispatch(methods: tuple[Callable[[Any], None], ...]) -> Callable[[Any], None] | None:
    """The per-call event of ``methods``: None for none, the one method as it is (its
    caller guards it), else one function calling each with the one argument, as
    :func:`fire` does, with no loop and no argument packing for two."""
    if not methods:
        return None
    if len(methods) == 1:
        return methods[0]
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


def _compile_attempt_start(
    methods: tuple[Callable[[AttemptInfo], AttemptContext | None], ...],
) -> Callable[[AttemptInfo], AttemptContext | None] | None:
    """``on_attempt_start``'s dispatch: as :func:`compile_dispatch`, and returns the
    listeners' attempt contexts as one (entered in order, left in reverse)."""
    if len(methods) <= 1:
        return methods[0] if methods else None

    def each(attempt: AttemptInfo) -> AttemptContext | None:
        contexts = []
        for method in methods:
            try:
                context = method(attempt)
            except Exception:
                hook_failed(method)
            else:
                if context is not None:
                    contexts.append(context)
        return _chained(contexts)

    return each


def _chained(contexts: list[AttemptContext]) -> AttemptContext | None:
    if len(contexts) <= 1:
        return contexts[0] if contexts else None

    def enter() -> Callable[[], object]:
        undos = [context() for context in contexts]

        def leave() -> None:
            for undo in reversed(undos):
                undo()

        return leave

    return enter


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


_context_found: list[Callable[[], Any]] = []


def _context_getter() -> Callable[[], Any]:
    """:attr:`HookTable.trace_context`: OpenTelemetry's, or while nothing imported it
    (an app without tracing may import it later) a function that looks each time."""
    otel_context = sys.modules.get("opentelemetry.context")
    if otel_context is not None:
        return fast_context_getter(otel_context)
    return _late_context


def _late_context() -> Any:
    if not _context_found:
        otel_context = sys.modules.get("opentelemetry.context")
        if otel_context is None:
            return None
        _context_found.append(fast_context_getter(otel_context))
    return _context_found[0]()


def enter_attempt(context: AttemptContext | None) -> Callable[[], object] | None:
    """What a driver calls right before sending an attempt; returns the undo (or None)."""
    if context is None:
        return None
    try:
        return context()
    except Exception:
        log.exception("svcclient attempt context failed")
        return None


def leave_attempt(undo: Callable[[], object]) -> None:
    """Undo :func:`enter_attempt` (right after the send, in the same task)."""
    try:
        undo()
    except Exception:
        log.exception("svcclient attempt context failed")


class ObservedExchange:
    """One call of one attempt, observed: a request to another origin than the
    transport's service, or a request of a client :func:`~svcclient.instrument` wraps.

    Made right before the send (the observers hear of the call and its attempt);
    ``enter`` is the attempt's context for :func:`enter_attempt`; :meth:`done` reports
    the answer or the error.
    """

    __slots__ = ("attempt", "clock", "enter", "events")

    def __init__(
        self,
        table: HookTable,
        service: str,
        route: str,
        request: httpx.Request,
        clock: Callable[[], float],
    ) -> None:
        self.clock = clock
        now = clock()
        call = CallInfo(
            service,
            request.method,
            route,
            request,
            now,
            trace_context=table.trace_context() or None,
        )
        self.events = events = table.select(call)
        if events.request_start is not None:
            fire((events.request_start,), call)
        self.attempt = attempt = AttemptInfo(call, 0, None, request, now)
        self.enter: AttemptContext | None = None
        dispatch = events.attempt_start
        if dispatch is not None:
            try:
                self.enter = dispatch(attempt)
            except Exception:
                hook_failed(dispatch)

    def done(self, status_code: int | None, error_type: str | None) -> None:
        """The answer's status (or the error's type) is in: end the observers' events."""
        attempt = self.attempt
        call = attempt.call
        duration = self.clock() - attempt.started
        events = self.events
        if events.attempt_end is not None:
            ended = AttemptInfo(
                call,
                attempt.number,
                attempt.endpoint,
                attempt.request,
                attempt.started,
                status_code,
                error_type,
                duration,
                attempt.state,
            )
            fire((events.attempt_end,), ended)
        if events.request_end is not None:
            fire((events.request_end,), call_ended(call, 1, status_code, error_type, duration))
