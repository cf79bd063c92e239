"""Inside a simulated pod: run by test_pod_simulation.py under ``unshare --mount --net``.

Sets up what a kubelet gives a container — resolv.conf with the namespace's search list
and ``ndots:5``, the service-account namespace file, kubelet variables for several
Services (``user`` beside ``user-service``, a multi-port one) — plus dnsmasq as CoreDNS on
127.0.0.1:53 (``--log-queries``), pods as FaultServers on 127.0.0.2-7:8080 and
kube-proxy stand-ins for the ClusterIPs. Runs the scenarios and prints one JSON object
(the test asserts on it). The last scenarios (:func:`pool_scenarios`) drive svcclient's
own HTTP/1.1 pool (what pinned transports use) against a headless Service of three pods
on 127.0.0.21-23:8080, sync and async (asyncio, trio), counting TCP connections on the
pods' side. Never run it outside a private namespace: it mounts over /etc/resolv.conf
and /run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

NS = "shop"
PORT = 8080
TTL = 1
SEARCH = f"{NS}.svc.cluster.local svc.cluster.local cluster.local"
ZONE = f"{NS}.svc.cluster.local"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)


class Dns:
    """dnsmasq on 127.0.0.1:53, authoritative for cluster.local, logging every query."""

    def __init__(self, tmp: Path) -> None:
        self.hosts = tmp / "cluster.hosts"
        self.log = tmp / "dnsmasq.log"
        self.conf = tmp / "dnsmasq.conf"
        self.records: dict[str, list[str]] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        lines = [f"{ip} {name}" for name, ips in self.records.items() for ip in ips]
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts)

    def start(self) -> None:
        self.write()
        self.conf.write_text(
            "\n".join(
                [
                    "no-resolv",
                    "no-hosts",
                    "bind-interfaces",
                    "listen-address=127.0.0.1",
                    "port=53",
                    f"addn-hosts={self.hosts}",
                    f"local-ttl={TTL}",
                    "local=/cluster.local/",
                    "pid-file=",
                    "user=root",
                    "group=root",
                    "log-queries",
                    f"log-facility={self.log}",
                ]
            )
            + "\n"
        )
        self.proc = subprocess.Popen(
            ["dnsmasq", "--no-daemon", f"--conf-file={self.conf}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.getaddrinfo(f"ready.{ZONE}", 80)
            except socket.gaierror:
                time.sleep(0.05)
                continue
            return
        raise RuntimeError("dnsmasq did not answer")

    def set(self, name: str, ips: list[str]) -> None:
        self.records[name] = ips
        self.write()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)  # re-read addn-hosts
        time.sleep(0.2)

    def queries(self) -> list[str]:
        """``query[A] name`` lines logged so far."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        out = []
        for line in text.splitlines():
            if "query[" in line:
                part = line[line.index("query[") :]
                out.append(" ".join(part.split()[:2]))
        return out

    def count(self, action: Any) -> tuple[int, list[str]]:
        """Queries ``action()`` caused."""
        before = len(self.queries())
        action()
        time.sleep(0.1)  # dnsmasq writes its log asynchronously
        new = self.queries()[before:]
        return len(new), new

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)


def setup_pod(tmp: Path) -> None:
    sh("ip", "link", "set", "lo", "up")
    resolv = tmp / "resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.1\nsearch {SEARCH}\noptions ndots:5\n")
    sh("mount", "--bind", str(resolv), "/etc/resolv.conf")
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")
    sa = Path("/run/secrets/kubernetes.io/serviceaccount")
    sa.mkdir(parents=True)
    (sa / "namespace").write_text(NS)


# -- svcclient's HTTP/1.1 pool in the pod --------------------------------------------------

POOL_PODS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
POOL_REQUESTS = 400  # per scenario
CONCURRENCY = {"sync": 8, "asyncio": 16, "trio": 16}  # threads / tasks in flight
SCENARIO_BOUND = 60.0  # seconds; every scenario stops by then


def _open_on(pods: list[Any]) -> int:
    return sum(p.open_connections for p in pods)


def _wait_all_closed(pods: list[Any], bound: float = 5.0) -> int:
    """Connections the pods still hold once the client closed (0 unless it leaked)."""
    stop_at = time.monotonic() + bound
    while _open_on(pods) and time.monotonic() < stop_at:
        time.sleep(0.01)
    return _open_on(pods)


def _pool_types(client: Any) -> list[str]:
    return sorted({type(t._pool).__name__ for t in client.resilient._pools._pools.values()})


def _run_sync(pods: list[Any], path: str, on_start: Callable[[], None] | None) -> dict[str, Any]:
    """POOL_REQUESTS GETs from CONCURRENCY["sync"] threads on one ServiceClient."""
    from prometheus_client import CollectorRegistry

    from svcclient import ServiceClient

    served: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    with ServiceClient("pool", port=PORT, registry=CollectorRegistry()) as c:

        def one(_: int) -> None:
            try:
                who = c.get(path).json()["server"]
            except Exception as exc:  # counted: the test asserts there are none
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                served[who] += 1

        helper = threading.Thread(target=on_start, daemon=True) if on_start else None
        if helper is not None:
            helper.start()
        with ThreadPoolExecutor(CONCURRENCY["sync"]) as ex:
            for f in [ex.submit(one, i) for i in range(POOL_REQUESTS)]:
                f.result(SCENARIO_BOUND)
        if helper is not None:
            helper.join(SCENARIO_BOUND)
        pools, idle_open = _pool_types(c), _open_on(pods)
    return {"served": dict(served), "failures": failures, "pools": pools, "idle_open": idle_open}


def _run_async(
    pods: list[Any], path: str, on_start: Callable[[], Any] | None, backend: str
) -> dict[str, Any]:
    """The same with CONCURRENCY[backend] tasks on one AsyncServiceClient under anyio."""
    import anyio
    from prometheus_client import CollectorRegistry

    from svcclient import AsyncServiceClient

    served: Counter[str] = Counter()
    failures: list[str] = []

    async def scenario() -> dict[str, Any]:
        with anyio.fail_after(SCENARIO_BOUND):
            async with AsyncServiceClient("pool", port=PORT, registry=CollectorRegistry()) as c:
                limiter = anyio.Semaphore(CONCURRENCY[backend])

                async def one() -> None:
                    async with limiter:
                        try:
                            served[(await c.get(path)).json()["server"]] += 1
                        except Exception as exc:  # counted: the test asserts there are none
                            failures.append(f"{type(exc).__name__}: {exc}")

                async with anyio.create_task_group() as tg:
                    if on_start is not None:
                        tg.start_soon(on_start)
                    for _ in range(POOL_REQUESTS):
                        tg.start_soon(one)
                pools, idle_open = _pool_types(c), _open_on(pods)
        return {"pools": pools, "idle_open": idle_open}

    row = anyio.run(scenario, backend=backend)
    return {"served": dict(served), "failures": failures, **row}


def _keepalive(pods: list[Any], mode: str) -> dict[str, Any]:
    """Many requests, then close: TCP connections opened, and whether they all closed."""
    before = [p.accepted for p in pods]
    row = (
        _run_sync(pods, "/keep", None) if mode == "sync" else _run_async(pods, "/keep", None, mode)
    )
    row["new_connections"] = {p.host: p.accepted - b for p, b in zip(pods, before, strict=True)}
    row["open_after_close"] = _wait_all_closed(pods)
    return row


def _pod_goes_away(pods: list[Any], mode: str) -> dict[str, Any]:
    """The third pod stalls its requests, then dies with them in flight (listener closed,
    connections reset: connection refused from then on) while DNS still lists it."""
    from svcclient.testing import Fault

    gone = pods[2]
    gone.clear()
    gone.set_fault(Fault.stall_before_headers(30.0))  # in flight until the pod goes away
    seen: dict[str, int] = {}

    def first_request_in_flight() -> bool:
        return gone.count("GET", "/away") > 0

    def kill_sync() -> None:
        stop_at = time.monotonic() + SCENARIO_BOUND / 2
        while not first_request_in_flight() and time.monotonic() < stop_at:
            time.sleep(0.001)
        seen["in_flight"] = gone.count("GET", "/away")
        gone.refuse()

    async def kill_async() -> None:
        import anyio

        stop_at = time.monotonic() + SCENARIO_BOUND / 2
        while not first_request_in_flight() and time.monotonic() < stop_at:
            await anyio.sleep(0.001)
        seen["in_flight"] = gone.count("GET", "/away")
        await anyio.to_thread.run_sync(gone.refuse)

    try:
        if mode == "sync":
            row = _run_sync(pods, "/away", kill_sync)
        else:
            row = _run_async(pods, "/away", kill_async, mode)
    finally:
        gone.set_fault(Fault.ok())  # listening again for the next scenario
    row["in_flight_when_gone"] = seen.get("in_flight", 0)
    row["received_by_gone_pod"] = gone.count("GET", "/away")
    row["open_after_close"] = _wait_all_closed(pods)
    return row


def pool_scenarios(dns: Dns) -> dict[str, Any]:
    """Keep-alive reuse, a pod going away and close, sync / asyncio / trio (one dict each;
    a scenario that raises reports ``error`` and the others still run)."""
    from svcclient.testing import FaultServer

    dns.set(f"pool.{ZONE}", list(POOL_PODS))
    pods = [FaultServer(h, PORT, name=h).start() for h in POOL_PODS]
    out: dict[str, Any] = {}
    try:
        for name, scenario in (("keepalive", _keepalive), ("pod_goes_away", _pod_goes_away)):
            for mode in CONCURRENCY:
                try:
                    out[f"{name}_{mode}"] = scenario(pods, mode)
                except Exception as exc:
                    out[f"{name}_{mode}"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        for p in pods:
            with contextlib.suppress(Exception):
                p.stop()
    return out


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="pod-sim-"))
    setup_pod(tmp)
    from prometheus_client import CollectorRegistry

    from svcclient import ServiceClient, discover
    from svcclient._discovery.dns import DnsResolver
    from svcclient.testing import FaultServer
    from svcclient.testing._kubeproxy import KubeProxy
    from tests.kubelet_env import Service, kubelet_environ

    out: dict[str, Any] = {}
    dns = Dns(tmp)
    dns.records = {
        f"ready.{ZONE}": ["127.0.0.1"],
        f"user-service.{ZONE}": ["127.0.0.10"],
        f"user.{ZONE}": ["127.0.0.11"],
        f"billing.{ZONE}": ["127.0.0.5", "127.0.0.6"],
        f"odd.{ZONE}": ["169.254.169.254", "224.0.0.1", "127.0.0.7"],
    }
    dns.start()
    pods = {h: FaultServer(h, PORT, name=h).start() for h in [f"127.0.0.{i}" for i in range(2, 8)]}
    vip_us = KubeProxy("127.0.0.10", PORT, backends=[("127.0.0.2", PORT), ("127.0.0.3", PORT)])
    vip_u = KubeProxy("127.0.0.11", PORT, backends=[("127.0.0.4", PORT)])
    vip_us.start()
    vip_u.start()
    services = [
        Service("user", "127.0.0.11", (("", PORT),)),
        Service("user-service", "127.0.0.10", (("metrics", 9090), ("http", PORT))),
        Service("billing-api", "127.0.0.12", (("grpc", 9000), ("https", 8443))),
    ]
    base_env = dict(os.environ)

    def who(r: Any) -> str:
        return str(r.json()["server"])

    try:
        # -- kubelet variables, in both fill orders ----------------------------------------
        for label, order in (("user_first", services), ("user_service_first", services[::-1])):
            os.environ.clear()
            os.environ.update(base_env)
            os.environ.update(kubelet_environ(order))
            os.environ["SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS"] = "5"
            row: dict[str, Any] = {"USER_SERVICE_PORT": os.environ["USER_SERVICE_PORT"]}
            for name, default in (
                ("user", f"http://user:{PORT}"),
                ("user-service", None),
                ("billing-api", None),
            ):
                d = discover(name, default)
                row[name] = {"url": d.url, "source": d.source, "tried": list(d.tried)}
            with ServiceClient(
                "user", url=f"http://user:{PORT}", registry=CollectorRegistry()
            ) as c:
                row["user_calls"] = [who(c.get("/u")) for _ in range(5)]
                row["user_attempts"] = c.config.retry.attempts
            with ServiceClient("user-service", registry=CollectorRegistry()) as c:
                row["user_service_calls"] = [who(c.get("/us")) for _ in range(30)]
                row["user_service_attempts"] = c.config.retry.attempts
            out[label] = row
        os.environ.clear()
        os.environ.update(base_env)

        # -- namespace file and the cluster-DNS rule -----------------------------------------
        d = discover("billing")
        out["billing_discovery"] = {"url": d.url, "tried": list(d.tried)}

        # -- DNS queries per refresh: svcclient vs glibc --------------------------------------
        system = DnsResolver(None, timeout=2.0)
        fqdn = f"billing.{ZONE}"
        counts: dict[str, Any] = {}
        for label, host in (
            ("absolute", fqdn + "."),
            ("relative_fqdn", fqdn),
            ("short", "billing"),
        ):
            n, q = dns.count(lambda h=host: system.resolve(h, PORT))
            g, gq = dns.count(lambda h=host: socket.getaddrinfo(h, PORT, type=socket.SOCK_STREAM))
            counts[label] = {"svcclient": n, "glibc": g, "svcclient_q": q, "glibc_q": gq}
        out["dns_queries"] = counts

        # -- explicit nameservers keep the search list ------------------------------------------
        with ServiceClient(
            "billing",
            url=f"http://billing:{PORT}",
            dns_nameservers=["127.0.0.1"],
            registry=CollectorRegistry(),
        ) as c:
            served = [who(c.get("/b")) for _ in range(20)]
            rt = c.resilient.runtime
            out["explicit_ns"] = {
                "endpoints": [e.key for e in rt.balancer.endpoints],
                "served": sorted(set(served)),
                "system_fallback": rt.system_fallback,
            }

        # -- odd answers -------------------------------------------------------------------
        odd = DnsResolver(["127.0.0.1"], timeout=2.0)
        res = odd.resolve("odd", PORT)
        out["odd"] = {"endpoints": [e.key for e in res.endpoints], "dropped": odd.dropped_addresses}

        # -- headless pods that come and go ------------------------------------------------
        failures = 0
        seen_after: dict[str, int] = {}
        with ServiceClient("billing", port=PORT, registry=CollectorRegistry()) as c:
            for _ in range(30):
                try:
                    c.get("/flow")
                except Exception:
                    failures += 1
            dns.set(fqdn, ["127.0.0.5", "127.0.0.7"])  # .6 leaves, .7 joins
            pods["127.0.0.6"].refuse()  # the leaving pod stops listening
            stop_at = time.monotonic() + 10.0
            calls = 0
            while time.monotonic() < stop_at and calls < 2000:
                calls += 1
                try:
                    r = c.get("/after")
                    seen_after[who(r)] = seen_after.get(who(r), 0) + 1
                except Exception:
                    failures += 1
                if seen_after.get("127.0.0.7", 0) >= 20:
                    break
                time.sleep(0.005)
            out["churn"] = {
                "failures": failures,
                "after": seen_after,
                "endpoints": [e.key for e in c.resilient.runtime.balancer.endpoints],
            }
        out["kube_proxy_connections"] = {f"{h}:{p}": n for (h, p), n in vip_us.connections.items()}
        out["pool"] = pool_scenarios(dns)
    finally:
        vip_us.stop()
        vip_u.stop()
        for p in pods.values():
            with contextlib.suppress(Exception):
                p.stop()
        dns.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
