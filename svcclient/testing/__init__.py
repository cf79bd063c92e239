"""Helpers for testing code that calls services through svcclient.

* :func:`mock_service` - a respx router bound to the base URL a client of the service
  calls; give it the ``url=`` and config you give the client (needs ``respx``:
  ``pip install 'svcclient[testing]'``)::

      with mock_service("user-service", url="http://user-service:3000") as users:
          users.get("/users/1").respond(json={"id": 1, "name": "Ada"})
          client = ServiceClient("user-service", url="http://user-service:3000")
          assert client.get("/users/1").json()["name"] == "Ada"

* :class:`FaultTransport` / :class:`AsyncFaultTransport` - httpx transports that play a
  script of outcomes (status codes, refused connections, timeouts, a reset mid-body,
  latency) so unit tests exercise the real pipeline without sockets::

      transport = FaultTransport([503, "refuse", 200])
      client = ServiceClient("user-service", transport=transport)
      assert client.get("/users/1").status_code == 200      # two retries, no network
      assert transport.count("GET") == 3

* :func:`set_testing` / :func:`no_retry_sleeps` / :func:`no_retries` - test mode, as
  stamina's: backoff sleeps are skipped (and attempts optionally capped) for every client,
  including clients created before the switch.
* :class:`FakeClock` - a monotonic clock with a ``sleep`` that advances it, to pass as
  ``clock=``/``sleep=`` to clients, breakers and these transports.
* :class:`LocalDns` - an in-process authoritative DNS server on loopback, and
  :class:`~svcclient.testing._faultserver.FaultServer` - a local HTTP server with scripted faults.

The pytest plugin (the top-level module ``pytest_svcclient``, loaded through the
``pytest11`` entry point; it imports nothing of svcclient until a fixture is used)
provides the fixtures ``svc_registry``, ``svc_breakers``, ``svc_env``, ``svc_test_mode``,
``start_fault_server`` and ``local_dns``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import httpx

from .._config.model import ServiceConfig
from .._pipeline.testmode import mock_host, set_state, unmock_host
from ._faultserver import Fault, FaultServer
from ._localdns import LocalDns

if TYPE_CHECKING:
    import respx

__all__ = [
    "AsyncFaultTransport",
    "FakeClock",
    "Fault",
    "FaultServer",
    "FaultTransport",
    "LocalDns",
    "Reply",
    "is_testing",
    "mock_service",
    "no_retries",
    "no_retry_sleeps",
    "set_testing",
]


# -- test mode ------------------------------------------------------------------------------


def set_testing(testing: bool, *, attempts: int | None = None) -> None:
    """Switch test mode on or off for every svcclient client in the process.

    While on, retry backoff sleeps are skipped. ``attempts`` (default ``None``: each
    policy's own number) caps the attempts per call; ``attempts=1`` turns retries off.

    >>> set_testing(True, attempts=1)
    >>> set_testing(False)
    """
    set_state(testing, attempts)


def is_testing() -> bool:
    """True while test mode is on."""
    from .._pipeline.testmode import is_testing as _is

    return _is()


@contextlib.contextmanager
def no_retry_sleeps(*, attempts: int | None = None) -> Iterator[None]:
    """Test mode inside a ``with`` block: retries still happen, instantly.

    Restores the previous state on exit (blocks may nest).

    >>> with no_retry_sleeps():
    ...     client.get("/flaky")      # 3 attempts, no backoff wait    # doctest: +SKIP
    """
    previous = set_state(True, attempts)
    try:
        yield
    finally:
        set_state(*previous)


def no_retries() -> contextlib.AbstractContextManager[None]:
    """Test mode with one attempt per call: no retries, no sleeps."""
    return no_retry_sleeps(attempts=1)


# -- fake clock -----------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when told to.

    ``clock()`` reads it, ``clock.sleep(s)`` / ``await clock.asleep(s)`` / ``advance(s)``
    move it forward, and ``sleeps`` records every sleep asked for.

    >>> clock = FakeClock()
    >>> clock.sleep(0.5); clock()
    0.5
    """

    __slots__ = ("now", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance the clock instead of waiting."""
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        """Async :meth:`sleep` (yields to the loop once, waits no real time)."""
        import anyio

        self.sleep(seconds)
        await anyio.sleep(0)


# -- scripted transports ----------------------------------------------------------------------

_ERROR_KINDS: Final = frozenset(
    {"refuse", "timeout", "read_timeout", "connect_timeout", "reset", "dns", "protocol_error"}
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response: ``status``, ``headers``, a body (``json`` or ``content``)
    and ``delay`` seconds of latency before it (slept with the transport's ``sleep``).

    ``reset_after`` > 0 sends the headers and that many body bytes, then fails reading
    the rest with ``httpx.ReadError`` (a connection reset mid-body).

    >>> Reply(503, headers={"Retry-After": "1"})
    >>> Reply(200, json={"id": 1}, delay=0.05)
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    delay: float = 0.0
    reset_after: int = 0

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be 100-599, not {self.status!r}")
        if self.delay < 0 or self.reset_after < 0:
            raise ValueError("delay and reset_after must be >= 0")


Outcome: TypeAlias = (
    int | str | Reply | httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]
)
"""One scripted outcome (see :class:`FaultTransport`)."""


class _ResetStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that yields its first bytes, then fails as a reset connection would."""

    def __init__(self, head: bytes, request: httpx.Request) -> None:
        self._head = head
        self._request = request

    def _error(self) -> httpx.ReadError:
        cause = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        error = httpx.ReadError("[Errno 104] Connection reset by peer", request=self._request)
        error.__cause__ = cause
        return error

    def __iter__(self) -> Iterator[bytes]:
        if self._head:
            yield self._head
        raise self._error()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._head:
            yield self._head
        raise self._error()


def _transport_error(kind: str, request: httpx.Request) -> httpx.TransportError:
    """The httpx error a real transport raises for ``kind``, with an OS-level cause."""
    error: httpx.TransportError
    cause: BaseException | None = None
    if kind == "refuse":
        cause = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        error = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    elif kind in ("timeout", "read_timeout"):
        cause = TimeoutError("timed out")
        error = httpx.ReadTimeout("timed out", request=request)
    elif kind == "connect_timeout":
        cause = TimeoutError("timed out")
        error = httpx.ConnectTimeout("timed out", request=request)
    elif kind == "dns":
        error = httpx.ConnectError("[Errno -2] Name or service not known", request=request)
    elif kind == "protocol_error":
        error = httpx.RemoteProtocolError("illegal status line", request=request)
    else:  # pragma: no cover - guarded by _ERROR_KINDS
        raise ValueError(kind)
    error.__cause__ = cause
    return error


class _Script:
    """The shared, thread-safe core of both transports: outcomes and bookkeeping."""

    def __init__(self, outcomes: Iterable[Outcome], default: Outcome) -> None:
        self._outcomes = list(outcomes)
        for outcome in [*self._outcomes, default]:
            _check_outcome(outcome)
        self._default = default
        self._lock = threading.Lock()
        self.requests: list[httpx.Request] = []
        self._counts: Counter[tuple[str, str]] = Counter()

    def next(self, request: httpx.Request) -> Outcome:
        with self._lock:
            self.requests.append(request)
            self._counts[request.method, request.url.path] += 1
            return self._outcomes.pop(0) if self._outcomes else self._default

    def push(self, outcomes: Iterable[Outcome]) -> None:
        items = list(outcomes)
        for outcome in items:
            _check_outcome(outcome)
        with self._lock:
            self._outcomes.extend(items)

    def pending(self) -> int:
        with self._lock:
            return len(self._outcomes)

    def count(self, method: str | None, path: str | None) -> int:
        m = method.upper() if method else None
        with self._lock:
            return sum(
                n
                for (rm, rp), n in self._counts.items()
                if (m is None or rm == m) and (path is None or rp == path)
            )


def _check_outcome(outcome: object) -> None:
    if isinstance(outcome, bool):
        raise TypeError("a scripted outcome cannot be a bool")
    if isinstance(outcome, int) and not 100 <= outcome <= 599:
        raise ValueError(f"scripted status must be 100-599, not {outcome!r}")
    if isinstance(outcome, str) and outcome not in _ERROR_KINDS:
        raise ValueError(f"unknown scripted outcome {outcome!r}; known: {sorted(_ERROR_KINDS)}")


def _delay_of(outcome: Outcome) -> float:
    return outcome.delay if isinstance(outcome, Reply) else 0.0


def _respond(outcome: Outcome, request: httpx.Request) -> httpx.Response:
    """Turn a non-delayed outcome into a response, or raise its error."""
    if isinstance(outcome, str):
        if outcome != "reset":
            raise _transport_error(outcome, request)
        outcome = Reply(200, reset_after=8)
    if isinstance(outcome, BaseException):
        if isinstance(outcome, httpx.RequestError):
            outcome.request = request
        raise outcome
    if isinstance(outcome, httpx.Response):
        return outcome
    if isinstance(outcome, int):
        outcome = Reply(outcome)
    if isinstance(outcome, Reply):
        body = outcome.content
        headers = dict(outcome.headers)
        if body is None:
            doc = outcome.json
            if doc is None:
                doc = {"status": outcome.status, "method": request.method, "path": request.url.path}
            body = json.dumps(doc).encode()
            headers.setdefault("Content-Type", "application/json")
        if outcome.reset_after:
            headers["Content-Length"] = str(len(body))
            return httpx.Response(
                outcome.status,
                headers=headers,
                stream=_ResetStream(body[: outcome.reset_after], request),
                request=request,
            )
        return httpx.Response(outcome.status, headers=headers, content=body, request=request)
    return outcome(request)


class _Scripted:
    """What both scripted transports are: a script, its bookkeeping, and the reply."""

    def __init__(self, outcomes: Iterable[Outcome], default: Outcome) -> None:
        self._script = _Script(outcomes, default)

    @property
    def requests(self) -> list[httpx.Request]:
        """Every request received, oldest first."""
        return list(self._script.requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally only one method and/or URL path."""
        return self._script.count(method, path)

    @property
    def pending(self) -> int:
        """Scripted outcomes not used yet."""
        return self._script.pending()

    def push(self, outcomes: Iterable[Outcome]) -> None:
        """Append outcomes to the script."""
        self._script.push(outcomes)

    def _next(self, request: httpx.Request) -> tuple[Outcome, float]:
        outcome = self._script.next(request)
        return outcome, _delay_of(outcome)


class FaultTransport(_Scripted, httpx.BaseTransport):
    """An httpx transport that plays a script of outcomes, one per request, then ``default``.

    Outcomes:

    * ``200``, ``503`` ... - that status with a small JSON body;
      :class:`Reply` for headers (``Retry-After``), a body, latency or a mid-body reset;
    * ``"refuse"`` - ``httpx.ConnectError`` caused by ``ConnectionRefusedError``
      (ECONNREFUSED: classified ``connect_refused``);
    * ``"timeout"`` / ``"read_timeout"`` - ``httpx.ReadTimeout``;
      ``"connect_timeout"`` - ``httpx.ConnectTimeout``;
    * ``"reset"`` - headers, then ``httpx.ReadError`` mid-body (connection reset);
    * ``"dns"`` - a name-resolution ``ConnectError``; ``"protocol_error"`` - a garbled reply;
    * an ``httpx.Response``, an exception instance (raised), or ``fn(request) -> Response``.

    ``default`` (200) answers once the script is used up. Latency is slept with ``sleep``
    (default ``time.sleep``; pass ``FakeClock().sleep`` to spend no real time).
    ``requests`` records every request; ``count(method, path)`` counts them.

    >>> transport = FaultTransport([Reply(503, headers={"Retry-After": "0"}), "reset", 200])
    >>> client = ServiceClient("user-service", transport=transport)   # doctest: +SKIP
    """

    def __init__(
        self,
        outcomes: Iterable[Outcome] = (),
        *,
        default: Outcome = 200,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(outcomes, default)
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Play the next outcome for ``request``."""
        outcome, delay = self._next(request)
        if delay:
            self._sleep(delay)
        return _respond(outcome, request)


async def _anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


class AsyncFaultTransport(_Scripted, httpx.AsyncBaseTransport):
    """The async twin of :class:`FaultTransport` (``sleep`` is awaited; default
    ``anyio.sleep``, so asyncio and trio both work; or ``FakeClock().asleep``)."""

    def __init__(
        self,
        outcomes: Iterable[Outcome] = (),
        *,
        default: Outcome = 200,
        sleep: Callable[[float], Awaitable[None]] = _anyio_sleep,
    ) -> None:
        super().__init__(outcomes, default)
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Play the next outcome for ``request``."""
        outcome, delay = self._next(request)
        if delay:
            await self._sleep(delay)
        return _respond(outcome, request)


# -- mock_service -----------------------------------------------------------------------------

_router_class: dict[str, type[Any]] = {}  # built on first use: respx is imported lazily


def _service_router_class() -> type[Any]:
    """A respx MockRouter that, while active, has svcclient skip DNS for its host."""
    cached = _router_class.get("router")
    if cached is not None:
        return cached
    import respx

    class ServiceRouter(respx.MockRouter):
        def __init__(
            self, *, mock_host: str | None = None, mock_service: str = "", **settings: Any
        ) -> None:
            super().__init__(**settings)
            self.mock_host = mock_host
            self.mock_service = mock_service
            self.mock_base_url = settings.get("base_url")
            self._host_mocked = False

        def __call__(self, func: Any = None, **settings: Any) -> Any:
            if func is None:  # ``router(...)`` makes a fresh router: keep host and URL
                settings.setdefault("base_url", self.mock_base_url)
                return type(self)(
                    mock_host=self.mock_host, mock_service=self.mock_service, **settings
                )
            return super().__call__(func, **settings)

        def start(self) -> None:
            if self.mock_host and not self._host_mocked:
                mock_host(self.mock_host)
                self._host_mocked = True
            super().start()

        def stop(self, clear: bool = True, reset: bool = True, quiet: bool = False) -> None:
            try:
                super().stop(clear=clear, reset=reset, quiet=quiet)
            finally:
                if self.mock_host and self._host_mocked:
                    unmock_host(self.mock_host)
                    self._host_mocked = False

        @contextlib.contextmanager
        def resolver(self, request: httpx.Request) -> Iterator[Any]:
            try:
                with super().resolver(request) as resolved:
                    yield resolved
            except respx.models.AllMockedAssertionError as exc:
                # Say which URL this router mocks: a client built with another url= (or
                # config) calls somewhere else.
                raise respx.models.AllMockedAssertionError(
                    f"{exc} -- mock_service({self.mock_service!r}) mocks "
                    f"{self.mock_base_url}; pass mock_service the url= (and config) you "
                    f"give ServiceClient if the client calls elsewhere"
                ) from None

    _router_class["router"] = ServiceRouter
    return ServiceRouter


def mock_service(
    service: str | ServiceConfig,
    *,
    url: str | None = None,
    assert_all_called: bool = False,
    assert_all_mocked: bool = True,
    **config: Any,
) -> respx.MockRouter:
    """A respx router bound to the base URL a ``ServiceClient`` of ``service`` calls.

    Give it what you give the client: ``mock_service("user-service",
    url="http://user-service:3000")`` mocks what ``ServiceClient("user-service",
    url="http://user-service:3000")`` calls. The URL is worked out exactly as the client
    does it: ``service`` is a name (then ``$SVCCLIENT_CONFIG`` and ``SVCCLIENT_<NAME>__*``
    apply) or a :class:`ServiceConfig`; ``url`` and other ``config`` keywords
    (``namespace``, ``port``, ``cluster_domain``...) override it; the discovery rules
    (``<NAME>_URL``, the kubelet variables, ``url``, cluster DNS) then pick the URL.

    Use it as a context manager (sync or async) or decorator; while active, requests to
    that URL are answered by the routes you add, unmatched ones fail
    (``assert_all_mocked``, with a message naming the mocked URL), and svcclient skips
    the DNS lookup of its host (no resolver is patched: the runtime asks test mode).

    >>> with mock_service("user-service", url="http://user-service:3000") as users:
    ...     users.get("/users/1").respond(json={"id": 1, "name": "Ada"})
    ...     ServiceClient("user-service", url="http://user-service:3000").get("/users/1")
    <Response [200 OK]>

    Raises ``ImportError`` with an install hint when respx is missing.
    """
    try:
        import respx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - respx is installed with the tests
        raise ImportError(
            "svcclient.testing.mock_service needs respx: pip install 'svcclient[testing]' "
            "(or pip install respx)"
        ) from exc
    from .._config.sources import resolve_config
    from .._pipeline.service_state import discover_service

    overrides = dict(config)
    if url is not None:
        overrides["url"] = url
    if isinstance(service, str):
        resolved = resolve_config(service, overrides)
    else:
        resolved = service.with_overrides(**overrides) if overrides else service
    base_url = discover_service(resolved).url
    router_cls = _service_router_class()
    router: respx.MockRouter = router_cls(
        base_url=base_url,
        assert_all_called=assert_all_called,
        assert_all_mocked=assert_all_mocked,
        mock_host=httpx.URL(base_url).host,
        mock_service=resolved.name,
    )
    return router
