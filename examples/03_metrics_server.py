"""Metrics on /metrics with prometheus-client's own HTTP server, as the seed's prom-client.

Starts a metrics server on 127.0.0.1 (a free port), makes a few calls to a local service
(one of them retried), fetches /metrics once and prints the svcclient lines, then exits.
Run: ``python examples/03_metrics_server.py``.
"""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, start_http_server

from svcclient import ServiceClient
from svcclient.testing import Fault, FaultServer

PREFIXES = ("http_request_duration_seconds", "network_errors_total", "svcclient_")


def main() -> None:
    registry = CollectorRegistry()  # a private registry: only what this example records
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    try:
        with (
            FaultServer("127.0.0.1", name="task-service") as tasks,
            ServiceClient("task-service", url=tasks.url, registry=registry) as client,
        ):
            tasks.push_faults([Fault.status(503)])  # the first call is retried once
            for task_id in range(1, 4):
                response = client.get(f"/tasks/{task_id}", extensions={"route": "/tasks/{id}"})
                print(f"GET /tasks/{task_id} -> {response.status_code}")

        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        print(f"\nscraped http://127.0.0.1:{port}/metrics:")
        for line in text.splitlines():
            if line.startswith(PREFIXES) and "_bucket{" not in line and "_created" not in line:
                print("  " + line)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5.0)


if __name__ == "__main__":
    main()
