"""Python calls per request in svcclient's own code: a deterministic count of the work the
pipeline does, for tests and benchmarks.

Instruction counts (``benchmarks.callgrind_overhead``) move with the heap's layout and
guard a ratio with some headroom, so one speed trick reverted can hide under the bound.
A count of Python function calls does not move: :func:`count_calls` runs a callable with
a profile function (``sys.setprofile``; the same events on CPython 3.11 and 3.12+, where
it sits on ``sys.monitoring``) and records each Python frame started or resumed whose
code lives in the ``svcclient`` package. C calls and other libraries' frames are not
counted; a generator or coroutine resumed counts again, as it runs Python code again.

:func:`scenario_calls` counts one request, after warm-up, on a constant clock, for the
four scenarios of :data:`SCENARIOS`, each client built as ``callgrind_overhead`` builds
it (defaults, an ``httpx.MockTransport``). ``python -m benchmarks._calls`` prints the
counts and the functions, and ``--json`` the same as JSON; ``tests/test_call_count.py``
runs it in a fresh interpreter (so no other test's global state, such as an
OpenTelemetry tracer provider, changes what runs) and holds each count to its table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["SCENARIOS", "count_calls", "main", "scenario_calls"]

SCENARIOS = (
    "sync ServiceClient",
    "async AsyncServiceClient",
    "sync httpx.Client + ResilientTransport",
    "async httpx.AsyncClient + AsyncResilientTransport",
)
WARMUP = 20  # requests before the counted one: caches filled, first-use imports done


def _package_dir() -> str:
    import svcclient

    return str(Path(svcclient.__file__).resolve().parent) + "/"


def count_calls(run: Callable[[], object]) -> list[str]:
    """``run()``, and the Python functions of svcclient's it called, in call order: one
    ``module:qualname`` per frame started or resumed (the garbage collector paused)."""
    prefix = _package_dir()
    seen: list[str] = []
    names: dict[Any, str | None] = {}

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        code = frame.f_code
        name = names.get(code, "")
        if name == "":
            file = str(Path(code.co_filename).resolve())
            if file.startswith(prefix):
                module = file[len(prefix) :].removesuffix(".py").replace("/", ".")
                name = f"svcclient.{module}:{code.co_qualname}"
            else:
                name = None
            names[code] = name
        if name is not None:
            seen.append(name)

    enabled = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
        if enabled:
            gc.enable()
    return seen


def _client(scenario: str) -> Any:
    from benchmarks.callgrind_overhead import OURS, PIPELINE, _make_client

    mode = scenario.split(" ", 1)[0]
    variant = OURS if "ServiceClient" in scenario else PIPELINE
    return _make_client(mode, "mock", variant, None)


def scenario_calls(scenario: str) -> list[str]:
    """svcclient's Python calls for one GET in ``scenario``, after :data:`WARMUP` of them."""
    from benchmarks.callgrind_overhead import PATH

    client = _client(scenario)
    if scenario.startswith("sync"):
        try:
            for _ in range(WARMUP):
                client.get(PATH)
            return count_calls(lambda: client.get(PATH))
        finally:
            client.close()
    loop = asyncio.new_event_loop()
    try:
        for _ in range(WARMUP):
            loop.run_until_complete(client.get(PATH))
        return count_calls(lambda: loop.run_until_complete(client.get(PATH)))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print {scenario: [names]}")
    args = parser.parse_args(argv)
    found = {scenario: scenario_calls(scenario) for scenario in SCENARIOS}
    if args.json:
        print(json.dumps(found))
        return 0
    for scenario, names in found.items():
        print(f"{scenario}: {len(names)} Python calls in svcclient per request")
        for name in names:
            print(f"    {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
