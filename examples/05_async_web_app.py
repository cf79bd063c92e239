"""An async web app (Starlette on uvicorn) that calls another service and propagates the trace.

``frontend`` serves ``GET /profile/{id}`` and calls ``user-service`` with
``AsyncServiceClient``. The incoming ``traceparent`` is extracted into the OpenTelemetry
context; svcclient's tracing hooks inject it into the outgoing call, so the downstream
server sees the same trace id (with the client span's id as parent). The downstream is a
FaultServer that echoes the headers it received.

Runs both servers on 127.0.0.1, makes three requests and exits:
``python examples/05_async_web_app.py``.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import uvicorn
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from svcclient import AsyncServiceClient
from svcclient.testing import FaultServer

trace.set_tracer_provider(TracerProvider())  # an SDK provider: real spans, no exporter
tracer = trace.get_tracer("frontend")


def build_app(users: AsyncServiceClient) -> Starlette:
    async def profile(request: Request) -> JSONResponse:
        # What a server instrumentation (opentelemetry-instrumentation-asgi) would do.
        token = context.attach(propagate.extract(dict(request.headers)))
        try:
            with tracer.start_as_current_span("GET /profile/{id}", kind=trace.SpanKind.SERVER):
                user_id = request.path_params["id"]
                downstream = await users.get(
                    f"/users/{user_id}", extensions={"route": "/users/{id}"}
                )
        finally:
            context.detach(token)
        seen = downstream.json()["headers"]
        return JSONResponse({"user": user_id, "downstream_traceparent": seen.get("traceparent")})

    return Starlette(routes=[Route("/profile/{id}", profile)])


async def main() -> None:
    with FaultServer("127.0.0.1", name="user-service", echo_headers=True) as user_service:
        async with AsyncServiceClient(
            "user-service", url=user_service.url, registry=CollectorRegistry()
        ) as users:
            config = uvicorn.Config(
                build_app(users), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
            )
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            for _ in range(200):  # bounded wait for startup (at most ~5 s)
                if server.started:
                    break
                await asyncio.sleep(0.025)
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"frontend on http://127.0.0.1:{port}, user-service on {user_service.url}")
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as browser:
                    for user_id in (1, 2, 3):
                        trace_id = secrets.token_hex(16)
                        incoming = f"00-{trace_id}-{secrets.token_hex(8)}-01"
                        body = (
                            await browser.get(
                                f"/profile/{user_id}", headers={"traceparent": incoming}
                            )
                        ).json()
                        outgoing = body["downstream_traceparent"] or ""
                        same = outgoing.split("-")[1:2] == [trace_id]
                        print(f"\nGET /profile/{user_id}")
                        print(f"  traceparent sent to frontend:      {incoming}")
                        print(f"  traceparent arriving at downstream: {outgoing}")
                        print(f"  same trace id: {same}")
            finally:
                server.should_exit = True
                await asyncio.wait_for(serving, 10.0)


if __name__ == "__main__":
    asyncio.run(main())
