"""pytest fixtures for code that uses svcclient (loaded through the ``pytest11`` entry point).

This module sits outside the ``svcclient`` package on purpose: pytest imports every
installed plugin at start-up, and importing anything under ``svcclient`` would import the
whole package into every test run of every project that has svcclient installed. Here
nothing of svcclient is imported until a test asks for one of these fixtures.

Fixtures:

* ``svc_registry`` - a fresh ``prometheus_client.CollectorRegistry`` (pass it as
  ``registry=`` so metric assertions see only this test's calls).
* ``svc_breakers`` - the shared breaker registry, cleared before and after the test
  (breakers are shared by service name, so one test's open breaker would leak).
* ``svc_env`` - set discovery variables for a test: ``svc_env.url("user-service",
  "http://127.0.0.2:8080")``, ``svc_env.kubernetes("user-service", "10.0.0.7", 8080)``,
  ``svc_env.namespace("demo")``, ``svc_env.option("user-service", "timeout", 1.5)``;
  every change is undone after the test (it uses ``monkeypatch``).
* ``svc_test_mode`` - test mode for the test: no retry backoff sleeps.
* ``start_fault_server`` - a function: ``start_fault_server("127.0.0.2", port=0,
  name="a")`` starts a :class:`~svcclient.testing.FaultServer` on loopback and returns
  it; every server it started is stopped at teardown.
* ``local_dns`` - a started :class:`~svcclient.testing.LocalDns` (authoritative DNS on
  127.0.0.1, a free port); ``local_dns.set_records(name, ips, ttl)`` and pass
  ``dns_nameservers=[local_dns.nameserver]``.

svcclient is imported inside the fixtures, so merely having the plugin installed costs
a pytest run nothing (``tests/test_testing.py`` checks it in a subprocess).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from svcclient._policies.breaker.registry import BreakerRegistry
    from svcclient.testing._faultserver import FaultServer
    from svcclient.testing._localdns import LocalDns

__all__ = [
    "SvcEnv",
    "local_dns",
    "start_fault_server",
    "svc_breakers",
    "svc_env",
    "svc_registry",
    "svc_test_mode",
]


class SvcEnv:
    """Discovery and configuration environment variables, undone after the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._mp = monkeypatch

    @staticmethod
    def _prefix(name: str) -> str:
        from svcclient._discovery.rules import env_name

        return env_name(name)

    def url(self, name: str, url: str) -> None:
        """Set ``<NAME>_URL`` (discovery rule 1)."""
        self._mp.setenv(f"{self._prefix(name)}_URL", url)

    def kubernetes(self, name: str, host: str, port: int) -> None:
        """Set ``<NAME>_SERVICE_HOST`` / ``<NAME>_SERVICE_PORT`` as the kubelet does (rule 2)."""
        prefix = self._prefix(name)
        self._mp.setenv(f"{prefix}_SERVICE_HOST", host)
        self._mp.setenv(f"{prefix}_SERVICE_PORT", str(port))

    def namespace(self, namespace: str) -> None:
        """Set ``POD_NAMESPACE`` (used by the cluster-DNS rule)."""
        self._mp.setenv("POD_NAMESPACE", namespace)

    def option(self, name: str, key: str, value: object) -> None:
        """Set ``SVCCLIENT_<NAME>__<KEY>``: ``option("user-service", "retry.attempts", 5)``."""
        from svcclient._config.env import override_variable

        var = override_variable(name, key)
        self._mp.setenv(var, str(value))

    def config_file(self, path: object) -> None:
        """Point ``SVCCLIENT_CONFIG`` at a TOML file."""
        self._mp.setenv("SVCCLIENT_CONFIG", str(path))

    def clear(self, name: str) -> None:
        """Remove every discovery and ``SVCCLIENT_<NAME>__*`` variable of ``name``."""
        import os

        prefix = self._prefix(name)
        for var in (f"{prefix}_URL", f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"):
            self._mp.delenv(var, raising=False)
        for var in list(os.environ):
            if var.startswith(f"SVCCLIENT_{prefix}__"):
                self._mp.delenv(var, raising=False)


@pytest.fixture
def svc_registry() -> CollectorRegistry:
    """A fresh Prometheus registry for this test."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


@pytest.fixture
def svc_breakers() -> Iterator[BreakerRegistry]:
    """``svcclient.breakers``, emptied before and after the test."""
    from svcclient._policies.breaker.registry import breakers

    breakers.clear()
    yield breakers
    breakers.clear()


@pytest.fixture
def svc_env(monkeypatch: pytest.MonkeyPatch) -> SvcEnv:
    """Set discovery variables (``<NAME>_URL`` ...) for this test only."""
    return SvcEnv(monkeypatch)


@pytest.fixture
def svc_test_mode() -> Iterator[None]:
    """svcclient test mode for this test: retries happen without backoff sleeps."""
    from svcclient._pipeline.testmode import set_state

    previous = set_state(True, None)
    yield
    set_state(*previous)


@pytest.fixture
def start_fault_server() -> Iterator[Callable[..., FaultServer]]:
    """``start_fault_server("127.0.0.2", name="a") -> FaultServer``: started, stopped after."""
    from svcclient.testing._faultserver import FaultServer

    servers: list[FaultServer] = []

    def make(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> FaultServer:
        server = FaultServer(host, port, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def local_dns() -> Iterator[LocalDns]:
    """A started in-process DNS server on 127.0.0.1 (see ``svcclient.testing.LocalDns``)."""
    from svcclient.testing._localdns import LocalDns

    with LocalDns() as server:
        yield server
