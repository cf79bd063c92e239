"""svcclient's metrics beside prometheus-fastapi-instrumentator in one Prometheus registry.

The instrumentator registers its server-side ``http_request_duration_seconds`` when the
app starts (its middleware is built on the first ASGI event); the ``orders`` service
below creates its ``user-service`` client after that, in its startup code.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator

from svcclient import ConfigError, ServiceClient


def _orders_app(registry: CollectorRegistry, **client_options: Any) -> FastAPI:
    """The issue's ``orders`` service: FastAPI with the instrumentator, calling user-service."""
    app = FastAPI()
    Instrumentator(registry=registry).instrument(app)
    clients: list[ServiceClient] = []

    @app.get("/start")
    def start() -> dict[str, str]:
        users = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 1}))
        clients.append(
            ServiceClient(
                "user-service",
                url="http://user-service:3000",
                transport=users,
                registry=registry,
                **client_options,
            )
        )
        return {"started": "yes"}

    @app.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, object]:
        user = clients[0].get("/users/1", extensions={"route": "/users/{id}"}).json()
        return {"order": order_id, "user": user}

    return app


def _get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
            return [await http.get(path) for path in paths]

    return anyio.run(run)


def test_clash_with_the_instrumentator_says_what_and_how_to_fix() -> None:
    """Same registry, default names: ConfigError naming both histograms and metric_prefix."""
    registry = CollectorRegistry()
    app = _orders_app(registry)
    with pytest.raises(ConfigError) as info:
        _get(app, "/start")
    text = str(info.value)
    assert "'http_request_duration_seconds'" in text
    assert "'handler'" in text  # the instrumentator's labels
    assert "('method', 'route', 'status_code', 'target_service')" in text
    assert 'metric_prefix="svcclient"' in text


def test_metric_prefix_lets_both_share_one_registry() -> None:
    """With metric_prefix="svcclient" the server's and the client's histograms coexist."""
    registry = CollectorRegistry()
    app = _orders_app(registry, metric_prefix="svcclient")
    start, order = _get(app, "/start", "/orders/7")
    assert start.status_code == 200
    assert order.json() == {"order": 7, "user": {"id": 1}}
    exposition = generate_latest(registry).decode()
    server = 'http_request_duration_seconds_count{handler="/orders/{order_id}"'
    assert any(line.startswith(server) for line in exposition.splitlines())
    client = {
        "method": "GET",
        "route": "/users/{id}",
        "status_code": "200",
        "target_service": "user-service",
    }
    assert registry.get_sample_value("svcclient_http_request_duration_seconds_count", client) == 1
