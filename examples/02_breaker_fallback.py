"""A circuit breaker with the seed's 'Unknown User' fallback, twice.

1. Around a plain function, as the seed's opossum code::

       const breaker = new CircuitBreaker(callUserService, options);
       breaker.fallback(() => ({ id: userId, name: 'Unknown User' }));

2. Built into the HTTP pipeline of a ``ServiceClient`` (``fallback=`` in the config).

A local FaultServer plays user-service, so this runs anywhere in about a second:
``python examples/02_breaker_fallback.py``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from svcclient import BreakerPolicy, CircuitBreaker, CircuitOpenError, ServiceClient
from svcclient.testing import Fault, FaultServer


def main() -> None:
    with FaultServer("127.0.0.1", name="user-service") as server:
        base = server.url

        # -- 1. around a function (opossum style) --------------------------------------
        def call_user_service(user_id: int) -> dict[str, Any]:
            response = httpx.get(f"{base}/users/{user_id}", timeout=2.0)
            response.raise_for_status()
            return {"id": user_id, "from": response.json()["server"]}

        breaker = CircuitBreaker(
            call_user_service,
            timeout=3.0,
            error_threshold_percentage=50,
            reset_timeout=0.5,  # the seed uses 30 s; short here so the example ends quickly
            volume_threshold=4,
        )
        breaker.fallback(lambda user_id, *, cause: {"id": user_id, "name": "Unknown User"})
        breaker.on("state_change", lambda old, new: print(f"    breaker: {old} -> {new}"))

        print("1. CircuitBreaker around a function")
        print(f"  healthy:  {breaker(1)}")
        server.set_fault(Fault.status(503))
        for user_id in range(2, 8):
            start = time.perf_counter()
            result = breaker(user_id)
            print(f"  failing:  {result}  ({(time.perf_counter() - start) * 1e6:.0f} µs)")
        server.set_fault(Fault.ok())
        time.sleep(0.6)  # reset_timeout: the next call is the half-open probe
        print(f"  recovered: {breaker(8)}  state={breaker.state}")

        # -- 2. in the HTTP pipeline --------------------------------------------------------
        def unknown_user(request: httpx.Request, exc: BaseException) -> httpx.Response:
            user_id = request.url.path.rsplit("/", 1)[-1]
            why = "circuit open" if isinstance(exc, CircuitOpenError) else type(exc).__name__
            return httpx.Response(
                200, json={"id": user_id, "name": "Unknown User", "why": why}, request=request
            )

        print("\n2. The same, inside ServiceClient's pipeline")
        with ServiceClient(
            "user-service",
            url=base,
            registry=CollectorRegistry(),
            breaker=BreakerPolicy(volume_threshold=4, reset_timeout=0.5),
            fallback=unknown_user,
        ) as users:
            server.set_fault(Fault.status(503))
            for user_id in range(1, 6):
                body = users.get(f"/users/{user_id}", extensions={"route": "/users/{id}"}).json()
                print(f"  GET /users/{user_id} -> {body}")
            state = (
                users.resilient.runtime.breaker.state if users.resilient.runtime.breaker else "-"
            )
            print(f"  breaker state: {state}")


if __name__ == "__main__":
    main()
