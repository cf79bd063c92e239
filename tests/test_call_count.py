"""Python calls per request in svcclient's own code, held to a table.

The pipeline is fast because of the work it does not do: a success's books closed as it
is recorded, the tracing observer's one test per call, Prometheus' in-flight tally, and
so on. Instruction counts (``benchmarks.callgrind_overhead --guard``) leave
headroom that any one of these shortcuts fits in, so reverting one could pass CI. This
count cannot: ``benchmarks._calls`` counts, in a fresh interpreter on a constant clock,
the Python functions of svcclient's that one GET runs after warm-up, for the four
scenarios (sync and async; ``ServiceClient``/``AsyncServiceClient`` with defaults, and a
bare httpx client around ``ResilientTransport``/``AsyncResilientTransport`` with
defaults; each on an ``httpx.MockTransport``).

Lowering a number is welcome: update ``EXPECTED`` (and the README's figure for the
pipeline) in the same commit. Raising one must be justified in the commit message: say
which call appeared (the failure lists them all) and why it is worth its cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import _calls

ROOT = Path(_calls.__file__).resolve().parent.parent
# Python calls in svcclient per request, by scenario (CPython 3.11 and 3.13 alike).
EXPECTED = {
    "sync ServiceClient": 35,
    "async AsyncServiceClient": 42,
    "sync httpx.Client + ResilientTransport": 25,
    "async httpx.AsyncClient + AsyncResilientTransport": 32,
}


@pytest.fixture(scope="module")
def counted() -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._calls", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: dict[str, list[str]] = json.loads(out.stdout)
    return found


def test_the_table_covers_every_scenario() -> None:
    """EXPECTED has a count for each scenario the helper measures, and no other."""
    assert set(EXPECTED) == set(_calls.SCENARIOS)


@pytest.mark.parametrize("scenario", _calls.SCENARIOS)
def test_python_calls_per_request(counted: dict[str, list[str]], scenario: str) -> None:
    """One request runs exactly EXPECTED[scenario] Python functions of svcclient's."""
    names = counted[scenario]
    listed = "\n".join(f"  {n} x{k}" if k > 1 else f"  {n}" for n, k in Counter(names).items())
    assert len(names) == EXPECTED[scenario], (
        f"{scenario}: {len(names)} Python calls in svcclient per request, table says "
        f"{EXPECTED[scenario]} (fewer: update EXPECTED; more: justify it). In call order:\n"
        + listed
    )


def test_the_counter_sees_only_svcclient_frames() -> None:
    """count_calls records svcclient's Python functions, not the caller's, C's or httpx's."""
    import httpx

    from svcclient._redact import redact_text

    calls = _calls.count_calls(lambda: redact_text("token=abc"))
    assert calls[0] == "svcclient._redact:redact_text"
    assert all(name.startswith("svcclient.") for name in calls)
    assert _calls.count_calls(lambda: httpx.URL("http://a/").join("/b")) == []
