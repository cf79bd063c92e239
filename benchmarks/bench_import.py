"""Import time of ``svcclient`` against ``httpx`` (issue 15: ``import`` at most 1.3 x).

Two figures, each from a fresh interpreter per sample:

* **import**: ``import svcclient`` against ``import httpx``;
* **import + first client**: that plus ``ServiceClient("user-service",
  url="http://user-service:3000")`` against ``httpx.Client()``. svcclient imports what a
  client uses when the client is built (dnspython for a host name, tenacity for its
  retry policy, prometheus-client and OpenTelemetry for the default observers), so this
  is where that cost shows.

Samples of the two libraries alternate (httpx, svcclient, httpx, ...), so load from other
jobs on a shared machine hits both sides alike; each round gives one svcclient / httpx
ratio, and the report has the ratio of the minimums and the min / median / max of the
per-round ratios. The children run with a bytecode cache (a private
``PYTHONPYCACHEPREFIX``, warmed once), as an installed wheel has: without one (e.g.
``PYTHONDONTWRITEBYTECODE=1`` and an editable install) every svcclient module is compiled
on every start, which is not what users pay. ``--no-bytecode`` measures that case.

Wall-clock ratios on a loaded shared machine move a lot; ``--instructions`` counts them
instead with callgrind (valgrind), which does not move: one run each of ``pass``, the two
imports and the two import + first client cases, interpreter start-up (the ``pass``
run) subtracted. It takes a few minutes.

    python -m benchmarks.bench_import [--runs 15] [--no-bytecode] [--instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

__all__ = ["CASES", "instructions", "measure", "render", "render_instructions", "sample"]

TARGET = 1.3

# (library, import statement, first client) for each side.
CASES: dict[str, tuple[str, str]] = {
    "httpx": ("import httpx", "httpx.Client()"),
    "svcclient": (
        "import svcclient",
        "svcclient.ServiceClient('user-service', url='http://user-service:3000')",
    ),
}

_CHILD = """\
import time
t0 = time.perf_counter()
{import_}
t1 = time.perf_counter()
client = {construct}
t2 = time.perf_counter()
client.close()
print(t1 - t0, t2 - t0)
"""


def _env(bytecode: bool, cache_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCCLIENT_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache_dir
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def sample(library: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds for (import, import + first client) of ``library`` in a fresh interpreter."""
    import_, construct = CASES[library]
    code = _CHILD.format(import_=import_, construct=construct)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    first, both = out.split()[-2:]
    return float(first), float(both)


def measure(runs: int, *, bytecode: bool = True) -> dict[str, dict[str, list[float]]]:
    """``{"import" | "construct": {library: [seconds per round]}}``, rounds interleaved."""
    with tempfile.TemporaryDirectory(prefix="svcclient-pyc-") as cache_dir:
        env = _env(bytecode, cache_dir)
        for library in CASES:  # fill the bytecode cache (and the OS page cache)
            sample(library, env)
        out: dict[str, dict[str, list[float]]] = {"import": {}, "construct": {}}
        for _ in range(runs):
            for library in CASES:
                imp, both = sample(library, env)
                out["import"].setdefault(library, []).append(imp)
                out["construct"].setdefault(library, []).append(both)
    return out


def _figures(series: dict[str, list[float]]) -> dict[str, float]:
    h, s = series["httpx"], series["svcclient"]
    ratios = [b / a for a, b in zip(h, s, strict=True)]
    return {
        "httpx_min_ms": min(h) * 1000,
        "httpx_median_ms": statistics.median(h) * 1000,
        "svcclient_min_ms": min(s) * 1000,
        "svcclient_median_ms": statistics.median(s) * 1000,
        "ratio_of_min": min(s) / min(h),
        "ratio_min": min(ratios),
        "ratio_median": statistics.median(ratios),
        "ratio_max": max(ratios),
    }


def render(results: dict[str, dict[str, list[float]]]) -> list[str]:
    """One line per figure."""
    labels = {
        "import": ("import", "import svcclient vs import httpx", f"(target <= {TARGET})"),
        "construct": ("import + first client", "ServiceClient(...) vs httpx.Client()", ""),
    }
    lines = []
    for key, series in results.items():
        f = _figures(series)
        name, what, target = labels[key]
        lines.append(
            f"{name} ({what}), {len(series['httpx'])} interleaved rounds: "
            f"httpx {f['httpx_min_ms']:.1f} ms (median {f['httpx_median_ms']:.1f}), "
            f"svcclient {f['svcclient_min_ms']:.1f} ms (median {f['svcclient_median_ms']:.1f}); "
            f"ratio of minimums {f['ratio_of_min']:.2f}, per-round ratio "
            f"min {f['ratio_min']:.2f} / median {f['ratio_median']:.2f} / max {f['ratio_max']:.2f}"
            + (f" {target}" if target else "")
        )
    return lines


def _instructions_of(code: str, env: dict[str, str]) -> int:
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    out = subprocess.run(
        [*valgrind, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {out[-500:]}")
    return int(found.group(1))


def instructions() -> dict[str, dict[str, int]]:
    """Instructions of each case under callgrind, start-up (``pass``) subtracted."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind")
    with tempfile.TemporaryDirectory(prefix="svcclient-pyc-") as cache_dir:
        env = _env(True, cache_dir)
        env["PYTHONHASHSEED"] = "0"
        base = _instructions_of("pass", env)
        out: dict[str, dict[str, int]] = {"import": {}, "construct": {}}
        for library, (import_, construct) in CASES.items():
            out["import"][library] = _instructions_of(import_, env) - base
            code = f"{import_}\n{construct}.close()"
            out["construct"][library] = _instructions_of(code, env) - base
    return out


def render_instructions(counts: dict[str, dict[str, int]]) -> list[str]:
    """One line per figure."""
    lines = []
    for key, name in (("import", "import"), ("construct", "import + first client")):
        h, s = counts[key]["httpx"], counts[key]["svcclient"]
        target = f" (target <= {TARGET})" if key == "import" else ""
        lines.append(
            f"{name}, instructions (callgrind): httpx {h / 1e6:.1f} M, "
            f"svcclient {s / 1e6:.1f} M, ratio {s / h:.3f}{target}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module on every start"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with callgrind instead"
    )
    args = parser.parse_args()
    if args.instructions:
        counts = instructions()
        for line in render_instructions(counts):
            print(line)
        if args.json:
            print(json.dumps(counts))
        return
    results = measure(max(1, args.runs), bytecode=not args.no_bytecode)
    for line in render(results):
        print(line)
    if args.json:
        print(json.dumps({key: _figures(series) for key, series in results.items()}))


if __name__ == "__main__":
    main()
