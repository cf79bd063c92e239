"""Every FaultServer fault observed through a real httpx client on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from svcclient._exceptions import ConfigError
from svcclient.testing._faultserver import Fault, FaultServer

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
# Short client timeouts keep every failing case well under a second.
FAST = httpx.Timeout(0.3)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=FAST) as c:
        yield c


def test_ok_echoes_server_name_method_and_path(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """The default reply is 200 JSON naming the server, the method and the full target."""
    srv = fault_server("127.0.0.2", name="users-a")
    r = client.get(srv.url + "/users/7?x=1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"server": "users-a", "method": "GET", "path": "/users/7?x=1"}


def test_echo_headers_shows_host_and_traceparent(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """With echo_headers the body carries the Host and traceparent headers received."""
    srv = fault_server("127.0.0.3", echo_headers=True)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = client.get(srv.url + "/", headers={"Host": "user-service:3000", "traceparent": tp})
    headers = r.json()["headers"]
    assert headers["host"] == "user-service:3000"
    assert headers["traceparent"] == tp
    assert srv.requests[-1].headers["traceparent"] == tp


def test_ok_with_custom_status_body_and_headers(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Fault.ok takes a status, a body and extra headers."""
    srv = fault_server()
    srv.set_fault(Fault.ok(201, body="made", headers={"X-Id": "42"}))
    r = client.post(srv.url + "/things", content=b"payload")
    assert (r.status_code, r.text, r.headers["x-id"]) == (201, "made", "42")


def test_requests_are_counted_per_method_and_path(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """count() filters by method and by path (query string ignored unless given)."""
    srv = fault_server()
    for _ in range(3):
        client.get(srv.url + "/a?page=1")
    client.post(srv.url + "/a", json={"k": 1})
    client.delete(srv.url + "/b")
    assert srv.count() == 5
    assert srv.count("GET") == 3
    assert srv.count("post", "/a") == 1
    assert srv.count(path="/a") == 4
    assert srv.count(path="/a?page=1") == 3
    assert [(m, p) for m, p, _ in srv.requests][-1] == ("DELETE", "/b")
    srv.clear()
    assert srv.count() == 0


def test_request_log_is_bounded_but_counts_stay_exact(fault_server: MakeServer) -> None:
    """Only the last max_recorded requests are kept; count() still counts all of them."""
    srv = fault_server(max_recorded=3)
    with httpx.Client(timeout=2) as c:
        for i in range(8):
            c.get(f"{srv.url}/n?i={i}")
    assert [r.path for r in srv.requests] == ["/n?i=5", "/n?i=6", "/n?i=7"]
    assert srv.count() == 8 and srv.count("GET", "/n") == 8
    assert srv.count(path="/n?i=7") == 1 and srv.count(path="/n?i=0") == 0


def test_keep_alive_reuses_one_connection(fault_server: MakeServer, client: httpx.Client) -> None:
    """Sequential requests from one client share one TCP connection."""
    srv = fault_server()
    for _ in range(5):
        assert client.get(srv.url + "/k").status_code == 200
    assert srv.accepted == 1
    assert srv.count() == 5


def test_request_bodies_fixed_and_chunked_keep_the_connection_usable(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Content-Length and chunked request bodies are consumed; keep-alive continues."""
    srv = fault_server()

    def chunks() -> Iterator[bytes]:
        yield b"a" * 1000
        yield b"b" * 70000

    assert client.put(srv.url + "/fixed", content=b"x" * 100_000).status_code == 200
    assert client.post(srv.url + "/chunked", content=chunks()).status_code == 200
    assert client.get(srv.url + "/after").status_code == 200
    assert srv.accepted == 1
    assert srv.count() == 3


def test_status_503_and_429_with_retry_after(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Status faults return the code, a Retry-After header and the body given."""
    srv = fault_server()
    srv.push_faults([Fault.status(503, body="down"), Fault.status(429, retry_after=2)])
    r1 = client.get(srv.url + "/")
    r2 = client.get(srv.url + "/")
    r3 = client.get(srv.url + "/")
    assert (r1.status_code, r1.text) == (503, "down")
    assert (r2.status_code, r2.headers["retry-after"]) == (429, "2")
    assert r3.status_code == 200  # the queue is used up: back to the standing fault


def test_push_faults_run_in_order_before_the_standing_fault(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Queued faults apply one per request, then set_fault's fault applies."""
    srv = fault_server()
    srv.set_fault(Fault.status(500))
    srv.push_faults([Fault.ok(), Fault.status(502)])
    codes = [client.get(srv.url + "/").status_code for _ in range(4)]
    assert codes == [200, 502, 500, 500]


def test_refuse_gives_connect_error_and_resume_listens_again(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """refuse closes the listener (ConnectError, even for a pooled client); resume reopens it."""
    srv = fault_server("127.0.0.4")
    assert client.get(srv.url + "/").status_code == 200  # leaves a pooled connection
    srv.set_fault(Fault.refuse())
    assert not srv.listening
    with pytest.raises(httpx.ConnectError):
        client.get(srv.url + "/")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((srv.host, srv.port), timeout=1).close()
    srv.resume()
    assert client.get(srv.url + "/").status_code == 200
    srv.refuse()
    srv.set_fault(Fault.ok())  # any non-refuse fault listens again
    assert client.get(srv.url + "/").status_code == 200
    assert srv.count() == 3


def test_reset_raises_read_or_protocol_error(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """A reset after reading the request surfaces as ReadError/RemoteProtocolError, counted once."""
    srv = fault_server()
    srv.push_faults([Fault.reset()])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
        client.post(srv.url + "/orders", json={"id": 1})
    assert "reset" in str(info.value).lower() or isinstance(info.value, httpx.RemoteProtocolError)
    assert srv.count("POST", "/orders") == 1  # httpx does not replay a non-idempotent request
    assert client.get(srv.url + "/").status_code == 200


def test_close_without_response_is_a_protocol_error(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """A clean close without a reply raises RemoteProtocolError."""
    srv = fault_server()
    srv.push_faults([Fault.close()])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        client.get(srv.url + "/")


def test_stall_before_headers_hits_read_timeout(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """A stall before the status line raises ReadTimeout at the client's read timeout."""
    srv = fault_server()
    srv.push_faults([Fault.stall_before_headers(30)])
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get(srv.url + "/slow")
    assert 0.25 <= time.monotonic() - t0 < 1.5


def test_stall_before_headers_then_replies(fault_server: MakeServer, client: httpx.Client) -> None:
    """A short stall delays the reply, which then arrives (default ok or ``then``)."""
    srv = fault_server()
    srv.push_faults([Fault.stall_before_headers(0.1, then=Fault.status(504))])
    t0 = time.monotonic()
    assert client.get(srv.url + "/").status_code == 504
    assert time.monotonic() - t0 >= 0.09


def test_stall_mid_body_sends_headers_then_times_out(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Headers arrive, then reading the body raises ReadTimeout."""
    srv = fault_server()
    srv.push_faults([Fault.stall_mid_body(30)])
    with client.stream("GET", srv.url + "/big") as r:
        assert r.status_code == 200
        assert int(r.headers["content-length"]) >= 2048
        with pytest.raises(httpx.ReadTimeout):
            r.read()


def test_short_mid_body_stall_completes_valid_json(fault_server: MakeServer) -> None:
    """With a patient client the stalled body completes and is still valid JSON."""
    srv = fault_server(name="s")
    srv.push_faults([Fault.stall_mid_body(0.1)])
    r = httpx.get(srv.url + "/p", timeout=2)
    assert r.json()["server"] == "s"


def test_slow_fixed_delay(fault_server: MakeServer, client: httpx.Client) -> None:
    """slow(seconds) delays every request by that much."""
    srv = fault_server()
    srv.set_fault(Fault.slow(0.1))
    t0 = time.monotonic()
    assert client.get(srv.url + "/").status_code == 200
    assert time.monotonic() - t0 >= 0.09


def test_slow_fraction_delays_exactly_that_share(fault_server: MakeServer) -> None:
    """slow(fraction=0.2, after=d) delays exactly 2 of 10 requests, evenly spread."""
    srv = fault_server()
    srv.set_fault(Fault.slow(fraction=0.2, after=0.3, then=Fault.status(203)))
    elapsed = []
    with httpx.Client(timeout=5) as client:
        for _ in range(10):
            t0 = time.monotonic()
            assert client.get(srv.url + "/").status_code == 203
            elapsed.append(time.monotonic() - t0)
    slow = [i for i, e in enumerate(elapsed) if e >= 0.29]
    assert slow == [4, 9]


def test_slow_distribution_callable_is_called_per_request(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """A callable delay is drawn once per request (negative draws mean no delay)."""
    srv = fault_server()
    draws = iter([0.0, -5.0, 0.12])
    calls: list[int] = []

    def delay() -> float:
        calls.append(1)
        return next(draws)

    srv.set_fault(Fault.slow(delay, then=Fault.status(202)))
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        assert client.get(srv.url + "/").status_code == 202
        times.append(time.monotonic() - t0)
    assert len(calls) == 3
    assert times[0] < 0.1 and times[1] < 0.1 and times[2] >= 0.11


def test_truncated_body_is_a_protocol_error(fault_server: MakeServer, client: httpx.Client) -> None:
    """Content-Length larger than the body, then close: RemoteProtocolError."""
    srv = fault_server()
    srv.push_faults([Fault.truncated(missing=10)])
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        client.get(srv.url + "/")


def test_malformed_status_line_is_a_protocol_error(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """A garbage status line raises RemoteProtocolError."""
    srv = fault_server()
    srv.push_faults([Fault.malformed()])
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(srv.url + "/")
    srv.push_faults([Fault.malformed(b"\x00\xff garbage\r\n\r\n")])
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(srv.url + "/")


def test_servers_on_several_loopback_addresses_are_distinct(
    fault_server: MakeServer, client: httpx.Client
) -> None:
    """Servers on 127.0.0.2-4 each answer with their own name and count their own requests."""
    servers = [fault_server(f"127.0.0.{i}", name=f"s{i}") for i in (2, 3, 4)]
    for s in servers:
        assert client.get(s.url + "/").json()["server"] == s.name
    assert [s.count() for s in servers] == [1, 1, 1]


def test_ipv6_loopback_server(fault_server: MakeServer, client: httpx.Client) -> None:
    """A server on ::1 has a bracketed URL and answers."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = fault_server("::1")
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    assert srv.url.startswith("http://[::1]:")
    assert client.get(srv.url + "/v6").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.com"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    """The server refuses to bind anything but loopback."""
    with pytest.raises(ValueError, match="loopback"):
        FaultServer(host)


def test_fault_arguments_are_validated() -> None:
    """Bad fault arguments raise ConfigError; refuse cannot be queued per request."""
    with pytest.raises(ConfigError):
        Fault.status(99)
    with pytest.raises(ConfigError):
        Fault.stall_before_headers(-1)
    with pytest.raises(ConfigError):
        Fault.stall_mid_body(float("inf"))
    with pytest.raises(ConfigError):
        Fault.slow()
    with pytest.raises(ConfigError):
        Fault.slow(fraction=1.5, after=1)
    with pytest.raises(ConfigError):
        Fault.truncated(missing=0)
    srv = FaultServer()
    with pytest.raises(ConfigError, match="refuse"):
        srv.push_faults([Fault.ok(), Fault.refuse()])
    with pytest.raises(RuntimeError, match="not running"):
        srv.refuse()


def test_stop_is_bounded_while_a_client_is_stalled(
    no_fd_leak: Callable[..., contextlib.AbstractContextManager[None]],
) -> None:
    """stop() returns within 2 s while a request is mid-stall, and the client fails fast."""
    errors: list[BaseException] = []
    with no_fd_leak():
        srv = FaultServer("127.0.0.5").start()
        srv.set_fault(Fault.stall_before_headers(60))

        def call() -> None:
            try:
                httpx.get(srv.url + "/", timeout=10)
            except httpx.HTTPError as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        deadline = time.monotonic() + 5
        while srv.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 2.0
        worker.join(5)
        assert not worker.is_alive()
        srv.stop()  # idempotent
    assert len(errors) == 1 and isinstance(errors[0], httpx.TransportError)


def test_no_fd_leak_across_every_fault(
    no_fd_leak: Callable[..., contextlib.AbstractContextManager[None]],
) -> None:
    """Starting a server, exercising each fault and stopping leaves no fd open."""
    with no_fd_leak():
        with FaultServer("127.0.0.6") as srv, httpx.Client(timeout=0.2) as c:
            srv.push_faults(
                [
                    Fault.ok(),
                    Fault.status(503),
                    Fault.reset(),
                    Fault.close(),
                    Fault.stall_before_headers(5),
                    Fault.stall_mid_body(5),
                    Fault.truncated(),
                    Fault.malformed(),
                    Fault.slow(0.01),
                ]
            )
            for _ in range(9):
                with contextlib.suppress(httpx.HTTPError):
                    c.get(srv.url + "/").read()
            srv.refuse()
            with pytest.raises(httpx.ConnectError):
                c.get(srv.url + "/")
            srv.resume()
            assert c.get(srv.url + "/").status_code == 200
        assert srv.count() == 10


def test_start_fails_cleanly_when_the_port_is_taken(fault_server: MakeServer) -> None:
    """Binding a busy port raises OSError from start() instead of hanging."""
    srv = fault_server("127.0.0.7")
    other = FaultServer("127.0.0.7", srv.port)
    # SO_REUSEADDR does not allow two listeners on one address and port on Linux.
    with pytest.raises(OSError):
        other.start()


@pytest.mark.anyio
async def test_async_client_sees_the_same_faults(fault_server: MakeServer) -> None:
    """An httpx.AsyncClient observes status, reset and stall faults the same way."""
    srv = fault_server()
    srv.push_faults([Fault.status(503), Fault.reset(), Fault.stall_before_headers(30)])
    async with httpx.AsyncClient(timeout=FAST) as c:
        assert (await c.get(srv.url + "/")).status_code == 503
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await c.get(srv.url + "/")
        with pytest.raises(httpx.ReadTimeout):
            await c.get(srv.url + "/")
        assert (await c.get(srv.url + "/")).status_code == 200
    assert srv.count() == 4


# -- the misbehaviours the deadline tests use (issue 12) ----------------------------------


def _wait_closed(srv: FaultServer, limit: float = 3.0) -> int:
    """The server's open connections once they drained to 0 (or after ``limit`` s)."""
    give_up = time.monotonic() + limit
    while srv.open_connections and time.monotonic() < give_up:
        time.sleep(0.01)
    return srv.open_connections


def test_dribble_with_a_total_completes_one_byte_at_a_time(fault_server: MakeServer) -> None:
    """dribble(total=n): Content-Length n, the body arrives in n one-byte pieces, complete."""
    srv = fault_server()
    srv.push_faults([Fault.dribble(0.02, total=5)])
    with httpx.Client(timeout=2) as c, c.stream("GET", srv.url + "/d") as r:
        assert r.headers["content-length"] == "5"
        pieces = list(r.iter_raw())
        assert c.get(srv.url + "/after").status_code == 200  # complete: keep-alive goes on
    assert b"".join(pieces) == b"....."
    assert len(pieces) == 5
    assert srv.accepted == 1


def test_dribble_without_end_outlasts_any_read_timeout(fault_server: MakeServer) -> None:
    """dribble(interval < read timeout) never trips the read timeout; closing ends it."""
    srv = fault_server()
    srv.push_faults([Fault.dribble(0.05)])
    got = 0
    started = time.monotonic()
    with httpx.Client(timeout=0.3) as c, c.stream("GET", srv.url + "/d") as r:
        assert int(r.headers["content-length"]) > 10**9
        for piece in r.iter_raw():
            got += len(piece)
            if time.monotonic() - started > 0.6:  # twice the read timeout, still flowing
                break
    assert got >= 3
    assert _wait_closed(srv) == 0


def test_dribble_lasting_closes_mid_body(fault_server: MakeServer) -> None:
    """dribble(lasting=s) gives up after s seconds: the client sees an incomplete body."""
    srv = fault_server()
    srv.push_faults([Fault.dribble(0.02, lasting=0.1)])
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(srv.url + "/d", timeout=2)


def test_endless_chunked_never_ends_and_stops_when_the_client_leaves(
    fault_server: MakeServer,
) -> None:
    """endless_chunked: a chunked body that keeps coming; the server notices the client go."""
    srv = fault_server()
    srv.push_faults([Fault.endless_chunked(0.0, size=1000)])
    got = 0
    with httpx.Client(timeout=1) as c, c.stream("GET", srv.url + "/e") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        for piece in r.iter_raw():
            got += len(piece)
            if got >= 200_000:
                break
    assert got >= 200_000
    assert _wait_closed(srv) == 0


def test_endless_chunked_at_a_rate(fault_server: MakeServer) -> None:
    """endless_chunked(interval): one chunk per interval, still without end."""
    srv = fault_server()
    srv.push_faults([Fault.endless_chunked(0.05, size=10, lasting=0.3)])
    with pytest.raises(httpx.RemoteProtocolError):  # lasting ran out: no last chunk
        httpx.get(srv.url + "/e", timeout=2)
    srv.push_faults([Fault.endless_chunked(0.05, size=10)])
    with httpx.stream("GET", srv.url + "/e", timeout=2) as r:
        pieces = []
        for piece in r.iter_raw():
            pieces.append(piece)
            if len(pieces) == 3:
                break
    assert pieces == [b"." * 10] * 3


def test_accept_never_answer_reads_the_request_and_holds_the_connection(
    fault_server: MakeServer,
) -> None:
    """accept_never_answer: the request is counted, nothing comes back, close ends it."""
    srv = fault_server()
    srv.push_faults([Fault.accept_never_answer()])
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(srv.url + "/n", timeout=0.3)
    assert srv.count("GET", "/n") == 1
    assert _wait_closed(srv) == 0


def test_never_accept_makes_connects_hang_until_set_back(fault_server: MakeServer) -> None:
    """never_accept: the port listens (no refusal) but connects time out; ok accepts again."""
    srv = fault_server("127.0.0.8")
    srv.set_fault(Fault.never_accept())
    assert not srv.listening
    with pytest.raises(httpx.ConnectTimeout):
        httpx.get(srv.url + "/x", timeout=0.3)
    probe = socket.socket()
    probe.settimeout(0.3)
    with probe, pytest.raises(TimeoutError):  # not ConnectionRefusedError: a full backlog
        probe.connect((srv.host, srv.port))
    srv.set_fault(Fault.ok())
    assert srv.listening
    assert httpx.get(srv.url + "/x", timeout=2).status_code == 200
    assert srv.count() == 1


def test_upgrade_switches_protocols_and_echoes(fault_server: MakeServer) -> None:
    """upgrade: 101 with Upgrade/Connection headers, then every byte is sent back."""
    srv = fault_server()
    srv.push_faults([Fault.upgrade("echo")])
    headers = {"Upgrade": "echo", "Connection": "Upgrade"}
    with httpx.Client(timeout=2) as c, c.stream("GET", srv.url + "/ws", headers=headers) as r:
        assert r.status_code == 101
        assert r.headers["upgrade"] == "echo"
        stream = r.extensions["network_stream"]
        for word in (b"ping", b"pong" * 1000):
            stream.write(word)
            echoed = b""
            while len(echoed) < len(word):
                echoed += stream.read(65536)
            assert echoed == word
    assert _wait_closed(srv) == 0


def test_request_id_is_echoed_in_the_path(fault_server: MakeServer) -> None:
    """The default body names the request target: a path carries a request id back."""
    srv = fault_server()
    assert httpx.get(srv.url + "/echo/id-42").json()["path"] == "/echo/id-42"


def test_new_fault_arguments_are_validated() -> None:
    """dribble, endless_chunked and never_accept check their arguments and their use."""
    with pytest.raises(ConfigError, match="interval"):
        Fault.dribble(0)
    with pytest.raises(ConfigError, match="total"):
        Fault.dribble(0.1, total=0)
    with pytest.raises(ConfigError, match="size"):
        Fault.endless_chunked(size=0)
    with pytest.raises(ConfigError, match="seconds"):
        Fault.endless_chunked(-1)
    with pytest.raises(ConfigError, match="lasting"):
        Fault.dribble(0.1, lasting=float("nan"))
    with pytest.raises(ConfigError, match="then"):
        Fault.slow(0.1, then=Fault.never_accept())
    with pytest.raises(ConfigError, match="set_fault"):
        FaultServer().push_faults([Fault.never_accept()])


def test_dribble_headers_never_completes_the_head(fault_server: MakeServer) -> None:
    """dribble_headers: no read times out, the head never ends; lasting closes it."""
    srv = fault_server()
    srv.push_faults([Fault.dribble_headers(0.02, lasting=0.5)])
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):  # closed before the head was complete
        httpx.get(srv.url + "/h", timeout=0.3)
    assert time.monotonic() - started >= 0.45  # longer than the read timeout: it flowed
    with pytest.raises(ConfigError, match="interval"):
        Fault.dribble_headers(0)
