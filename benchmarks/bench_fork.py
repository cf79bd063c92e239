"""Fork safety: what a forked child (the gunicorn ``--preload`` pattern) gets from a client.

Issue 12, finding 3. A client is created and used, then the process forks and parent and
child both go on using it, against a real loopback echo server (``Fault.ok`` answers with
the method and path it read, so a unique id in the path tells whose response came back).

* ``crosstalk``: parent and child each send ``--requests`` requests at once, sync
  (``ServiceClient`` and ``httpx.Client(transport=ResilientTransport(...))``) and async
  (``AsyncServiceClient``, the child on a fresh event loop). Counts responses whose echoed
  id is not the one sent, and errors.
* ``deadlock``: an app thread keeps sending (the server stalls a little before headers,
  so it is mostly mid-request) while the main thread forks ``--forks`` children; each
  child must finish one request within ``--limit`` seconds or is killed: counted as a
  deadlock.
* ``health``: whether the child's active health checks probe (the parent's client is
  closed after the fork, so every probe counted then is the child's).

Counts, not wall time, decide every figure. Every child ends with ``os._exit`` and is
killed after its limit, so a run is bounded. Run
``python -m benchmarks.bench_fork [--requests 200] [--forks 20] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time

import anyio
import httpx

from svcclient import AsyncServiceClient, OutlierPolicy, ResilientTransport, ServiceClient
from svcclient.testing._faultserver import Fault, FaultServer
from svcclient.testing._forking import (
    Result,
    aecho_ids,
    echo_ids,
    fork_child,
    reap_child,
    warm_pool,
)

__all__ = ["main", "run"]


def _sync_client(kind: str, url: str) -> httpx.Client:
    if kind == "ServiceClient":
        return ServiceClient("echo", url=url, hooks=[])
    return httpx.Client(base_url=url, transport=ResilientTransport("echo", url=url, hooks=[]))


def crosstalk_sync(url: str, kind: str, n: int) -> Result:
    client = _sync_client(kind, url)
    warm_pool(client)
    pid, fd = fork_child(lambda: echo_ids(client, "child", n))
    parent = echo_ids(client, "parent", n)
    child = reap_child(pid, fd, time.monotonic() + 120)
    client.close()
    return {"parent": parent, "child": child}


def crosstalk_async(url: str, n: int, backend: str) -> Result:
    """The parent's client lives on an event loop in a thread (an anyio portal); the
    child cannot use that loop (its thread is not copied) and runs a fresh one."""
    from anyio.from_thread import start_blocking_portal

    client = AsyncServiceClient("echo", url=url, hooks=[])

    async def warm() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client.get, "/warm")

    with start_blocking_portal(backend) as portal:
        portal.call(warm)

        def child() -> Result:
            return anyio.run(aecho_ids, client, "child", n, backend=backend)

        pid, fd = fork_child(child)
        parent = portal.call(aecho_ids, client, "parent", n)
        got = reap_child(pid, fd, time.monotonic() + 120)
        portal.call(client.aclose)
    return {"parent": parent, "child": got}


def deadlocks(url: str, server: FaultServer, forks: int, limit: float) -> Result:
    server.set_fault(Fault.stall_before_headers(0.02))
    client = ServiceClient("echo", url=url, hooks=[], timeout=5.0, deadline=10.0)
    stop = threading.Event()

    def app() -> None:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                client.get(f"/app/{i}")
            i += 1

    threads = [threading.Thread(target=app, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    rng = random.Random(12)
    children = []
    try:
        for k in range(forks):
            time.sleep(rng.uniform(0.0, 0.03))
            children.append(fork_child(lambda k=k: echo_ids(client, f"child{k}", 1)))
        give_up = time.monotonic() + limit
        results = [reap_child(pid, fd, give_up) for pid, fd in children]
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        client.close()
        server.set_fault(Fault.ok())
    hung = sum(r is None for r in results)
    failed = sum(1 for r in results if r is not None and (r.get("crashed") or r["errors"]))
    crossed = sum(r["crossed"] for r in results if r is not None and not r.get("crashed"))
    return {"forks": forks, "deadlocked": hung, "failed": failed, "crossed": crossed}


def health(url: str, server: FaultServer) -> Result:
    outlier = OutlierPolicy(health_check_path="/healthz", health_check_interval=0.1)
    client = ServiceClient("echo", url=url, hooks=[], outlier=outlier)
    client.get("/warm")

    def child() -> Result:
        client.get("/child")
        time.sleep(1.0)
        return {}

    pid, fd = fork_child(child)
    client.close()  # the parent's checker stops: every later probe is the child's
    before = server.count(path="/healthz")
    got = reap_child(pid, fd, time.monotonic() + 30)
    return {"child_ok": got is not None, "child_probes": server.count(path="/healthz") - before}


def run(requests: int = 200, forks: int = 20, rounds: int = 3, limit: float = 20.0) -> Result:
    """Every scenario ``rounds`` times; returns the raw results."""
    out: Result = {"crosstalk": [], "deadlock": [], "health": []}
    with FaultServer("127.0.0.1", name="echo") as server:
        url = server.url
        for _ in range(rounds):
            for kind in ("ServiceClient", "httpx.Client+ResilientTransport"):
                out["crosstalk"].append({"kind": kind, **crosstalk_sync(url, kind, requests)})
            for backend in ("asyncio", "trio"):
                result = crosstalk_async(url, requests, backend)
                out["crosstalk"].append({"kind": f"AsyncServiceClient/{backend}", **result})
            out["deadlock"].append(deadlocks(url, server, forks, limit))
            out["health"].append(health(url, server))
    return out


def render(out: Result) -> str:
    lines = ["| scenario | parent crossed/errors | child crossed/errors |", "|---|---|---|"]
    for r in out["crosstalk"]:
        c = r["child"]
        child = "killed" if c is None else f"{c.get('crossed')}/{c.get('errors')}"
        parent = f"{r['parent']['crossed']}/{r['parent']['errors']}"
        lines.append(f"| {r['kind']} | {parent} | {child} |")
    lines += ["", "| forks | deadlocked | failed | crossed |", "|---|---|---|---|"]
    for r in out["deadlock"]:
        lines.append(f"| {r['forks']} | {r['deadlocked']} | {r['failed']} | {r['crossed']} |")
    lines += ["", "| child finished | child's health probes in 1 s |", "|---|---|"]
    for r in out["health"]:
        lines.append(f"| {r['child_ok']} | {r['child_probes']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=float, default=20.0, help="seconds a child may take")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not hasattr(os, "fork"):
        print("os.fork is not available here", file=sys.stderr)
        return 2
    out = run(args.requests, args.forks, args.rounds, args.limit)
    print(json.dumps(out, indent=1) if args.json else render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
