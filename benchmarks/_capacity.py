"""A loopback HTTP server of bounded capacity: at most C requests per second, then it sheds.

Theory of operation
-------------------
The server has ``workers`` workers. Serving a request occupies one worker for
``service_time`` seconds (a sleep: the work stands for a database or a downstream call,
so the benchmark's client keeps the machine's cores), so capacity is
``C = workers / service_time`` requests per second. A request that finds no free worker
waits in a FIFO queue of at most ``queue_limit`` requests; beyond that it is *shed* with a
503, and shedding is not free: it occupies a worker for ``shed_time`` seconds (parsing,
authentication and the admission decision all happen before the server can say no - the
cost the SRE book's "Handling Overload" chapter is about). Sheds go ahead of queued work,
so a rejection is quick. When ``x C`` requests per second reach a saturated server, it
serves ``C (service_time - x shed_time) / (service_time - shed_time)`` of them: the more a
client sends above capacity, the less the server serves. With ``shed_time=0`` the "no" is
free and immediate, as from a load shedder in front of the workers: a saturated server
then serves C, however much it is offered.

HTTP/1.1 with keep-alive, parsed by hand (the client is httpx: request line, headers,
optional Content-Length body). Counters: ``served`` (200), ``shed`` (503), the largest
queue seen, the most requests in the server at once (``max_active``) and the worker time
spent serving and shedding (``busy_serve_us``, ``busy_shed_us``: with ``served`` and
``shed`` they tell where capacity went - into goodput, into saying no, or idle). Binds loopback
only; every wait is bounded.

Two ways to run it:

* in-process: ``with CapacityServer(workers=4, service_time=0.02) as srv: srv.url`` (an
  event loop in a daemon thread; for integration tests);
* in a child process, so the client being measured has the GIL to itself:
  ``with CapacityProcess(...) as srv: srv.stats()`` (for benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Capacity", "CapacityProcess", "CapacityServer"]

ROOT = Path(__file__).resolve().parent.parent
_MAX_BODY = 1 << 20
_OK = b'{"ok":true}'


@dataclass(frozen=True, slots=True)
class Capacity:
    """The server's shape: C = workers / service_time requests per second."""

    workers: int = 4
    service_time: float = 0.02
    shed_time: float = 0.002
    queue_limit: int = 8

    @property
    def rate(self) -> float:
        """Requests per second the server serves at most."""
        return self.workers / self.service_time


class _Pool:
    """Workers and the wait queue, on one event loop (no locks needed)."""

    def __init__(self, cap: Capacity) -> None:
        self.cap = cap
        self.free = cap.workers
        self.queued: deque[asyncio.Future[None]] = deque()
        self.sheds: deque[asyncio.Future[None]] = deque()
        self.served = 0
        self.shed = 0
        self.max_queue = 0
        self.active = 0  # requests inside handle(): in service, queued or being shed
        self.max_active = 0
        # Worker time, in µs, from being handed a worker to giving it back (the sleep's
        # overshoot on a busy machine included: that is capacity lost too).
        self.busy_serve_us = 0
        self.busy_shed_us = 0

    async def _occupy(self, seconds: float, *, shed: bool) -> None:
        if self.free > 0 and not self.sheds and not self.queued:
            self.free -= 1
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            (self.sheds if shed else self.queued).append(fut)
            await fut  # handed a worker by _release
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await asyncio.sleep(seconds)
        finally:
            used = int((loop.time() - began) * 1e6)
            if shed:
                self.busy_shed_us += used
            else:
                self.busy_serve_us += used
            self._release()

    def _release(self) -> None:
        for q in (self.sheds, self.queued):
            while q:
                fut = q.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self.free += 1

    async def handle(self) -> int:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._handle()
        finally:
            self.active -= 1

    async def _handle(self) -> int:
        if len(self.queued) >= self.cap.queue_limit and self.free == 0:
            if self.cap.shed_time > 0:  # else a shedder in front: no worker, no wait
                await self._occupy(self.cap.shed_time, shed=True)
            self.shed += 1
            return 503
        self.max_queue = max(self.max_queue, len(self.queued) + (self.free == 0))
        await self._occupy(self.cap.service_time, shed=False)
        self.served += 1
        return 200

    def stats(self) -> dict[str, int]:
        return {
            "served": self.served,
            "shed": self.shed,
            "max_queue": self.max_queue,
            "max_active": self.max_active,
            "busy_serve_us": self.busy_serve_us,
            "busy_shed_us": self.busy_shed_us,
        }

    def reset(self) -> dict[str, int]:
        seen = self.stats()
        self.served = self.shed = self.max_queue = 0
        self.busy_serve_us = self.busy_shed_us = 0
        self.max_active = self.active
        return seen


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request; False at a clean end of the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(min(length, _MAX_BODY))
    return True


class CapacityServer:
    """The bounded-capacity server on an event loop in a daemon thread (see module docs)."""

    def __init__(self, capacity: Capacity | None = None, host: str = "127.0.0.1") -> None:
        if not host.startswith("127."):
            raise ValueError("the capacity server binds loopback (127.x) only")
        self.capacity = capacity or Capacity()
        self.host = host
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: _Pool | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> CapacityServer:
        """Listen; returns once the port is bound (at most 10 s)."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="capacity-server")
        self._thread.start()
        if not self._ready.wait(10.0) or self._server is None:
            raise RuntimeError("capacity server did not start")
        return self

    def stats(self) -> dict[str, int]:
        """``served``, ``shed``, ``max_queue`` and ``max_active`` since the last reset."""
        return self._call(lambda pool: pool.stats())

    def reset(self) -> dict[str, int]:
        """Zero the counters; returns them as they were."""
        return self._call(lambda pool: pool.reset())

    def _call(self, fn: Any) -> dict[str, int]:
        assert self._loop is not None and self._pool is not None
        pool = self._pool

        async def run() -> dict[str, int]:
            result: dict[str, int] = fn(pool)
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(5.0)

    def stop(self) -> None:
        """Close the listener and every connection, and join the thread (bounded)."""
        loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5.0)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5.0)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._pool = _Pool(self.capacity)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        finally:
            self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._pool is not None
        self._writers.add(writer)
        try:
            while True:
                try:
                    await asyncio.wait_for(_read_request(reader), 60.0)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
                    return
                except asyncio.LimitOverrunError:
                    return
                status = await self._pool.handle()
                reason = b"OK" if status == 200 else b"Service Unavailable"
                body = _OK if status == 200 else b"overloaded"
                writer.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (status, reason, len(body), body)
                )
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def __enter__(self) -> CapacityServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CapacityProcess:
    """A :class:`CapacityServer` in a child process; ``stats()``/``reset()`` over a pipe.

    The child exits when its stdin closes and, whatever happens, after ``lifetime`` s.
    """

    def __init__(
        self, capacity: Capacity, host: str = "127.0.0.1", *, lifetime: float = 600.0
    ) -> None:
        if not host.startswith("127."):
            raise ValueError("the capacity server binds loopback (127.x) only")
        self.capacity = capacity
        self.host = host
        self.lifetime = lifetime
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sel: selectors.BaseSelector | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> CapacityProcess:
        """Launch the child and wait (at most 20 s) until it listens."""
        payload = json.dumps(
            {"capacity": asdict(self.capacity), "host": self.host, "lifetime": self.lifetime}
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._capacity", payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._proc.stdout, selectors.EVENT_READ)
        try:
            line = self._line(20.0)
            if not line.startswith("READY "):
                raise RuntimeError(f"capacity server child failed: {line!r}")
            self.port = int(line[6:])
        except BaseException:
            self.stop()
            raise
        return self

    def _line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None and self._sel
        if not self._sel.select(timeout):
            raise TimeoutError("capacity server child is silent")
        return self._proc.stdout.readline().decode(errors="replace").strip()

    def _command(self, name: str) -> dict[str, int]:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("capacity server child is not running")
        proc.stdin.write(name.encode() + b"\n")
        proc.stdin.flush()
        line = self._line(10.0)
        if not line.startswith("OK "):
            raise RuntimeError(f"capacity server child: {line!r}")
        stats: dict[str, int] = json.loads(line[3:])
        return stats

    def stats(self) -> dict[str, int]:
        """``served``, ``shed``, ``max_queue`` and ``max_active`` since the last reset."""
        return self._command("stats")

    def reset(self) -> dict[str, int]:
        """Zero the counters; returns them as they were."""
        return self._command("reset")

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
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    def __enter__(self) -> CapacityProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _child(payload: str) -> int:
    conf = json.loads(payload)
    watchdog = threading.Timer(float(conf["lifetime"]), os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()
    server = CapacityServer(Capacity(**conf["capacity"]), conf["host"]).start()
    print(f"READY {server.port}", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd in ("stats", "reset"):
                result = server.stats() if cmd == "stats" else server.reset()
                print("OK " + json.dumps(result), flush=True)
            else:
                print(f"ERROR unknown command {cmd!r}", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
