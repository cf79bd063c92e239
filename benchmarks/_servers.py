"""Local HTTP servers in a child process, so the client being measured has a core to itself.

Why a child process: a server thread in the benchmark's own process competes for the GIL
with the client, and a thread waiting for the GIL can wait a whole switch interval (5 ms),
which would swamp the latencies we want to see. The child runs ``FaultServer`` instances
(loopback only), a minimal ASGI app under uvicorn, or a canned-response server, and talks
to the parent over its stdin/stdout, one line per command:

* ``reset``  -> ``OK {"<host>:<port>": requests seen, ...}`` then counters and fault
  scripts start afresh (so every contender meets the same deterministic faults);
* ``counts`` -> the same report without resetting.

The child exits when its stdin closes (the parent finished or died) and, whatever
happens, after ``lifetime`` seconds. The parent never waits longer than ``timeout``.

>>> with ServerProcess([{"kind": "fault", "host": "127.0.0.1", "fault": "ok"}]) as srv:
...     srv.urls[0]                                        # doctest: +SKIP
'http://127.0.0.1:40123'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

__all__ = ["ServerProcess", "asgi_app", "free_common_port"]

ROOT = Path(__file__).resolve().parent.parent
_OK_BODY = b'{"ok":true}'


def free_common_port(hosts: Sequence[str], attempts: int = 20) -> int:
    """A TCP port free on every address in ``hosts`` (all loopback), or RuntimeError."""
    for _ in range(attempts):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = int(first.getsockname()[1])
            ok = True
            for host in hosts[1:]:
                with socket.socket() as other:
                    try:
                        other.bind((host, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
    raise RuntimeError(f"no common free port on {', '.join(hosts)}")


class ServerProcess:
    """Start servers described by ``specs`` in a child process (see the module docstring).

    A spec is ``{"kind": "fault", "host": "127.0.0.2", "port": 0, "fault": "ok"}``
    (``fault``: ``ok``, ``refuse``, or ``slow`` with ``fraction`` and ``after``),
    ``{"kind": "uvicorn", "host": "127.0.0.1"}`` or ``{"kind": "canned", "host": ...}``
    (the same 200 answer to every request, written in one ``send``; see ``_Canned``).
    """

    def __init__(
        self,
        specs: Sequence[dict[str, Any]],
        *,
        timeout: float = 20.0,
        lifetime: float = 900.0,
    ) -> None:
        for spec in specs:
            if not str(spec.get("host", "127.0.0.1")).startswith("127."):
                raise ValueError("benchmark servers bind loopback (127.x) only")
        self.specs = [dict(s) for s in specs]
        self.timeout = timeout
        self.lifetime = lifetime
        self.ports: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: BinaryIO | None = None
        self._selector: selectors.BaseSelector | None = None

    @property
    def urls(self) -> list[str]:
        """``http://host:port`` for each spec, in order."""
        return [
            f"http://{s.get('host', '127.0.0.1')}:{p}"
            for s, p in zip(self.specs, self.ports, strict=True)
        ]

    def start(self) -> ServerProcess:
        """Launch the child and wait (bounded) until every server listens."""
        payload = json.dumps({"servers": self.specs, "lifetime": self.lifetime})
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._servers", payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._proc.stdout, selectors.EVENT_READ)
        try:
            line = self._read_line()
            if not line.startswith("READY "):
                raise RuntimeError(f"server child failed: {line or self._stderr_tail()}")
            self.ports = [int(p) for p in json.loads(line[6:])]
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, name: str) -> dict[str, int]:
        """Send ``reset`` or ``counts``; return requests seen per server."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("server child is not running")
        proc.stdin.write(name.encode() + b"\n")
        proc.stdin.flush()
        line = self._read_line()
        if not line.startswith("OK "):
            raise RuntimeError(f"server child: {line or self._stderr_tail()}")
        counts: dict[str, int] = json.loads(line[3:])
        return counts

    def reset(self) -> dict[str, int]:
        """Fresh counters and fault scripts; returns the counts before the reset."""
        return self.command("reset")

    def stop(self) -> None:
        """Close the child's stdin, wait up to 5 s, then kill it. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _read_line(self) -> str:
        proc, sel = self._proc, self._selector
        assert proc is not None and proc.stdout is not None and sel is not None
        if not sel.select(self.timeout):
            raise TimeoutError(f"server child silent for {self.timeout:g}s")
        return proc.stdout.readline().decode(errors="replace").strip()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the child ------------------------------------------------------------------------------

_uvicorn_seen = [0]  # requests answered by asgi_app (a list: mutable without `global`)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest useful ASGI app: 200 and a tiny JSON body for every request."""
    if scope["type"] != "http":
        return
    _uvicorn_seen[0] += 1
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_OK_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _OK_BODY})


class _Uvicorn:
    def __init__(self, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            asgi_app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def start(self, timeout: float) -> int:
        self.thread.start()
        until = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > until or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5.0)


_CANNED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_OK_BODY),
    _OK_BODY,
)


class _CannedProtocol(asyncio.Protocol):
    """Answers every request head (GETs only: no request body) with ``_CANNED``, keep-alive."""

    def __init__(self, seen: list[int], accepted: list[int]) -> None:
        self.seen = seen
        accepted[0] += 1
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        heads = self.buffer.count(b"\r\n\r\n")
        if heads and self.transport is not None:
            self.buffer = self.buffer.rsplit(b"\r\n\r\n", 1)[1]
            self.seen[0] += heads
            self.transport.write(_CANNED * heads)


class _Canned:
    """The cheapest server that keeps the client honest: one write per answer, so a
    client's instruction count does not depend on how the answer was split into segments
    (callgrind_overhead), and no per-request Python beyond a count (bursts)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.seen = [0]
        self.accepted = [0]  # TCP connections accepted (the "connections" command)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self, timeout: float) -> int:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(
                lambda: _CannedProtocol(self.seen, self.accepted),
                self.host,
                self.port,
                backlog=4096,
            ),
            self.loop,
        ).result(timeout)
        self.server = server
        return int(server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)


def _child(payload: str) -> int:
    from svcclient.testing._faultserver import Fault, FaultServer

    conf = json.loads(payload)
    watchdog = threading.Timer(float(conf.get("lifetime", 900.0)), os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()

    def fault_for(spec: dict[str, Any]) -> Fault:
        kind = spec.get("fault", "ok")
        if kind == "slow":
            return Fault.slow(fraction=float(spec["fraction"]), after=float(spec["after"]))
        return Fault.ok(body=_OK_BODY) if kind == "ok" else Fault.refuse()

    faults: list[tuple[FaultServer, dict[str, Any]]] = []
    uvis: list[_Uvicorn] = []
    canned: dict[int, _Canned] = {}
    ports: list[int] = []
    keys: list[str] = []
    try:
        for spec in conf["servers"]:
            host = str(spec.get("host", "127.0.0.1"))
            port = int(spec.get("port", 0))
            if spec["kind"] == "uvicorn":
                uvi = _Uvicorn(host, port or free_common_port([host]))
                uvis.append(uvi)
                ports.append(uvi.start(10.0))
            elif spec["kind"] == "canned":
                can = canned[len(ports)] = _Canned(host, port)
                ports.append(can.start(10.0))
            else:
                srv = FaultServer(host, port, name=f"{host}").start()
                srv.set_fault(fault_for(spec))
                faults.append((srv, spec))
                ports.append(srv.port)
            keys.append(f"{host}:{ports[-1]}")
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1

    def counts() -> dict[str, int]:
        out = {}
        fi = iter(faults)
        for i, (key, spec) in enumerate(zip(keys, conf["servers"], strict=True)):
            if spec["kind"] == "uvicorn":
                out[key] = _uvicorn_seen[0]
            elif spec["kind"] == "canned":
                out[key] = canned[i].seen[0]
            else:
                out[key] = next(fi)[0].count()
        return out

    print("READY " + json.dumps(ports), flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "counts":
                print("OK " + json.dumps(counts()), flush=True)
            elif cmd == "connections":  # TCP connections accepted per canned server
                conns = {keys[i]: can.accepted[0] for i, can in canned.items()}
                print("OK " + json.dumps(conns), flush=True)
            elif cmd == "reset":
                seen = counts()
                for srv, spec in faults:
                    srv.set_fault(fault_for(spec))  # a fresh "every n-th" counter
                    srv.clear()
                _uvicorn_seen[0] = 0
                for can in canned.values():
                    can.seen[0] = 0
                print("OK " + json.dumps(seen), flush=True)
            else:
                print(f"ERROR unknown command {cmd!r}", flush=True)
    finally:
        for srv, _ in faults:
            srv.stop()
        for uvi in uvis:
            uvi.stop()
        for can in canned.values():
            can.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
