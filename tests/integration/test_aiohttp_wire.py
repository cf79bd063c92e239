"""The aiohttp wire (``wire="aiohttp"``) against real misbehaving servers on loopback."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from svcclient import AsyncServiceClient, ConfigError, RetryPolicy, ServiceConfig
from svcclient._transports.aiohttp_wire import AiohttpTransport
from svcclient.testing._faultserver import Fault, FaultServer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def server() -> FaultServer:
    with FaultServer("127.0.0.1", name="wire") as srv:
        yield srv


def _client(url: str, **overrides: object) -> AsyncServiceClient:
    return AsyncServiceClient(ServiceConfig("wire-svc", url=url, wire="aiohttp", **overrides))


async def test_get_and_post_round_trip_with_headers_and_body(server: FaultServer) -> None:
    """Status, headers, JSON body and the request's method, path, headers and body all pass."""
    async with _client(server.url) as client:
        r = await client.get("/users/1", headers={"x-trace": "abc"})
        assert r.status_code == 200 and r.json()["path"] == "/users/1"
        assert r.http_version == "HTTP/1.1" and r.elapsed.total_seconds() >= 0
        r = await client.post("/items", json={"a": 1})
        assert r.json()["method"] == "POST"
    seen = server.requests
    assert seen[0].headers.get("x-trace") == "abc"
    assert seen[0].headers.get("host", "").startswith("127.0.0.1")


async def test_status_and_retry_after_reach_the_pipeline(server: FaultServer) -> None:
    """A 503 then a 200: the pipeline retries on the aiohttp wire like on httpx's."""
    server.push_faults([Fault.status(503), Fault.ok()])
    async with _client(server.url, retry=RetryPolicy(attempts=2, backoff_base=0.001)) as client:
        r = await client.get("/x")
    assert r.status_code == 200 and server.count() == 2


async def test_reset_after_send_maps_to_an_httpx_error_and_is_retried(server: FaultServer) -> None:
    """A connection reset is an httpx transport error, so a GET is retried and succeeds."""
    server.push_faults([Fault.reset(), Fault.ok()])
    async with _client(server.url, retry=RetryPolicy(attempts=2, backoff_base=0.001)) as client:
        r = await client.get("/x")
    assert r.status_code == 200 and server.count() == 2


async def test_refused_connection_is_connect_error() -> None:
    """No listener: httpx.ConnectError from the bare transport."""
    with FaultServer("127.0.0.1", name="gone") as srv:
        url = srv.url
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/x")


async def test_stall_before_headers_is_read_timeout(server: FaultServer) -> None:
    """A server silent past the read timeout: httpx.ReadTimeout, well before the stall ends."""
    server.push_faults([Fault.stall_before_headers(5.0)])
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url + "/x")


async def test_truncated_body_is_remote_protocol_error(server: FaultServer) -> None:
    """Content-Length longer than the body: httpx.RemoteProtocolError while reading."""
    server.push_faults([Fault.truncated()])
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/x")


async def test_a_buffered_body_is_read_in_the_attempt_and_a_truncated_one_retried(
    server: FaultServer,
) -> None:
    """AsyncServiceClient's get: the wire reads the whole body inside the attempt, so a
    body cut short is retried like any transport error; a gzip body arrives decoded,
    with the raw byte count and elapsed set."""
    body = b'{"users": [1, 2, 3]}' * 40
    packed = gzip.compress(body)
    server.push_faults(
        [Fault.truncated(), Fault.ok(body=packed, headers={"content-encoding": "gzip"})]
    )
    async with _client(server.url, retry=RetryPolicy(attempts=2, backoff_base=0.001)) as client:
        r = await client.get("/x")
        assert r.content == body and r.num_bytes_downloaded == len(packed)
        assert r.is_closed and r.elapsed.total_seconds() > 0
        assert server.count() == 2
        async with client.stream("GET", "/streamed") as streamed:  # not buffered: streams
            assert not streamed.is_stream_consumed
            assert b"".join([part async for part in streamed.aiter_raw()])
        assert streamed.is_closed


async def test_two_hundred_concurrent_gets_all_succeed(server: FaultServer) -> None:
    """200 GETs at once through AsyncServiceClient on the aiohttp wire all return 200.

    The 100 GETs beyond ``max_connections`` wait for a pooled connection, and aiohttp counts
    that wait against the connect timeout (``ClientTimeout.connect`` = httpx's pool timeout,
    the per-attempt ``timeout``); the listen backlog (256) is not the limit. On a loaded
    2-core machine the in-process server answers the first 100 in more than the default 2 s
    (the call took 7-9 s with three CPU hogs), so each attempt gets 10 s and the call 30 s
    (no breaker: its window must be >= 2 x timeout). Every GET must still succeed."""
    async with _client(server.url, timeout=10.0, deadline=30.0, breaker=None) as client:
        results = await asyncio.gather(*(client.get(f"/i/{i}") for i in range(200)))
    assert len(results) == 200 and all(r.status_code == 200 for r in results)


async def test_cookies_are_httpx_s_alone(server: FaultServer) -> None:
    """httpx's cookie jar is the only one: a cookie the client cleared is not sent again,
    and a request's own Cookie header goes out as it is (aiohttp's session jar would keep
    and add the server's cookies on its own). A host name, not an IP: aiohttp's jar ignores
    cookies from IP hosts."""
    url = server.url.replace("127.0.0.1", "localhost")
    server.push_faults([Fault.ok(headers={"Set-Cookie": "sid=secret; Path=/"}), Fault.ok()])
    async with _client(url) as client:
        await client.get("/login")
        assert dict(client.cookies) == {"sid": "secret"}
        client.cookies.clear()
        await client.get("/after-clear")
        await client.get("/own", headers={"Cookie": "mine=1"})
    cookies = [r.headers.get("cookie") for r in server.requests]
    assert cookies == [None, None, "mine=1"]


async def test_response_headers_keep_their_bytes_as_on_the_httpx_wire() -> None:
    """Non-ASCII header bytes (UTF-8, Latin-1) reach httpx as received, on both wires
    alike; decoding them here once made the aiohttp wire raise UnicodeEncodeError."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        b"X-Name: caf\xc3\xa9\r\nX-Latin: \xe9t\xe9\r\n\r\nok"
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen = {}
    try:
        for wire in ("httpx", "aiohttp"):
            config = ServiceConfig("wire-svc", url=f"http://127.0.0.1:{port}", wire=wire)
            async with AsyncServiceClient(config) as client:
                r = await client.get("/")
                seen[wire] = (r.headers.raw, r.headers["x-name"], r.text)
    finally:
        server.close()
    raw, name, text = seen["aiohttp"]
    assert (b"X-Name", b"caf\xc3\xa9") in raw and (b"X-Latin", b"\xe9t\xe9") in raw
    assert name == seen["httpx"][1] and text == "ok"
    assert [h for h in raw if h[0].startswith(b"X-")] == [
        h for h in seen["httpx"][0] if h[0].startswith(b"X-")
    ]


def test_http2_is_refused_at_config_time() -> None:
    """wire='aiohttp' with http2=True is a ConfigError (aiohttp speaks HTTP/1.1)."""
    with pytest.raises(ConfigError):
        ServiceConfig("wire-svc", url="http://127.0.0.1:1", wire="aiohttp", http2=True)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error(anyio_backend: str) -> None:
    """Under trio the aiohttp wire raises RuntimeError naming asyncio (no silent hang)."""
    transport = AiohttpTransport()
    with pytest.raises(RuntimeError, match="asyncio"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:1/"))
