"""A small local HTTP/1.1 server that misbehaves on demand, for tests and the demo.

Theory of operation
-------------------
``FaultServer`` runs plain asyncio (HTTP parsing by h11, which httpx already depends on)
on its own event loop in a daemon thread, so sync tests, async tests and the CLI demo can
all use it.  Every request takes one ``Fault`` from the *script*: first the per-request
queue filled by ``push_faults``, else the standing fault from ``set_fault`` (``Fault.ok()``
at start).  The request is recorded (``requests``, ``count``) *before* the fault is acted
on, so when the client sees the failure the server has already counted the request.

Faults::

    Fault.ok()                       200 + JSON {"server", "method", "path"[, "headers"]}
    Fault.status(503, retry_after=2) any status, headers and body
    Fault.refuse()                   stop listening (set_fault only; or .refuse()/.resume())
    Fault.reset()                    read the request, then close with RST (SO_LINGER 0)
    Fault.close()                    read the request, then close cleanly with no response
    Fault.stall_before_headers(s)    wait s seconds before the status line
    Fault.stall_mid_body(s)          headers + part of the body, wait s, then the rest
    Fault.slow(0.2) / slow(fn) / slow(fraction=0.1, after=1.0)
                                     delay, then respond (``then``, default ok)
    Fault.truncated()                Content-Length larger than the body, then close
    Fault.malformed()                a garbage status line, then close
    Fault.dribble(0.2, total=None)   headers, then ``size`` byte(s) every 0.2 s: for
                                     ``total`` bytes, or until MAX_FAULT_SECONDS
    Fault.dribble_headers(0.2)       the status line, then a header one byte every 0.2 s
    Fault.endless_chunked(0.0)       a chunked body that never ends (a chunk every
                                     ``interval`` s; 0: as fast as the client reads)
    Fault.accept_never_answer()      read the request, never reply, keep the connection
    Fault.never_accept()             the listener stays open but never accepts: its
                                     backlog is full, so connects hang (set_fault only)
    Fault.upgrade()                  101 Switching Protocols, then echo raw bytes back

A request id can be echoed with the default body: it names the full request target
(``GET /echo/<id>`` answers ``{"path": "/echo/<id>", ...}``) and, with
``echo_headers``, every header received.  ``open_connections`` counts the server's side
of each connection; the long-running faults (dribble, endless, accept-never-answer,
upgrade) notice at once when the client closes, so a test can check that a client left
nothing open.

Safety: binds loopback addresses only (127.0.0.0/8, ::1); every wait is bounded by
``MAX_FAULT_SECONDS``; ``stop()`` aborts connections, cancels tasks and joins the thread
with a timeout, so it cannot hang.

>>> with FaultServer("127.0.0.2", name="users") as srv:       # doctest: +SKIP
...     srv.push_faults([Fault.status(503, retry_after=1), Fault.ok()])
...     httpx.get(srv.url + "/users/1").status_code
503
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import math
import select
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple

import h11

from .._exceptions import ConfigError

__all__ = ["MAX_FAULT_SECONDS", "Fault", "FaultServer", "RecordedRequest"]

MAX_FAULT_SECONDS: Final = 600.0
_KINDS: Final = frozenset(
    {
        "ok",
        "status",
        "refuse",
        "reset",
        "close",
        "stall_before_headers",
        "stall_mid_body",
        "slow",
        "truncated",
        "malformed",
        "dribble",
        "dribble_headers",
        "endless_chunked",
        "accept_never_answer",
        "never_accept",
        "upgrade",
    }
)
# Server states rather than replies: set_fault only, never queued or used as ``then``.
_STATES: Final = frozenset({"refuse", "never_accept"})
_STOP_TIMEOUT: Final = 5.0

HeaderArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _headers(h: HeaderArg) -> tuple[tuple[str, str], ...]:
    if h is None:
        return ()
    items = h.items() if isinstance(h, Mapping) else h
    return tuple((str(k), str(v)) for k, v in items)


def _check_seconds(key: str, value: float) -> float:
    if not (math.isfinite(value) and 0 <= value <= MAX_FAULT_SECONDS):
        raise ConfigError(None, key, value, f"must be between 0 and {MAX_FAULT_SECONDS:g} s")
    return float(value)


class _EveryNth:
    """Delay exactly ``fraction`` of calls by ``after`` seconds, spread evenly.

    Deterministic on purpose: "10 % of requests after 1 s" over 2,000 requests is exactly
    200 slow ones, so benchmark runs compare like with like.
    """

    __slots__ = ("_count", "after", "fraction")

    def __init__(self, fraction: float, after: float) -> None:
        self.fraction = fraction
        self.after = after
        self._count = itertools.count()

    def __call__(self) -> float:
        i = next(self._count)
        # Slow when the running total of "owed" slow requests crosses an integer.
        slow = math.floor((i + 1) * self.fraction) > math.floor(i * self.fraction)
        return self.after if slow else 0.0

    def __repr__(self) -> str:
        return f"{self.fraction:.0%} after {self.after:g}s"


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted server behaviour; build them with the static constructors
    (``Fault.ok()``, ``Fault.status(503)``, ``Fault.reset()`` ...)."""

    kind: str
    code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # None: the JSON echo body
    seconds: float = 0.0
    delay: Callable[[], float] | None = None
    then: Fault | None = None
    echo_headers: bool = False
    missing: int = 0  # truncated: bytes promised by Content-Length but never sent
    size: int = 1  # dribble / endless_chunked: bytes per write
    total: int | None = None  # dribble: bytes in all (None: no end)
    lasting: float = MAX_FAULT_SECONDS  # dribble / endless_chunked: then abort the connection

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(None, "kind", self.kind, f"must be one of {sorted(_KINDS)}")
        if not (200 <= self.code <= 599 or (self.kind == "upgrade" and self.code == 101)):
            raise ConfigError(None, "status", self.code, "must be 200-599")
        if self.kind == "truncated" and self.missing < 1:
            raise ConfigError(None, "missing", self.missing, "must be >= 1")
        _check_seconds("seconds", self.seconds)
        _check_seconds("lasting", self.lasting)
        if self.kind in ("dribble", "dribble_headers") and self.seconds <= 0:
            raise ConfigError(None, "interval", self.seconds, "must be > 0")
        if not 1 <= self.size <= 1 << 20:
            raise ConfigError(None, "size", self.size, "must be 1 - 1 MiB")
        if self.total is not None and self.total < 1:
            raise ConfigError(None, "total", self.total, "must be >= 1 (or None: no end)")
        if self.then is not None and self.then.kind in _STATES:
            raise ConfigError(None, "then", self.then.kind, "a server state, not a reply")

    # -- constructors -------------------------------------------------------------------

    @staticmethod
    def ok(
        status: int = 200,
        *,
        body: bytes | str | None = None,
        headers: HeaderArg = None,
        echo_headers: bool = False,
    ) -> Fault:
        """A normal response; the default body is JSON naming the server, method and path
        (plus the received headers when ``echo_headers``)."""
        raw = body.encode() if isinstance(body, str) else body
        return Fault("ok", status, _headers(headers), raw, echo_headers=echo_headers)

    @staticmethod
    def status(
        code: int,
        headers: HeaderArg = None,
        body: bytes | str = b"",
        *,
        retry_after: float | None = None,
    ) -> Fault:
        """Respond ``code`` (e.g. 503, 429) with these headers and body;
        ``retry_after`` adds a ``Retry-After`` header (seconds)."""
        hs = _headers(headers)
        if retry_after is not None:
            hs += (("Retry-After", f"{retry_after:g}"),)
        raw = body.encode() if isinstance(body, str) else body
        return Fault("status", code, hs, raw)

    @staticmethod
    def refuse() -> Fault:
        """Stop listening: new connections are refused (``httpx.ConnectError``).
        Only for ``set_fault``; any later ``set_fault`` of another kind listens again."""
        return Fault("refuse")

    @staticmethod
    def reset() -> Fault:
        """Read the request, then abort the connection with a TCP RST."""
        return Fault("reset")

    @staticmethod
    def close() -> Fault:
        """Read the request, then close the connection cleanly without answering."""
        return Fault("close")

    @staticmethod
    def stall_before_headers(seconds: float, then: Fault | None = None) -> Fault:
        """Wait ``seconds`` before sending anything, then reply ``then`` (default ok)."""
        return Fault("stall_before_headers", seconds=seconds, then=then)

    @staticmethod
    def stall_mid_body(seconds: float) -> Fault:
        """Send the headers and the first part of a ~2 KB body, wait ``seconds``, then the rest."""
        return Fault("stall_mid_body", seconds=seconds)

    @staticmethod
    def slow(
        delay: float | Callable[[], float] | None = None,
        *,
        fraction: float | None = None,
        after: float | None = None,
        then: Fault | None = None,
    ) -> Fault:
        """Delay, then reply ``then`` (default ok).

        ``slow(0.2)``: every request waits 0.2 s.  ``slow(lambda: rng.expovariate(50))``: a
        distribution (results are clamped to ``[0, MAX_FAULT_SECONDS]``).
        ``slow(fraction=0.1, after=1.0)``: exactly 10 % of requests, evenly spread, wait 1 s.
        """
        if fraction is not None or after is not None:
            if delay is not None or fraction is None or after is None:
                raise ConfigError(None, "slow", delay, "give delay, or fraction with after")
            if not 0 <= fraction <= 1:
                raise ConfigError(None, "fraction", fraction, "must be between 0 and 1")
            delay_fn = _EveryNth(fraction, _check_seconds("after", after))
            return Fault("slow", delay=delay_fn, then=then)
        if delay is None:
            raise ConfigError(None, "slow", None, "give delay, or fraction with after")
        if callable(delay):
            return Fault("slow", delay=delay, then=then)
        return Fault("slow", seconds=delay, then=then)

    @staticmethod
    def truncated(missing: int = 100) -> Fault:
        """Declare ``missing`` more bytes in Content-Length than are sent, then close."""
        return Fault("truncated", missing=missing)

    @staticmethod
    def malformed(data: bytes = b"HTTP/1.1 OOPS not-a-status\r\n\r\n") -> Fault:
        """Send ``data`` (a garbage status line by default) and close."""
        return Fault("malformed", body=data)

    @staticmethod
    def dribble(
        interval: float,
        *,
        total: int | None = None,
        size: int = 1,
        lasting: float = MAX_FAULT_SECONDS,
    ) -> Fault:
        """Send the headers at once, then ``size`` byte(s) of body every ``interval`` s.

        ``total``: the body's length (``Content-Length``), after which the response is
        complete; None: ``Content-Length`` promises far more and the dribble goes on until
        the client leaves, or for ``lasting`` seconds, after which the connection is
        closed mid-body.  Every single read succeeds well within any read timeout longer
        than ``interval``: only a bound on the whole body stops it.
        """
        return Fault("dribble", seconds=interval, size=size, total=total, lasting=lasting)

    @staticmethod
    def dribble_headers(interval: float, *, lasting: float = MAX_FAULT_SECONDS) -> Fault:
        """Send the status line, then one byte of a header value every ``interval`` s:
        the response head never completes (for ``lasting`` seconds, then the connection
        is closed).  No read ever times out; only a bound on the whole call stops it."""
        return Fault("dribble_headers", seconds=interval, lasting=lasting)

    @staticmethod
    def endless_chunked(
        interval: float = 0.0, *, size: int = 1024, lasting: float = MAX_FAULT_SECONDS
    ) -> Fault:
        """A ``Transfer-Encoding: chunked`` body of ``size``-byte chunks that never ends:
        one chunk every ``interval`` s (0: as fast as the client takes them), until the
        client leaves, or for ``lasting`` seconds, after which the connection is closed
        without the last chunk."""
        return Fault("endless_chunked", seconds=interval, size=size, lasting=lasting)

    @staticmethod
    def accept_never_answer() -> Fault:
        """Read the request, then send nothing, ever: the connection stays open (the
        server keeps reading and dropping what comes) until the client closes it or
        ``MAX_FAULT_SECONDS``.  Only a timeout on the client's side ends the wait."""
        return Fault("accept_never_answer")

    @staticmethod
    def never_accept() -> Fault:
        """The port keeps listening but never accepts: the listener's backlog is filled
        (by the server's own placeholder connections), so the kernel drops new SYNs and a
        client's connect hangs until its connect timeout (a frozen process, a SYN flood).
        Only for ``set_fault``; any later ``set_fault`` of another kind accepts again."""
        return Fault("never_accept")

    @staticmethod
    def upgrade(protocol: str = "echo") -> Fault:
        """Answer ``101 Switching Protocols`` (``Upgrade: <protocol>``), then speak a
        trivial protocol on the raw connection: every byte received is sent back, until
        the client closes (or ``MAX_FAULT_SECONDS``).  Bytes the client sent right after
        the request head are echoed too."""
        return Fault("upgrade", 101, (("Upgrade", protocol), ("Connection", "Upgrade")))


class RecordedRequest(NamedTuple):
    """A request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultServer:
    """A local HTTP/1.1 server driven by a fault script (see the module docstring).

    ``host`` must be a loopback address (default ``127.0.0.1``; any 127.x, ``::1`` or
    ``localhost``); ``port=0`` picks a free port.  ``name`` (default ``host:port``) is
    echoed in the default JSON body so a test can see which server answered.
    ``echo_headers=True`` makes every default body include the received headers.
    ``requests`` keeps the last ``max_recorded`` requests (default 10,000) so long
    benchmark runs stay flat in memory; ``count`` stays exact for any number.

    >>> with FaultServer("127.0.0.3", name="b") as srv:         # doctest: +SKIP
    ...     srv.set_fault(Fault.status(429, retry_after=2))
    ...     r = httpx.get(srv.url + "/x")
    ...     (r.status_code, r.headers["retry-after"], srv.count("GET", "/x"))
    (429, '2', 1)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str | None = None,
        echo_headers: bool = False,
        max_recorded: int = 10_000,
    ) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        if not _is_loopback(host):
            raise ValueError(f"FaultServer binds loopback addresses only, not {host!r}")
        if not 0 <= port < 65536:
            raise ValueError(f"port must be 0-65535, not {port!r}")
        self.host = str(ipaddress.ip_address(host))
        self.port = port
        self._name = name
        self.echo_headers = echo_headers
        self._lock = threading.Lock()
        self._default = Fault.ok()
        self._queue: deque[Fault] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=max(1, max_recorded))
        # Exact counts by (method, path without query), independent of the bounded log.
        self._counts: Counter[tuple[str, str]] = Counter()
        self._accepted = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._stop_event: asyncio.Event | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._plugged: list[socket.socket] = []  # never_accept: listener + backlog fillers
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name echoed in default bodies."""
        return self._name or f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def listening(self) -> bool:
        """True while the server accepts connections (False after ``refuse()``,
        ``stop()`` and while ``Fault.never_accept()`` holds the port)."""
        return self._server is not None

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests (the last ``max_recorded``), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> int:
        """How many TCP connections were accepted (keep-alive reuse shows as fewer)."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Connections currently open on the server side."""
        return len(self._conns)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally only one method and/or path.  A ``path`` without
        ``?`` matches regardless of the query string (exact for any number of requests);
        a ``path`` with ``?`` is matched in the recorded log (the last ``max_recorded``)."""
        m = method.upper() if method else None
        with self._lock:
            if path is not None and "?" in path:
                return sum(
                    1 for r in self._requests if r.path == path and (m is None or r.method == m)
                )
            return sum(
                n
                for (rm, rp), n in self._counts.items()
                if (m is None or rm == m) and (path is None or rp == path)
            )

    def clear(self) -> None:
        """Forget recorded requests and counts (the fault script is kept)."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()

    def set_fault(self, fault: Fault) -> None:
        """Apply ``fault`` to every later request (after any queued ``push_faults``).
        ``Fault.refuse()`` stops listening; any other fault resumes listening."""
        if fault.kind == "refuse":
            self.refuse()
            return
        if fault.kind == "never_accept":
            self._call(self._plug())
            return
        with self._lock:
            self._default = fault
        if self._thread is not None and not self.listening:
            self.resume()

    def push_faults(self, faults: Iterable[Fault]) -> None:
        """Queue faults for the next requests, one each, before the standing fault."""
        items = list(faults)
        for f in items:
            if f.kind in _STATES:
                raise ConfigError(None, "fault", f.kind, "a server state: use set_fault")
        with self._lock:
            self._queue.extend(items)

    def refuse(self) -> None:
        """Close the listening socket and every open connection: new connections get
        ECONNREFUSED, as when the process behind the port has died."""
        self._call(self._close_listener(abort_connections=True))

    def resume(self) -> None:
        """Listen again on the same host and port."""
        self._call(self._listen())

    def start(self) -> FaultServer:
        """Start the server thread; returns once the socket listens (5 s at most)."""
        if self._thread is not None:
            raise RuntimeError("FaultServer already started")
        self._thread = threading.Thread(
            target=self._run, name=f"FaultServer-{self.host}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(_STOP_TIMEOUT):
            raise RuntimeError("FaultServer did not start within 5 s")
        if self._start_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        """Stop listening, abort connections, cancel handlers and join the thread.
        Bounded: never waits more than ~5 s; calling it twice is harmless."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                loop.call_soon_threadsafe(event.set)
        thread.join(_STOP_TIMEOUT)
        self._thread = None
        if thread.is_alive():
            raise RuntimeError("FaultServer thread did not stop within 5 s")

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultServer {self.name} {self.url} fault={self._default.kind}>"

    # -- loop thread ------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            coro.close()  # never scheduled: close it so no "never awaited" warning fires
            raise RuntimeError("FaultServer is not running")
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        fut.result(_STOP_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start(); never leave start() waiting
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            await self._listen()
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._close_listener(abort_connections=True)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._unplug()
        server = await asyncio.start_server(
            self._on_connect, self.host, self.port, reuse_address=True, backlog=256
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server

    async def _close_listener(self, *, abort_connections: bool) -> None:
        server, self._server = self._server, None
        if server is not None:
            # CPython 3.11: an accept already scheduled when Server.close() runs fails in
            # Server._attach and leaks its socket. Stop accepting first, let accepts under
            # way finish, then close.
            loop = asyncio.get_running_loop()
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            await asyncio.sleep(0.005)
            server.close()
        if abort_connections:
            tasks = list(self._conns)
            for writer in list(self._conns.values()):
                writer.transport.abort()
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _STOP_TIMEOUT)
        self._unplug()

    async def _plug(self) -> None:
        """Listen on the port with a full backlog and never accept (``never_accept``)."""
        await self._close_listener(abort_connections=True)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        self._plugged.append(listener)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(0)
        # Fill the accept queue with our own connections until one no longer completes:
        # from then on the kernel drops every SYN to this port (Linux holds backlog + 1).
        for _ in range(16):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            self._plugged.append(filler)
            if filler.connect_ex((self.host, self.port)) == 0:
                continue
            _, writable, _ = select.select([], [filler], [], 0.1)
            if not writable or filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return  # this one hangs: the queue is full
        raise RuntimeError("could not fill the listen backlog")  # pragma: no cover

    def _unplug(self) -> None:
        plugged, self._plugged = self._plugged, []
        for sock in plugged:
            sock.close()

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Registered here, synchronously, not inside the handler: a handler task cancelled
        # before it ever ran (stop() right after a connect) would otherwise leak its socket.
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._conns[task] = writer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._accepted += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader, writer)
                if request is None:
                    return
                fault = self._next_fault()
                with self._lock:
                    self._requests.append(request)
                    self._counts[request.method, request.path.partition("?")[0]] += 1
                if not await self._reply(fault, conn, request, reader, writer):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # Connection: close, HTTP/1.0 ...
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, OSError):
            pass  # the client went away or spoke nonsense: that connection is over
        except asyncio.CancelledError:
            # stop()/refuse() cancel handlers.  Ending normally instead of re-raising is
            # deliberate: Python 3.11's stream callback logs cancelled handler tasks as
            # errors, and nothing awaits this task except our own bounded asyncio.wait.
            return
        finally:
            self._conns.pop(task, None)
            writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> RecordedRequest | None:
        head: h11.Request | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                writer.write(
                    f"HTTP/1.1 {status} Bad Request\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                return None
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)  # b"" tells h11 the peer closed
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers: dict[str, str] = {}
                for k, v in head.headers:
                    name = k.decode("latin-1")
                    value = v.decode("latin-1")
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
                return RecordedRequest(
                    head.method.decode("ascii"), head.target.decode("latin-1"), headers
                )
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            # h11.Data: request bodies are read and dropped; only their arrival matters.

    def _body(self, fault: Fault, req: RecordedRequest) -> bytes:
        if fault.body is not None:
            return fault.body
        doc: dict[str, object] = {"server": self.name, "method": req.method, "path": req.path}
        if fault.echo_headers or self.echo_headers:
            doc["headers"] = req.headers
        return json.dumps(doc).encode()

    def _head(
        self, fault: Fault, conn: h11.Connection, length: int, content_type: str | None
    ) -> bytes:
        headers = list(fault.headers)
        if content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", content_type))
        if fault.code not in (204, 304):
            headers.append(("Content-Length", str(length)))
        return conn.send(h11.Response(status_code=fault.code, headers=headers)) or b""

    async def _reply(
        self,
        fault: Fault,
        conn: h11.Connection,
        req: RecordedRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Act out ``fault``; True when the connection may serve another request."""
        kind = fault.kind
        if kind == "stall_before_headers":
            # Watching the client while stalling: one that gives up is let go at once.
            if await _client_leaves(reader, fault.seconds):
                return False
            fault = fault.then or Fault.ok()
            kind = fault.kind
        elif kind == "slow":
            wait = fault.seconds if fault.delay is None else fault.delay()
            await asyncio.sleep(min(max(float(wait), 0.0), MAX_FAULT_SECONDS))
            fault = fault.then or Fault.ok()
            kind = fault.kind
        if kind == "accept_never_answer":
            await _client_leaves(reader, MAX_FAULT_SECONDS)
            return False
        if kind == "dribble_headers":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Dribble: ")
            await writer.drain()
            give_up = asyncio.get_running_loop().time() + fault.lasting
            while asyncio.get_running_loop().time() < give_up:
                if await _client_leaves(reader, fault.seconds):
                    break
                writer.write(b".")
                await writer.drain()
            return False
        if kind == "dribble":
            return await self._dribble(fault, conn, reader, writer)
        if kind == "endless_chunked":
            await self._endless(fault, conn, reader, writer)
            return False
        if kind == "upgrade":
            await _upgrade(fault, conn, reader, writer)
            return False
        if kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger on, timeout 0: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "close":
            writer.close()
            return False
        if kind == "malformed":
            writer.write(fault.body or b"")
            await writer.drain()
            writer.close()
            return False
        is_head = req.method == "HEAD"
        body = self._body(fault, req)
        ctype = "application/json" if fault.body is None else None
        if kind == "truncated":
            writer.write(self._head(fault, conn, len(body) + fault.missing, ctype) + body)
            await writer.drain()
            writer.close()
            return False
        if kind == "stall_mid_body":
            # Pad the JSON with spaces (still valid JSON) so there is a middle to stall in.
            body = body + b" " * max(0, 2048 - len(body))
            cut = len(body) // 4
            writer.write(self._head(fault, conn, len(body), ctype) + body[:cut])
            await writer.drain()
            if await _client_leaves(reader, fault.seconds):
                return False
            writer.write(conn.send(h11.Data(data=body[cut:])) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            return True
        # ok / status
        out = self._head(fault, conn, len(body), ctype)
        if body and not is_head and fault.code not in (204, 304):
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        writer.write(out)
        await writer.drain()
        return True

    async def _dribble(
        self,
        fault: Fault,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        total = fault.total
        # No end given: promise far more than MAX_FAULT_SECONDS of dribbling can send.
        length = total if total is not None else 1 << 40
        writer.write(self._head(fault, conn, length, "application/octet-stream"))
        await writer.drain()
        give_up = asyncio.get_running_loop().time() + fault.lasting
        sent = 0
        while total is None or sent < total:
            if await _client_leaves(reader, fault.seconds):
                return False
            if asyncio.get_running_loop().time() > give_up:
                return False
            n = fault.size if total is None else min(fault.size, total - sent)
            writer.write(conn.send(h11.Data(data=b"." * n)) or b"")
            await writer.drain()
            sent += n
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return True

    async def _endless(
        self,
        fault: Fault,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        headers = [*fault.headers, ("Transfer-Encoding", "chunked")]
        headers.append(("Content-Type", "application/octet-stream"))
        writer.write(conn.send(h11.Response(status_code=fault.code, headers=headers)) or b"")
        chunk = b"." * fault.size
        loop = asyncio.get_running_loop()
        give_up = loop.time() + fault.lasting
        while loop.time() < give_up:
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()  # waits while the client does not read: flat memory
            if fault.seconds > 0:
                if await _client_leaves(reader, fault.seconds):
                    return
            else:
                await asyncio.sleep(0)  # let the loop see the client leave
                if reader.at_eof() or writer.is_closing():
                    return


async def _client_leaves(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as the client closes its side (what it sends
    meanwhile is read and dropped)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    return True


async def _upgrade(
    fault: Fault, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    # Written by hand, not through h11: h11 refuses a 101 to a request that did not ask
    # to upgrade, and a test may want exactly that.
    head = ["HTTP/1.1 101 Switching Protocols", *(f"{k}: {v}" for k, v in fault.headers)]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    early, _ = conn.trailing_data  # bytes the client sent right behind the request head
    if early:
        writer.write(early)
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(MAX_FAULT_SECONDS):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
