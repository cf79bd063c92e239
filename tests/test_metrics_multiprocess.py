"""PrometheusHooks under prometheus-client multiprocess mode (gunicorn-style workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# One "worker": records calls through PrometheusHooks, opens its breaker, and (worker 1
# only) leaves one call in flight when it exits.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    import httpx
    from svcclient._observability.hooks import AttemptInfo, CallInfo, call_ended
    from svcclient._observability.prometheus import PrometheusHooks

    worker = int(sys.argv[1])
    hooks = PrometheusHooks()
    PrometheusHooks()  # a second client in the same worker must not raise
    for i in range(3):
        req = httpx.Request("GET", "http://users.svc/users/1")
        call = CallInfo("users", "GET", "/users/{id}", req, time.perf_counter())
        hooks.on_request_start(call)
        if i == 2:
            a = AttemptInfo(call, 0, None, req, time.perf_counter(), None, "read_timeout", 0.3)
        else:
            a = AttemptInfo(call, 0, None, req, time.perf_counter(), 200, None, 0.003)
        hooks.on_attempt_end(a)
        hooks.on_request_end(call_ended(call, 1, a.status_code, a.error_type, a.duration))
    hooks.on_breaker_transition("users", "closed", "open" if worker == 1 else "half_open")
    if worker == 1:
        hooks.on_request_start(CallInfo("users", "GET", "/x", req, 0.0))
    print(os.getpid())
    """
)


def _run_worker(worker: int, env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(worker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_workers_aggregate_through_multiprocess_collector(tmp_path: Path) -> None:
    """Two worker processes' series merge: histogram counts add, gauges use live modes."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = [_run_worker(1, env), _run_worker(2, env)]
    assert any(p.name.startswith("histogram_") for p in tmp_path.iterdir())

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    ok = {"method": "GET", "route": "/users/{id}", "status_code": "200", "target_service": "users"}
    failed = {**ok, "status_code": "0"}
    get = registry.get_sample_value
    assert get("http_request_duration_seconds_count", ok) == 4
    assert get("http_request_duration_seconds_bucket", {**ok, "le": "0.005"}) == 4
    assert get("http_request_duration_seconds_bucket", {**failed, "le": "0.25"}) == 0
    assert get("http_request_duration_seconds_bucket", {**failed, "le": "0.5"}) == 2
    errors = {"error_type": "read_timeout", "target_service": "users"}
    assert get("network_errors_total", errors) == 2
    # livemax: the worst live worker's breaker (worker 1 is open = 2).
    assert get("svcclient_circuit_breaker_state", {"target_service": "users"}) == 2
    # livesum: worker 1 left one call in flight.
    assert get("svcclient_requests_in_flight", {"target_service": "users"}) == 1

    # Once gunicorn's child_exit marks worker 1 dead, its live gauges disappear.
    mark_process_dead(pids[0], path=str(tmp_path))  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert (
        registry.get_sample_value("svcclient_circuit_breaker_state", {"target_service": "users"})
        == 1
    )
    assert (
        registry.get_sample_value("svcclient_requests_in_flight", {"target_service": "users"}) == 0
    )
    # Counters and histograms of dead workers are kept (they are cumulative).
    assert registry.get_sample_value("http_request_duration_seconds_count", ok) == 4
