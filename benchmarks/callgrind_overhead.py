"""Instructions per request, bare httpx vs svcclient variants, counted by callgrind.

Wall-clock ratios on a shared machine move by ±10 µs between runs; instruction counts do
not. Each variant runs twice under ``valgrind --tool=callgrind`` (0 and N requests on an
in-process ``httpx.MockTransport``, with ``PYTHONHASHSEED=0``) and the difference divided
by N is its cost per request. Not part of ``python -m benchmarks`` (it needs valgrind and
takes about a minute per variant): run ``python -m benchmarks.callgrind_overhead``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

VARIANTS = {
    "bare httpx": "httpx.Client(transport=mock, base_url=URL)",
    "svcclient defaults": (
        "ServiceClient('v', url=URL, transport=mock, registry=CollectorRegistry())"
    ),
    "svcclient hooks=[]": "ServiceClient('v', url=URL, transport=mock, hooks=[])",
    "svcclient hooks=[], no breaker/budget/bulkhead": (
        "ServiceClient('v', url=URL, transport=mock, hooks=[], breaker=None, budget=None,"
        " bulkhead=None)"
    ),
}

CHILD = """
import sys, httpx
from prometheus_client import CollectorRegistry
from svcclient import ServiceClient
URL = "http://127.0.0.1:3000"
mock = httpx.MockTransport(lambda r: httpx.Response(200, content=b'{{"ok":true}}'))
client = {expr}
for _ in range(50):
    client.get("/users/1")
for _ in range({n}):
    client.get("/users/1")
"""


def _count(expr: str, n: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD.format(expr=expr, n=n),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="requests per variant")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt-get install valgrind)")
        return 2
    jobs = [(name, expr, n) for name, expr in VARIANTS.items() for n in (0, args.n)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        counts = dict(zip(jobs, pool.map(lambda j: _count(j[1], j[2]), jobs), strict=True))
    per = {
        name: (counts[(name, expr, args.n)] - counts[(name, expr, 0)]) / args.n
        for name, expr in VARIANTS.items()
    }
    bare = per["bare httpx"]
    print("| variant | instructions/request | added | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in per.items():
        print(f"| {name} | {value:,.0f} | {value - bare:+,.0f} | {value / bare:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
