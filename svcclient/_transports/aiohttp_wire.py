"""The async wire on aiohttp: ``ServiceConfig(wire="aiohttp")``, extra ``svcclient[aiohttp]``.

Why: httpcore's async pool re-scans every queued request whenever a connection frees up,
so a burst of 1,000 requests costs it seconds; aiohttp's connector hands a freed
connection to one waiter and parses HTTP in C. Everything above the wire stays httpx:
``AsyncServiceClient`` builds ``httpx.Request`` objects, the pipeline sees
``httpx.Response`` objects and httpx exception types; only the bytes travel through an
``aiohttp.ClientSession``.

What is kept the same as the httpx wire: the request's URL, headers (``Host`` included)
and body; the TLS server name and certificate checks use the URL's host while a pinned
endpoint's connections dial its address (a resolver that always answers the endpoint);
per-request ``timeout`` extensions (connect, read, pool); redirects are httpx's job
(aiohttp's are off); content decoding and cookies are httpx's job (aiohttp's are off).
Errors map to the httpx types the pipeline classifies: ``ConnectError``,
``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``, ``ReadError``,
``RemoteProtocolError``.

Limits: asyncio only (aiohttp has no trio backend: selecting the wire under trio raises
``RuntimeError``); HTTP/1.1 only (``http2=True`` is refused); a request body is read into
memory before it is sent (it goes out in 64 KiB chunks, each bounded by the ``write``
timeout, which aiohttp itself does not have).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import httpx

from .._endpoint import Endpoint
from .._pipeline.extensions import BUFFER
from .memory_body import InMemoryBody

try:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'wire="aiohttp" needs the aiohttp extra: pip install "svcclient[aiohttp]"'
    ) from exc

__all__ = ["AiohttpTransport"]

_READ_CHUNK = 65_536


class _PinnedResolver(AbstractResolver):
    """Answers every lookup with one endpoint's address (the URL keeps the real name)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ep = self._endpoint
        fam = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": ep.host,
                "port": ep.port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_READ_CHUNK):
                yield chunk
        except Exception as exc:
            raise _translate(exc, self._request, connected=True) from exc

    async def aclose(self) -> None:
        self._response.release()


def _translate(exc: BaseException, request: httpx.Request, connected: bool) -> Exception:
    """The httpx exception for an aiohttp (or asyncio) failure."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(msg, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # sock_read: no data in time
        return httpx.ReadTimeout(msg, request=request)
    if isinstance(exc, TimeoutError):  # the connector's wait for a free connection
        kind = httpx.ReadTimeout if connected else httpx.PoolTimeout
        return kind(msg, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(msg, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(msg, request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed status line or headers
        return httpx.RemoteProtocolError(msg, request=request)
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return httpx.ReadError(msg, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.ReadError(msg, request=request)
    return exc if isinstance(exc, Exception) else RuntimeError(msg)


class _Writing:
    """A request body fed to aiohttp in chunks, each write bounded by httpx's ``write``
    timeout (aiohttp has none): before every chunk the timer around the request is set to
    now + ``write``; a chunk whose write stalls that long cancels the request. Only the
    request's task sets ``timer``, and clears it once the answer started (the rest of the
    body may still be on its way); after a failure aiohttp cancels the writer."""

    __slots__ = ("body", "timer", "transport", "write")

    def __init__(self, body: bytes, write: float | None) -> None:
        self.body = body
        self.write = write
        self.timer: asyncio.Timeout | None = None
        self.transport: asyncio.Transport | None = None  # the connection it goes out on

    async def chunks(self) -> AsyncIterator[memoryview]:
        view = memoryview(self.body)
        loop = asyncio.get_running_loop()
        for start in range(0, len(view), _READ_CHUNK):
            timer, write = self.timer, self.write
            if timer is not None and write is not None:
                timer.reschedule(loop.time() + write)
            yield view[start : start + _READ_CHUNK]
        timer = self.timer
        if timer is not None:
            timer.reschedule(None)  # sent: the wait for the answer is the read timeout's


_WRITING: ContextVar[_Writing | None] = ContextVar("svcclient_aiohttp_writing", default=None)


class _ClientRequest(aiohttp.ClientRequest):
    """Notes the connection a body goes out on (aiohttp's public ``request_class`` hook)."""

    async def send(self, conn: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        writing = _WRITING.get()
        if writing is not None:
            writing.transport = conn.transport
        return await super().send(conn)


# aiohttp's ClientTimeout per (pool, connect, read) timeouts: immutable, so shared by
# every request with the same ones (a client has one or two sets).
_TIMEOUTS: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}
_TIMEOUTS_MAX = 64


def _client_timeout(timeouts: dict[str, Any]) -> aiohttp.ClientTimeout:
    key = (timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read"))
    timeout = _TIMEOUTS.get(key)
    if timeout is None:
        if len(_TIMEOUTS) >= _TIMEOUTS_MAX:
            _TIMEOUTS.clear()
        timeout = _TIMEOUTS[key] = aiohttp.ClientTimeout(
            total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
        )
    return timeout


def _request(
    session: aiohttp.ClientSession,
    request: httpx.Request,
    timeouts: dict[str, Any],
    data: AsyncIterator[memoryview] | None,
) -> Awaitable[aiohttp.ClientResponse]:
    """aiohttp's request for ``request`` (awaitable; a plain function, no frame of its own).

    Header names go as the caller wrote them (``Headers.raw``, as httpcore sends them),
    decoded once with the headers' encoding.
    """
    encoding = request.headers.encoding
    headers = [(k.decode(encoding), v.decode(encoding)) for k, v in request.headers.raw]
    if data is not None and "transfer-encoding" in request.headers:
        # httpx's streamed body: aiohttp chunks an iterator of unknown size itself (and
        # refuses a Transfer-Encoding header next to its own).
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    return session.request(
        request.method,
        str(request.url),
        headers=headers,
        data=data,
        allow_redirects=False,
        compress=None,
        timeout=_client_timeout(timeouts),
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx async transport sending through one ``aiohttp.ClientSession``.

    ``endpoint`` pins every connection to one address (None: resolve the URL's host);
    ``verify`` is the SSL context (or False); ``limits`` sizes the connector like an
    httpx pool. The session is created on the first request (it needs a running loop).

    >>> client = httpx.AsyncClient(transport=AiohttpTransport())  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        http2: bool = False,
    ) -> None:
        if http2:
            raise ValueError('wire="aiohttp" speaks HTTP/1.1 only (http2=True)')
        self._endpoint = endpoint
        self._ssl: ssl.SSLContext | bool = verify
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError('wire="aiohttp" runs on asyncio only') from None
        limits = self._limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=limits.keepalive_expiry or 0.0,
            ssl=self._ssl,
            resolver=None if self._endpoint is None else _PinnedResolver(self._endpoint),
            use_dns_cache=self._endpoint is None,
        )
        self._loop = loop
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            request_class=_ClientRequest,
            # Cookies are httpx's (the client's jar, a request's Cookie header); aiohttp's
            # own jar would keep the server's cookies and add them to later requests.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the aiohttp session; the body streams from the response."""
        session = self._session
        if session is None or session.closed:
            session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            body = request.content  # read already (httpx reads in-memory bodies)
        except httpx.RequestNotRead:
            body = await request.aread()
        connected = False
        writing = _Writing(body, timeouts.get("write")) if body else None
        try:
            if writing is None:
                response = await _request(session, request, timeouts, None)
            else:
                token = _WRITING.set(writing)
                try:
                    async with asyncio.timeout(None) as timer:
                        writing.timer = timer
                        response = await _request(session, request, timeouts, writing.chunks())
                        writing.timer = None  # the rest of the body may still be on its way
                        timer.reschedule(None)
                finally:
                    _WRITING.reset(token)
            connected = True
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            if writing is not None and writing.timer is not None and writing.timer.expired():
                if writing.transport is not None:
                    # aiohttp closed it gracefully: that waits for a buffer the peer is
                    # not reading, and the socket would outlive the call.
                    writing.transport.abort()
                msg = "timed out writing the request body"
                raise httpx.WriteTimeout(msg, request=request) from exc
            raise _translate(exc, request, connected) from exc
        except Exception as exc:
            raise _translate(exc, request, connected) from exc
        stream: httpx.AsyncByteStream
        if request.extensions.get(BUFFER) is True and response.status != 101:
            # The caller wants the whole body (svcclient's client, not streaming): read
            # in one go by aiohttp (the connection goes back to the pool), handed on in
            # memory, so neither the driver nor httpx iterates it chunk by chunk.
            try:
                stream = InMemoryBody(await response.read())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise _translate(exc, request, connected) from exc
        else:
            stream = _ResponseStream(response, request)
        version = response.version
        return httpx.Response(
            response.status,
            # The bytes as received, as httpcore hands them to httpx: decoded here, a
            # non-ASCII value (a UTF-8 filename) could not be encoded back by httpx.
            headers=response.raw_headers,
            stream=stream,
            request=request,
            extensions={
                "http_version": b"HTTP/%d.%d" % (version.major, version.minor)
                if version is not None
                else b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1"),
            },
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
