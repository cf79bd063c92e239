"""Upgrade an existing ``httpx.Client`` by swapping its transport.

Code that already builds an ``httpx.Client`` keeps its API; with
``transport=ResilientTransport(...)`` every request gains retries, the breaker,
balancing and metrics. Run: ``python examples/04_upgrade_httpx_client.py``.
"""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from svcclient import ResilientTransport, ServiceConfig
from svcclient.testing import Fault, FaultServer


def main() -> None:
    with FaultServer("127.0.0.1", name="inventory") as inventory:
        # Before: a plain client. One 503 from the server reaches the caller.
        inventory.push_faults([Fault.status(503)])
        with httpx.Client(base_url=inventory.url) as plain:
            print(f"plain httpx.Client:       {plain.get('/items/7').status_code}")

        # After: the same client, one argument more.
        config = ServiceConfig("inventory", url=inventory.url, timeout=1.0)
        inventory.push_faults([Fault.status(503)])
        inventory.clear()
        with httpx.Client(
            base_url=inventory.url,
            transport=ResilientTransport(config, registry=CollectorRegistry()),
        ) as client:
            response = client.get("/items/7")
            print(f"with ResilientTransport:  {response.status_code} {response.json()}")
        print(f"requests the server saw:  {inventory.count('GET', '/items/7')} (503, then 200)")


if __name__ == "__main__":
    main()
