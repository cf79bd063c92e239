"""What ``import svcclient`` loads, and what using a feature loads (issue 15: import time).

Each case runs in a fresh interpreter and compares module *sets*, never times: the heavy
dependencies are imported by the feature that needs them, not by ``import svcclient``.
``python -m benchmarks.bench_import`` has the milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Third-party packages (top-level names) ``import svcclient`` must not import, and the
# standard library modules it has no use for until a feature runs.
HEAVY = ("dns", "opentelemetry", "prometheus_client", "tenacity")
NOT_YET = ("tomllib",)
# anyio's package itself imports its parts lazily (two modules; the async body of
# _transports/bodies.py names it): what must wait for the async driver is the rest.
ASYNC_PARTS = (
    "anyio.from_thread",
    "anyio.to_thread",
    "anyio.lowlevel",
    "anyio._core._synchronization",
    "svcclient._transports.resilient_async",
)


def loaded_after(code: str) -> set[str]:
    """Top-level names of the modules in ``sys.modules`` once ``code`` has run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCCLIENT_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return {m.split(".")[0] for m in modules} | set(modules)


def test_import_loads_no_heavy_dependency() -> None:
    """``import svcclient`` imports none of dnspython, OpenTelemetry, tenacity,
    prometheus-client, tomllib or the async driver and anyio's parts (and none of
    svcclient's test helpers or CLI)."""
    loaded = loaded_after("import svcclient")
    assert "svcclient" in loaded and "httpx" in loaded
    assert sorted(loaded & {*HEAVY, *NOT_YET, *ASYNC_PARTS}) == []
    assert sorted(loaded & {"svcclient.testing", "svcclient._cli"}) == []


def test_the_sync_client_of_a_host_name_loads_what_it_uses() -> None:
    """A client of a host name builds DNS discovery, retries and the default observers:
    dnspython, tenacity, prometheus-client and OpenTelemetry are loaded then; anyio is not."""
    loaded = loaded_after(
        "import svcclient\n"
        "svcclient.ServiceClient('user-service', url='http://user-service:3000').close()"
    )
    assert {"dns", "tenacity", "prometheus_client", "opentelemetry"} <= loaded
    assert "dns.asyncresolver" not in loaded  # the async resolver waits for aresolve
    assert "svcclient._transports.resilient_async" not in loaded


def test_a_client_of_an_ip_without_observers_loads_no_dns_and_no_metrics() -> None:
    """With an IP address there is nothing to resolve, and ``hooks=[]`` builds no
    observers: neither dnspython nor prometheus-client nor OpenTelemetry is imported."""
    loaded = loaded_after(
        "import svcclient\n"
        "svcclient.ServiceClient('user-service', url='http://10.0.0.7:3000', hooks=[]).close()"
    )
    assert "tenacity" in loaded  # the client's RetryPolicy
    assert sorted(loaded & {"dns", "prometheus_client", "opentelemetry"}) == []
    # (anyio may come with httpcore's connection pool, as it does for httpx.Client().)


def test_the_async_client_loads_anyio() -> None:
    """The async driver (and anyio with it) comes with the first async client."""
    loaded = loaded_after(
        "import svcclient\n"
        "svcclient.AsyncServiceClient('user-service', url='http://10.0.0.7:3000', hooks=[])"
    )
    assert {"anyio", "svcclient._transports.resilient_async"} <= loaded


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("TracingHooks", "opentelemetry"),
        ("PrometheusHooks", "svcclient._observability.prometheus"),
        ("AsyncResilientTransport", "svcclient._transports.resilient_async"),
        ("instrument", "svcclient._observability.instrument"),
        ("HedgePolicy", "svcclient._policies.hedge"),
        ("ThrottlePolicy", "svcclient._policies.throttle"),
        ("ConcurrencyLimiter", "svcclient._policies.concurrency"),
    ],
)
def test_lazy_public_names_import_their_module_on_first_access(name: str, module: str) -> None:
    """``svcclient.<name>`` (and ``from svcclient import <name>``) imports its module then."""
    assert module not in loaded_after("import svcclient")
    assert module in loaded_after(f"from svcclient import {name}")


def test_off_by_default_policies_come_with_the_first_config() -> None:
    """Hedging, throttling and the concurrency limit are imported by the first
    ServiceConfig (which checks every section), and then work through the config."""
    loaded = loaded_after(
        "import svcclient\n"
        "c = svcclient.ServiceConfig('s', url='http://10.0.0.7')\n"
        "assert c.with_overrides(hedge={'delay': 0.01}).hedge.delay == 0.01"
    )
    assert {
        "svcclient._policies.hedge",
        "svcclient._policies.throttle",
        "svcclient._policies.concurrency",
    } <= loaded


def test_config_file_loads_tomllib(tmp_path: Path) -> None:
    """tomllib is imported by load_config, not with svcclient."""
    path = tmp_path / "svc.toml"
    path.write_text('[services.user-service]\nurl = "http://10.0.0.7:3000"\n')
    assert "tomllib" in loaded_after(f"import svcclient\nsvcclient.load_config({str(path)!r})")


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The lazy ``__getattr__`` answers only for its own names."""
    import svcclient

    with pytest.raises(AttributeError, match="no_such_name"):
        svcclient.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert {"TracingHooks", "PrometheusHooks", "instrument"} <= set(dir(svcclient))
