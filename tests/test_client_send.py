"""The service clients' plain send: a buffered request with nothing to authenticate or
follow skips httpx's auth and redirect loops and takes the body already read, and leaves
exactly what httpx's ``send`` leaves (response, client, errors), sync and async."""

from __future__ import annotations

import datetime
import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from svcclient import AsyncServiceClient, ServiceClient
from svcclient._shortcuts import take_body

URL = "http://send-svc.test:3000"
BODY = b'{"id": 42, "name": "Ada"}' * 20


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives in pieces (a transport streaming it)."""

    def __init__(self, *parts: bytes) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        yield from self._parts

    async def __aiter__(self) -> Any:
        for part in self._parts:
            yield part


def _handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/redirect":
        return httpx.Response(302, headers={"location": "/users/1"})
    if path == "/bad-redirect":
        return httpx.Response(302, headers={"location": "http://[::1"})
    if path == "/gzip":
        gz = gzip.compress(BODY)  # streamed: the attempt reads it, httpx decodes it
        return httpx.Response(
            200, stream=_Chunks(gz[:9], gz[9:]), headers={"content-encoding": "gzip"}
        )
    if path == "/not-gzip":
        return httpx.Response(200, content=b"not gzip", headers={"content-encoding": "gzip"})
    if path == "/empty":
        return httpx.Response(204)
    if path == "/streamed":
        return httpx.Response(200, stream=_Chunks(BODY[:7], BODY[7:], b""))
    if path == "/cookie":
        return httpx.Response(200, headers={"set-cookie": "sid=abc; Path=/"}, content=b"ok")
    if path == "/text":
        return httpx.Response(
            200, content="grüße".encode("latin-1"), headers={"content-type": "text/plain"}
        )
    return httpx.Response(
        200, content=BODY, headers={"x-seen-auth": request.headers.get("authorization", "")}
    )


PATHS = ["/users/1", "/redirect", "/gzip", "/empty", "/streamed", "/cookie", "/text"]


def _elapsed(r: httpx.Response) -> str:
    try:
        return type(r.elapsed).__name__
    except RuntimeError as exc:  # httpx: a response built as already read is never timed
        return str(exc)


def _snapshot(client: httpx.Client | httpx.AsyncClient, r: httpx.Response) -> tuple[Any, ...]:
    nxt = r.next_request
    return (
        r.status_code,
        r.headers.multi_items(),
        r.content,
        r.text,
        r.is_closed,
        r.is_stream_consumed,
        r.num_bytes_downloaded,
        [h.status_code for h in r.history],
        None if nxt is None else (nxt.method, str(nxt.url), nxt.headers.multi_items()),
        _elapsed(r),
        r.request.method,
        str(r.request.url),
        r.request.headers.multi_items(),
        sorted(r.request.extensions.get("timeout", {}).items()),
        r.http_version,
        r.reason_phrase,
        r.encoding,
        dict(client.cookies),
    )


def _sync(monkeypatch: pytest.MonkeyPatch, plain: bool, path: str, **kw: Any) -> tuple[Any, ...]:
    with monkeypatch.context() as m:
        if not plain:
            m.setattr(ServiceClient, "_sends_plainly", lambda *a: False)
        sent: list[str] = []
        real = ServiceClient._send_plain

        def spy(self: ServiceClient, request: httpx.Request) -> httpx.Response:
            sent.append("plain")
            return real(self, request)

        m.setattr(ServiceClient, "_send_plain", spy)
        with ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler)) as c:
            response = c.get(path, **kw)
            assert bool(sent) is plain
            return _snapshot(c, response)


async def _async(
    monkeypatch: pytest.MonkeyPatch, plain: bool, path: str, **kw: Any
) -> tuple[Any, ...]:
    with monkeypatch.context() as m:
        if not plain:
            m.setattr(AsyncServiceClient, "_sends_plainly", lambda *a: False)
        sent: list[str] = []
        real = AsyncServiceClient._send_plain

        async def spy(self: AsyncServiceClient, request: httpx.Request) -> httpx.Response:
            sent.append("plain")
            return await real(self, request)

        m.setattr(AsyncServiceClient, "_send_plain", spy)
        transport = httpx.MockTransport(_handler)
        async with AsyncServiceClient("send-svc", url=URL, transport=transport) as c:
            response = await c.get(path, **kw)
            assert bool(sent) is plain
            return _snapshot(c, response)


@pytest.mark.parametrize("path", PATHS)
def test_plain_send_leaves_what_httpx_send_leaves(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Body, headers, redirect's next request, elapsed, byte count, cookies: the same."""
    assert _sync(monkeypatch, True, path) == _sync(monkeypatch, False, path)


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_async_plain_send_leaves_what_httpx_send_leaves(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The async twin, on asyncio and trio."""
    plain = await _async(monkeypatch, True, path)
    assert plain == await _async(monkeypatch, False, path)


def test_a_streamed_body_is_read_once_and_elapsed_is_set() -> None:
    """A body the attempt read from a streaming transport is taken as it is, not
    iterated again; the response is closed and timed."""
    with ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler)) as c:
        response = c.get("/streamed")
        assert response.content == BODY
        assert response.num_bytes_downloaded == len(BODY)
        assert response.is_closed and isinstance(response.elapsed, datetime.timedelta)


def test_an_encoded_body_is_left_to_httpx_to_decode() -> None:
    """take_body declines a body with a Content-Encoding (httpx decodes it)."""
    with ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler)) as c:
        with c.stream("GET", "/users/1") as streamed:
            assert take_body(streamed) is False  # still on the wire: nothing to take
        response = c.get("/gzip")
        assert response.content == BODY
        assert response.num_bytes_downloaded == len(gzip.compress(BODY))


@pytest.mark.parametrize(
    "kw",
    [
        {"auth": ("ada", "secret")},
        {"follow_redirects": True},
    ],
)
def test_auth_or_followed_redirects_take_httpx_own_send(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any]
) -> None:
    """Per-request auth or redirects to follow: httpx's own send, with its result."""
    path = "/redirect" if "follow_redirects" in kw else "/users/1"
    with ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler)) as c:
        sent: list[str] = []
        monkeypatch.setattr(c, "_send_plain", lambda request: sent.append("plain"))
        response = c.get(path, **kw)
        assert sent == []
        if "auth" in kw:
            assert response.headers["x-seen-auth"].startswith("Basic ")
        else:
            assert [h.status_code for h in response.history] == [302]
            assert response.request.url.path == "/users/1"


def test_client_auth_hooks_and_userinfo_take_httpx_own_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Client auth, an event hook, userinfo in the URL or follow_redirects on the client:
    each sends through httpx's own send (the hook runs, the credentials go out)."""
    transport = httpx.MockTransport(_handler)
    seen: list[str] = []
    with ServiceClient("send-svc", url=URL, transport=transport) as c:
        monkeypatch.setattr(c, "_send_plain", lambda request: pytest.fail("plain send"))
        c.auth = ("ada", "secret")
        assert c.get("/users/1").headers["x-seen-auth"].startswith("Basic ")
        c.auth = None
        c.event_hooks = {"request": [lambda r: seen.append(r.url.path)], "response": []}
        c.get("/users/1")
        assert seen == ["/users/1"]
        c.event_hooks = {"request": [], "response": [lambda r: seen.append("response")]}
        c.get("/users/1")
        assert seen == ["/users/1", "response"]
        c.event_hooks = {}
        c.follow_redirects = True
        assert c.get("/redirect").history[0].status_code == 302
        c.follow_redirects = False
        c.max_redirects = -1  # httpx refuses before the first exchange
        with pytest.raises(httpx.TooManyRedirects):
            c.get("/users/1")
        c.max_redirects = 20
        response = c.get("http://ada:secret@send-svc.test:3000/users/1")
        assert response.headers["x-seen-auth"].startswith("Basic ")


def test_plain_send_raises_as_httpx_does() -> None:
    """A closed client, a body that fails to decode and a bad redirect target raise
    httpx's errors, and the failed response is closed."""
    closed = ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler))
    closed.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        closed.get("/users/1")
    with ServiceClient("send-svc", url=URL, transport=httpx.MockTransport(_handler)) as c:
        with pytest.raises(httpx.DecodingError):
            c.get("/not-gzip")
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/bad-redirect")
        assert c.get("/users/1").content == BODY  # the client still works


@pytest.mark.anyio
async def test_async_plain_send_raises_as_httpx_does() -> None:
    """The async twin of the errors."""
    transport = httpx.MockTransport(_handler)
    closed = AsyncServiceClient("send-svc", url=URL, transport=transport)
    await closed.aclose()
    with pytest.raises(RuntimeError, match="client has been closed"):
        await closed.get("/users/1")
    async with AsyncServiceClient("send-svc", url=URL, transport=transport) as c:
        with pytest.raises(httpx.DecodingError):
            await c.get("/not-gzip")
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get("/bad-redirect")
        assert (await c.get("/users/1")).content == BODY
