"""svcclient's HTTP/1.1 pool (svcclient._transports.pool) against real loopback servers.

Counts TCP connections on the server's side (``FaultServer.accepted``); asserts counts,
never times.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest

from svcclient._transports.pinned import AsyncPinnedTransport, PinnedTransport, transport_options
from svcclient.testing import Fault, FaultServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _options(max_connections: int, keepalive: int) -> dict[str, object]:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive)
    return dict(transport_options(False, False, limits))


@pytest.mark.anyio
async def test_async_burst_reuses_at_most_max_connections(
    fault_server: Callable[..., FaultServer], anyio_backend: str
) -> None:
    """1,000 requests, 100 at a time, through a pool of 20 connections with a keep-alive
    limit of 5 open at most 20 TCP connections (httpcore 1.0.9's pool counts busy
    connections against the keep-alive limit and dials hundreds)."""
    server = fault_server()
    transport = AsyncPinnedTransport(None, _options(20, 5))  # type: ignore[arg-type]
    ok = 0
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        limiter = anyio.CapacityLimiter(100)

        async def one() -> None:
            nonlocal ok
            async with limiter:
                response = await client.get("/x")
                ok += response.status_code == 200

        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(one)
        core = transport._pool._core
        assert (core.slots, len(core.waiters)) == (len(core.idle), 0)
    assert ok == 1000
    assert server.accepted <= 20


def test_sync_threads_reuse_at_most_max_connections(
    fault_server: Callable[..., FaultServer],
) -> None:
    """400 requests from 8 threads over a pool of 4 open at most 4 TCP connections."""
    server = fault_server()
    transport = PinnedTransport(None, _options(4, 2))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=server.url) as client:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: client.get("/x").status_code, range(400)))
        core = transport._pool._core
        assert (core.slots, len(core.waiters)) == (len(core.idle), 0)
    assert codes == [200] * 400
    assert server.accepted <= 4


@pytest.fixture
def idle_closer() -> Iterator[tuple[str, list[int]]]:
    """A keep-alive server that closes each connection 50 ms after answering (an idle
    timeout shorter than the client's): ``(url, [accepted])``."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = [0]
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(answer)
            stop.wait(0.05)

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join(5.0)
    listener.close()


def test_sync_idle_connection_closed_by_the_server_is_not_reused(
    idle_closer: tuple[str, list[int]],
) -> None:
    """A connection the server closed while idle is dropped at hand-out; the request
    dials a new one and succeeds."""
    url, accepted = idle_closer
    transport = PinnedTransport(None, _options(2, 2))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=url) as client:
        for _ in range(3):
            assert client.get("/x").text == "ok"
            threading.Event().wait(0.2)  # the server has closed it by now
    assert accepted[0] == 3


@pytest.mark.anyio
async def test_async_idle_connection_closed_by_the_server_is_not_reused(
    idle_closer: tuple[str, list[int]], anyio_backend: str
) -> None:
    """The async pool drops a connection the server closed while idle, too."""
    url, accepted = idle_closer
    transport = AsyncPinnedTransport(None, _options(2, 2))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:
        for _ in range(3):
            assert (await client.get("/x")).text == "ok"
            await anyio.sleep(0.2)
    assert accepted[0] == 3


@pytest.mark.anyio
async def test_async_reset_mid_pool_leaks_no_slot(
    fault_server: Callable[..., FaultServer], anyio_backend: str
) -> None:
    """Connections reset by the server give their slots back: afterwards 20 concurrent
    requests through a pool of 2 all succeed."""
    server = fault_server()
    transport = AsyncPinnedTransport(None, _options(2, 2))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        assert (await client.get("/warm")).status_code == 200
        server.push_faults([Fault.reset()] * 3)
        for _ in range(3):
            with pytest.raises(httpx.TransportError):
                await client.get("/reset")
        codes: list[int] = []

        async def one() -> None:
            codes.append((await client.get("/x")).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        core = transport._pool._core
        assert core.slots <= 2
    assert codes == [200] * 20


def test_sync_reset_mid_pool_leaks_no_slot(fault_server: Callable[..., FaultServer]) -> None:
    """The sync pool gives a reset connection's slot back too."""
    server = fault_server()
    transport = PinnedTransport(None, _options(2, 2))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=server.url) as client:
        server.push_faults([Fault.reset()] * 3)
        for _ in range(3):
            with pytest.raises(httpx.TransportError):
                client.get("/reset")
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: client.get("/x").status_code, range(20)))
        assert transport._pool._core.slots <= 2
    assert codes == [200] * 20


@pytest.mark.anyio
async def test_async_waiter_that_times_out_leaks_nothing(
    fault_server: Callable[..., FaultServer], anyio_backend: str
) -> None:
    """With the only connection busy, a waiter's pool timeout raises PoolTimeout; the
    connection then serves the next request (one TCP connection in all)."""
    server = fault_server()
    transport = AsyncPinnedTransport(None, _options(1, 1))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        async with client.stream("GET", "/held") as held:
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/waits", timeout=httpx.Timeout(5.0, pool=0.05))
            with anyio.move_on_after(0.05):  # a waiter cancelled by its caller
                await client.get("/cancelled")
            await held.aread()
        assert (await client.get("/after")).status_code == 200
        core = transport._pool._core
        assert (core.slots, list(core.waiters)) == (1, [])
    assert server.accepted == 1


def test_sync_waiter_that_times_out_leaks_nothing(
    fault_server: Callable[..., FaultServer],
) -> None:
    """The sync pool's waiter times out the same way and leaks nothing."""
    server = fault_server()
    transport = PinnedTransport(None, _options(1, 1))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=server.url) as client:
        with client.stream("GET", "/held") as held:
            with pytest.raises(httpx.PoolTimeout):
                client.get("/waits", timeout=httpx.Timeout(5.0, pool=0.05))
            held.read()
        assert client.get("/after").status_code == 200
        assert (transport._pool._core.slots, list(transport._pool._core.waiters)) == (1, [])
    assert server.accepted == 1


def test_sync_waiter_interrupted_while_waiting_leaks_nothing(
    fault_server: Callable[..., FaultServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync waiter whose wait is interrupted (KeyboardInterrupt, or any error) leaves
    the queue, as an async waiter that is cancelled does: the connection then serves the
    next request. (Before the sync pool was generated from the async one, such a waiter
    stayed queued and took the next connection given back, which nobody used again.)"""
    from svcclient._transports._sync import pool

    class Interrupted(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            raise KeyboardInterrupt

    server = fault_server()
    transport = PinnedTransport(None, _options(1, 1))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=server.url) as client:
        with client.stream("GET", "/held") as held:
            with monkeypatch.context() as patch:
                patch.setattr(pool.threading, "Event", Interrupted)
                with pytest.raises(KeyboardInterrupt):
                    client.get("/interrupted")
            assert list(transport._pool._core.waiters) == []
            held.read()
        assert client.get("/after").status_code == 200
        assert (transport._pool._core.slots, list(transport._pool._core.waiters)) == (1, [])
    assert server.accepted == 1


@contextlib.contextmanager
def _pool_calls() -> Iterator[list[int]]:
    """Counts Python calls (and generator resumptions) in the pool modules meanwhile."""
    seen = [0]

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename.endswith(
            ("_sync/pool.py", "_async/pool.py")
        ):
            seen[0] += 1

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def test_python_calls_per_request_in_the_pools(fault_server: Callable[..., FaultServer]) -> None:
    """One keep-alive request costs the sync pool 9 Python calls and the async pool 14
    (acquire, give back, the body's iteration and close; the async one's coroutines
    resume once per await). The sync pool closes and wakes nothing when there is nothing
    to close or wake, as the async one does (12 calls before it was generated from the
    async pool). Fails when either count grows."""
    server = fault_server()
    transport = PinnedTransport(None, _options(4, 4))  # type: ignore[arg-type]
    with httpx.Client(transport=transport, base_url=server.url) as client:
        client.get("/warm")
        with _pool_calls() as seen:
            client.get("/x")
        assert seen == [9]

    async def send() -> list[int]:
        transport = AsyncPinnedTransport(None, _options(4, 4))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            await client.get("/warm")
            with _pool_calls() as seen:
                await client.get("/x")
            return seen

    assert anyio.run(send) == [14]
