"""svcclient inside a simulated pod (issue 13): private mount+network namespace, the pod's
resolv.conf (search list, ndots:5), the service-account namespace file, dnsmasq as CoreDNS
on 127.0.0.1:53, kubelet variables (``user`` beside ``user-service``, a multi-port
Service), pods that come and go, kube-proxy stand-ins, and svcclient's own HTTP/1.1 pool
against a headless Service (keep-alive reuse, a pod dying mid-request, close). ``pod_sim.py``
runs the scenarios in the namespace and reports counts; these tests assert on them (never
on wall time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = Path(__file__).with_name("pod_sim.py")


def _unavailable() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root for unshare --mount --net"
    for tool in ("unshare", "ip", "mount", "dnsmasq"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "true"], capture_output=True, check=False, timeout=10
    )
    if probe.returncode != 0:
        return f"unshare --mount --net not permitted here: {probe.stderr.decode()[-200:]}"
    return None


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    """Run the pod simulation once; its JSON report."""
    reason = _unavailable()
    if reason is not None:
        pytest.skip(f"pod simulation skipped: {reason}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"] + ":/usr/sbin"}
    env = {k: v for k, v in env.items() if not k.startswith(("SVCCLIENT_", "POD_NAMESPACE"))}
    proc = subprocess.run(
        ["unshare", "--mount", "--net", sys.executable, str(SIM)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("order", ["user_first", "user_service_first"])
def test_user_beside_user_service_in_either_fill_order(pod: dict[str, Any], order: str) -> None:
    """Whichever USER_SERVICE_PORT the kubelet left, both clients reach their own pods."""
    row = pod[order]
    assert row["user"]["url"] == "http://127.0.0.11:8080"
    assert set(row["user_calls"]) == {"127.0.0.4"}
    assert row["user-service"]["url"] == "http://127.0.0.10:8080"  # named port http
    assert set(row["user_service_calls"]) <= {"127.0.0.2", "127.0.0.3"}
    assert len(row["user_service_calls"]) == 30


def test_fill_orders_really_differ(pod: dict[str, Any]) -> None:
    """The simulation exercises the collision: one order leaves user-service's tcp:// value."""
    ports = {pod[o]["USER_SERVICE_PORT"] for o in ("user_first", "user_service_first")}
    assert ports == {"tcp://127.0.0.10:9090", "8080"}


def test_override_for_user_service_leaves_user_alone(pod: dict[str, Any]) -> None:
    """SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS=5 configures user-service, not user."""
    for order in ("user_first", "user_service_first"):
        assert (pod[order]["user_service_attempts"], pod[order]["user_attempts"]) == (5, 3)


def test_https_named_port_of_a_multi_port_service(pod: dict[str, Any]) -> None:
    """billing-api (grpc first, https second): the https port, as an https URL."""
    assert pod["user_first"]["billing-api"]["url"] == "https://127.0.0.12:8443"


def test_namespace_from_the_service_account_file(pod: dict[str, Any]) -> None:
    """No POD_NAMESPACE: the mounted namespace file names 'shop'; the name is absolute."""
    found = pod["billing_discovery"]
    assert found["url"] == "http://billing.shop.svc.cluster.local.:80"
    assert "serviceaccount/namespace" in found["tried"][-1]


def test_dns_queries_per_refresh_match_glibc_or_beat_it(pod: dict[str, Any]) -> None:
    """Absolute name and short name: 2 queries like glibc; a relative FQDN: 5 (glibc 8)."""
    q = pod["dns_queries"]
    assert (q["absolute"]["svcclient"], q["absolute"]["glibc"]) == (2, 2)
    assert (q["short"]["svcclient"], q["short"]["glibc"]) == (2, 2)
    assert (q["relative_fqdn"]["svcclient"], q["relative_fqdn"]["glibc"]) == (5, 8)


def test_explicit_nameserver_keeps_the_search_list(pod: dict[str, Any]) -> None:
    """dns_nameservers=["127.0.0.1"] and the short name: both pods, no system fallback."""
    ns = pod["explicit_ns"]
    assert ns["endpoints"] == ["127.0.0.5:8080", "127.0.0.6:8080"]
    assert ns["served"] == ["127.0.0.5", "127.0.0.6"]
    assert ns["system_fallback"] is None


def test_link_local_and_multicast_answers_are_dropped(pod: dict[str, Any]) -> None:
    """169.254.169.254 and 224.0.0.1 in the answer never become endpoints."""
    assert pod["odd"] == {"endpoints": ["127.0.0.7:8080"], "dropped": 2}


def test_headless_pods_that_come_and_go(pod: dict[str, Any]) -> None:
    """.6 leaves (and stops listening), .7 joins: no call fails and .7 gets traffic."""
    churn = pod["churn"]
    assert churn["failures"] == 0
    assert churn["endpoints"] == ["127.0.0.5:8080", "127.0.0.7:8080"]
    assert churn["after"].get("127.0.0.7", 0) >= 20


# -- svcclient's own HTTP/1.1 pool (pod_sim.pool_scenarios) --------------------------------

POOL_PODS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
POOL_REQUESTS = 400
CONCURRENCY = {"sync": 8, "asyncio": 16, "trio": 16}
MODES = list(CONCURRENCY)


def _scenario(pod: dict[str, Any], name: str) -> dict[str, Any]:
    row: dict[str, Any] = pod["pool"][name]
    assert "error" not in row, row.get("error")
    return row


@pytest.mark.parametrize("mode", MODES)
def test_pinned_transports_use_svcclient_pool(pod: dict[str, Any], mode: str) -> None:
    """Every endpoint of the headless Service is served by svcclient's HTTP/1.1 pool."""
    row = _scenario(pod, f"keepalive_{mode}")
    assert row["pools"] == (["HTTP11Pool"] if mode == "sync" else ["AsyncHTTP11Pool"])


@pytest.mark.parametrize("mode", MODES)
def test_keepalive_connections_are_reused_across_the_pods(pod: dict[str, Any], mode: str) -> None:
    """400 GETs over 3 pod IPs open at most concurrency connections per pod, and each one
    opened stays open for reuse (the pods see as many open as they accepted)."""
    row = _scenario(pod, f"keepalive_{mode}")
    assert row["failures"] == []
    assert sorted(row["served"]) == POOL_PODS
    assert sum(row["served"].values()) == POOL_REQUESTS
    new = row["new_connections"]
    assert all(1 <= new[h] <= CONCURRENCY[mode] for h in POOL_PODS), new
    assert sum(new.values()) <= len(POOL_PODS) * CONCURRENCY[mode]
    assert row["idle_open"] == sum(new.values())


@pytest.mark.parametrize("mode", MODES)
def test_idle_connections_close_with_the_client(pod: dict[str, Any], mode: str) -> None:
    """Closing the client closes its pools' idle connections: the pods see every one go."""
    for name in (f"keepalive_{mode}", f"pod_goes_away_{mode}"):
        row = _scenario(pod, name)
        assert row["idle_open"] >= 2  # (the pod that went away has none left)
        assert row["open_after_close"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_pod_going_away_loses_no_idempotent_request(pod: dict[str, Any], mode: str) -> None:
    """A pod dies with GETs in flight and refuses connections after, still in DNS: every
    GET is answered by the two pods left (the in-flight ones retried)."""
    row = _scenario(pod, f"pod_goes_away_{mode}")
    assert row["failures"] == []
    assert sum(row["served"].values()) == POOL_REQUESTS
    assert sorted(row["served"]) == POOL_PODS[:2]
    assert row["in_flight_when_gone"] >= 1
