"""Import time of ``svcclient`` against ``import httpx`` (issue 15: at most 1.3 x).

Each sample is a fresh interpreter run with ``-X importtime``; the figure is the
cumulative microseconds of the top-level import (interpreter start-up excluded). The two
imports are interleaved and the minimum of N runs is kept, so machine noise (other jobs
on a shared box) inflates neither side more than the other.

    python -m benchmarks.bench_import [--runs 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def import_us(module: str) -> int:
    """Cumulative microseconds ``import module`` takes in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    for line in reversed(out.splitlines()):
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}")


def measure(runs: int) -> dict[str, int]:
    """Minimum over ``runs`` interleaved samples of httpx and svcclient."""
    modules = ("httpx", "svcclient")
    best = dict.fromkeys(modules, sys.maxsize)
    for _ in range(runs):
        for module in modules:
            best[module] = min(best[module], import_us(module))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    best = measure(args.runs)
    ratio = best["svcclient"] / best["httpx"]
    print(
        f"import time (min of {args.runs}, interleaved): httpx {best['httpx'] / 1000:.1f} ms, "
        f"svcclient {best['svcclient'] / 1000:.1f} ms, ratio {ratio:.2f} (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
