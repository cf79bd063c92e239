"""Config loading: ``load_config`` on a TOML file with many services (issue 14).

The file has ``[defaults]`` and N ``[services.svc-<i>]`` tables, each with a URL, a
timeout and two policy sections (``retry``, ``breaker``), as a large deployment's
generated config would. Measured: the wall time of ``load_config(path, environ={})``
(TOML parse, merge with defaults, validation, environment overrides), best of a few
rounds, and the time per service. Loading must be linear: the figure for 10,000 services
should be about ten times the one for 1,000; the issue's goal is 10,000 in <= 2 s.

Run ``python -m benchmarks.bench_config [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from svcclient import load_config

__all__ = ["main", "run", "write_config"]


def write_config(path: Path, services: int) -> None:
    """A TOML file with ``[defaults]`` and ``services`` service tables."""
    lines = ["[defaults]", "timeout = 1.0", "deadline = 2.5", ""]
    for i in range(services):
        name = f"svc-{i}"
        lines += [
            f"[services.{name}]",
            f'url = "http://{name}.prod.svc.cluster.local:8080"',
            f"timeout = {0.5 + (i % 5) * 0.1:.1f}",
            f"[services.{name}.retry]",
            f"attempts = {2 + i % 3}",
            f"[services.{name}.breaker]",
            f"error_threshold_percentage = {25 + i % 50}",
            "",
        ]
    path.write_text("\n".join(lines))


def _best_of(path: Path, rounds: int, budget: float) -> tuple[float, int]:
    """Best wall time of up to ``rounds`` loads (stops early past ``budget`` seconds)."""
    best = float("inf")
    start = time.perf_counter()
    configs: dict[str, Any] = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        configs = load_config(path, environ={})
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best, len(configs)


def run(quick: bool = False) -> dict[str, Any]:
    """Seconds to load 1,000 and 10,000 services (quick: 500 and 5,000; fewer rounds)."""
    sizes = (500, 5000) if quick else (1000, 10_000)
    rounds = 2 if quick else 3
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"services-{n}.toml"
            write_config(path, n)
            seconds, loaded = _best_of(path, rounds, budget=20.0)
            assert loaded == n
            out[f"load_config {n:,} services, s"] = round(seconds, 4)
            out[f"load_config {n:,} services, µs per service"] = round(seconds / n * 1e6, 1)
    small, large = (out[f"load_config {n:,} services, s"] for n in sizes)
    out["scaling (large / small, 10 = linear)"] = round(large / small, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))


if __name__ == "__main__":
    main()
