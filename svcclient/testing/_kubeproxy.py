"""A kube-proxy stand-in: one virtual IP, a backend chosen per new TCP connection.

A ClusterIP Service is one address; kube-proxy picks a pod when a connection opens and
every byte of that connection then goes to that pod. ``KubeProxy`` does the same in user
space on loopback: it listens on ``(host, port)``, and for each accepted connection picks
a backend (``"round_robin"``, IPVS's default, or ``"random"``, iptables mode) from a list
that can change while it runs (pods that come and go), dials it and relays bytes both
ways. A backend that refuses makes the proxy reset the client's connection.

``connections`` counts the connections handed to each backend. Loopback only.

>>> with KubeProxy("127.0.0.10", backends=[("127.0.0.2", 8080)]) as vip:  # doctest: +SKIP
...     httpx.get(f"http://127.0.0.10:{vip.port}/")
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import select
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import Literal

__all__ = ["KubeProxy"]

Backend = tuple[str, int]
_CHUNK = 65536


class KubeProxy:
    """A TCP proxy on a virtual IP choosing a backend per new connection (see module)."""

    def __init__(
        self,
        host: str = "127.0.0.10",
        port: int = 0,
        *,
        backends: Iterable[Backend] = (),
        mode: Literal["round_robin", "random"] = "round_robin",
        seed: int | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"KubeProxy binds loopback addresses only, not {host}")
        self.host = host
        self._want_port = port
        self.port = port
        self.mode = mode
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._backends: list[Backend] = list(backends)
        self._next = 0
        self.connections: Counter[Backend] = Counter()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()

    # -- the endpoints behind the virtual IP ------------------------------------------------

    def set_backends(self, backends: Iterable[Backend]) -> None:
        """Replace the pods behind the Service (existing connections stay where they are)."""
        with self._lock:
            self._backends = list(backends)

    @property
    def backends(self) -> list[Backend]:
        """The current backends."""
        with self._lock:
            return list(self._backends)

    def _choose(self) -> Backend | None:
        with self._lock:
            if not self._backends:
                return None
            if self.mode == "random":
                backend = self._rng.choice(self._backends)
            else:
                backend = self._backends[self._next % len(self._backends)]
                self._next += 1
            self.connections[backend] += 1
            return backend

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeProxy:
        """Bind and start accepting on a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._want_port))
        sock.listen(128)
        sock.settimeout(0.1)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        """Stop accepting, close every relayed connection and join the threads."""
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            open_now = list(self._open)
        for s in open_now:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5.0)

    def __enter__(self) -> KubeProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._relay, client)

    def _relay(self, client: socket.socket) -> None:
        backend = self._choose()
        upstream: socket.socket | None = None
        if backend is not None:
            try:
                upstream = socket.create_connection(backend, timeout=2.0)
            except OSError:
                upstream = None
        if upstream is None:
            # Like a DNAT'ed SYN meeting a closed port: the client sees a reset.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        upstream.settimeout(None)
        pair = (client, upstream)
        with self._lock:
            self._open.update(pair)
        try:
            while not self._stopping.is_set():
                ready, _, _ = select.select(pair, [], [], 0.2)
                for s in ready:
                    data = s.recv(_CHUNK)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.difference_update(pair)
            for s in pair:
                with contextlib.suppress(OSError):
                    s.close()

    def __repr__(self) -> str:
        return f"<KubeProxy {self.host}:{self.port} {self.mode} backends={self.backends}>"
