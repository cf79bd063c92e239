"""Print a Prometheus exposition after successes, errors and breaker transitions (for promtool).

Real calls on loopback: a healthy server, a server answering 503, a port that refuses
connections (the breaker opens, rejects, half-opens and closes again), an NXDOMAIN name.
"""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from svcclient import BreakerPolicy, ServiceClient, SvcClientError
from svcclient.testing import Fault, FaultServer, LocalDns, no_retry_sleeps


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def main() -> None:
    registry = CollectorRegistry()
    breaker = BreakerPolicy(
        error_threshold_percentage=50, volume_threshold=4, reset_timeout=0.3, window_duration=4.0
    )
    with FaultServer("127.0.0.2") as ok, FaultServer("127.0.0.3") as flaky, LocalDns() as dns:
        flaky.set_fault(Fault.status(503))
        with no_retry_sleeps():
            with ServiceClient("users", url=ok.url, registry=registry) as users:
                for i in range(20):
                    users.get(f"/users/{i}", extensions={"route": "/users/{id}"})
                users.post("/users", json={}, extensions={"route": "/users"})
            with ServiceClient("billing", url=flaky.url, registry=registry) as billing:
                for _ in range(3):
                    billing.get("/charges")
            dead = f"http://127.0.0.4:{_free_port('127.0.0.4')}"
            with ServiceClient(
                "ledger", url=dead, breaker=breaker, registry=registry, timeout=1.0
            ) as ledger:
                for _ in range(8):  # refused: opens the breaker, then rejections
                    with contextlib.suppress(httpx.TransportError):  # refused, then open
                        ledger.get("/entries")
            time.sleep(0.35)  # reset timeout: the next call is the half-open probe
            with ServiceClient(
                "ledger", url=ok.url, breaker=breaker, registry=registry, timeout=1.0
            ) as ledger:
                for _ in range(3):
                    ledger.get("/entries")
            with ServiceClient(
                "ghost",
                url="http://ghost.svc.test:8080",
                resolve="dns",
                dns_nameservers=[dns.nameserver],
                registry=registry,
            ) as ghost:
                for _ in range(2):
                    with contextlib.suppress(SvcClientError):
                        ghost.get("/x")
    print(generate_latest(registry).decode(), end="")


if __name__ == "__main__":
    main()
