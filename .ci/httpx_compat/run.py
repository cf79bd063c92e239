"""Run httpx's own test suite (from the sdist of the installed httpx) through svcclient.

    python .ci/httpx_compat/run.py              # every run below, as CI does
    python .ci/httpx_compat/run.py --only defaults -- -k test_async_client -x

Steps: download the sdist of exactly the installed httpx version (cached in
``.ci/httpx_compat/.cache``), extract its ``tests/`` and ``pyproject.toml`` (its pytest
settings: ``filterwarnings = error``), install the test requirements that svcclient's dev
extra lacks (``requirements.txt``, pinned, into ``.cache/deps`` with ``--no-deps``, put on
``PYTHONPATH`` for these runs only), and run pytest with the ``svcclient_wrap`` plugin:

* ``defaults``: every transport wrapped, svcclient's policies at their defaults;
* ``off``: the same with every policy off (the bare drivers);
* ``aiohttp``: the async tests on asyncio with ``wire="aiohttp"`` wherever the
  ``AsyncClient`` uses its default network transport (other clients as in ``defaults``);
* ``plain`` (only with ``--only plain``): nothing wrapped, the baseline.

Tests named in ``skip.txt`` (they inspect httpx's private internals) are skipped with
their reason (an id without ``[params]`` names every parametrisation);
``network``-marked tests are deselected (they dial hosts beyond loopback). Fails when any
test fails or errors, when a skip-list entry names no test (stale list), or when the
plugin's liveness counts are too low to be a real run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"

# Liveness floors per run: the counts of the last measured run are far above these, and a
# plugin that silently stopped wrapping (or stopped seeing the pipeline) reads 0.
MIN_PIPELINE_CALLS = {"defaults": 400, "off": 400, "aiohttp": 100}
MIN_RETRIES = {"defaults": 10, "off": 0, "aiohttp": 0}
MIN_AIOHTTP_REQUESTS = 10

RUNS = {
    "defaults": {"SVCCLIENT_COMPAT_POLICIES": "defaults", "SVCCLIENT_COMPAT_WIRE": "httpx"},
    "off": {"SVCCLIENT_COMPAT_POLICIES": "off", "SVCCLIENT_COMPAT_WIRE": "httpx"},
    "aiohttp": {"SVCCLIENT_COMPAT_POLICIES": "defaults", "SVCCLIENT_COMPAT_WIRE": "aiohttp"},
    # The baseline, not run by default: bare httpx, same pins and skip list.
    "plain": {"SVCCLIENT_COMPAT_POLICIES": "plain", "SVCCLIENT_COMPAT_WIRE": "httpx"},
}
DEFAULT_RUNS = ["defaults", "off", "aiohttp"]
# The README states these figures; a full run fails when they no longer match.
README = HERE.parent.parent / "README.md"
README_CLAIMS = {
    "defaults": "{passed} passed, 0 failed, {skipped} skipped",
    "aiohttp": 'tests on `wire="aiohttp"` {passed} passed, 0 failed',
}
# The files whose tests build an AsyncClient; under trio aiohttp does not run at all.
AIOHTTP_FILES = [
    "tests/client/test_async_client.py",
    "tests/client/test_auth.py",
    "tests/client/test_event_hooks.py",
    "tests/client/test_proxies.py",
    "tests/client/test_redirects.py",
    "tests/test_asgi.py",
    "tests/test_timeouts.py",
]


def _sdist(version: str) -> Path:
    target = CACHE / f"httpx-{version}.tar.gz"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*pip, f"httpx=={version}", "-d", tmp], check=True)
        (found,) = Path(tmp).glob("httpx-*.tar.gz")
        shutil.move(str(found), target)
    return target


def _deps() -> Path:
    """The pinned test requirements, installed once per requirements.txt content."""
    deps = CACHE / "deps"
    reqs = (HERE / "requirements.txt").read_text()
    stamp = deps / ".requirements.txt"
    if stamp.exists() and stamp.read_text() == reqs:
        return deps
    shutil.rmtree(deps, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(deps)]
    subprocess.run([*pip, "-r", str(HERE / "requirements.txt")], check=True)
    stamp.write_text(reqs)
    return deps


def _extract(sdist: Path, into: Path) -> None:
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(f"{top}/tests/") or m.name == f"{top}/pyproject.toml"
        ]
        for m in members:
            m.name = m.name[len(top) + 1 :]
        tar.extractall(into, members=members, filter="data")


def _skip_list() -> list[tuple[str, str]]:
    entries = []
    for raw in (HERE / "skip.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("  # ")
        if not reason.strip():
            raise SystemExit(f"skip.txt: {test_id!r} has no reason ('<id>  # <reason>')")
        entries.append((test_id.strip(), reason.strip()))
    return entries


_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def _run(name: str, tests: Path, deps: Path, extra: list[str]) -> dict[str, int]:
    stats_file = tests / f"stats-{name}.json"
    env = dict(os.environ, **RUNS[name], SVCCLIENT_COMPAT_STATS=str(stats_file))
    env["SVCCLIENT_COMPAT_SKIP"] = str(HERE / "skip.txt")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(deps), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.pop("PYTEST_ADDOPTS", None)
    _skip_list()  # checked here (every entry has a reason); the plugin applies it
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "svcclient_wrap"]
    args += ["-m", "not network", "-rfE", "--timeout=60"]
    if name == "aiohttp":
        args += ["-k", "not trio", *AIOHTTP_FILES]
    args += extra
    proc = subprocess.run(args, check=False, cwd=tests, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    tail = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "deselected": 0, "errors": 0}
    for n, kind in _SUMMARY.findall(tail):
        counts["errors" if kind.startswith("error") else kind] = int(n)
    live = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    ok = proc.returncode == 0 and counts["failed"] == 0 and counts["errors"] == 0
    if not ok:
        sys.stdout.write(out[-20000:])
    pipeline = live.get("pipeline_calls", 0)
    print(
        f"httpx-compat[{name}]: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped, {counts['errors']} errors; "
        f"{live.get('skip_matched', 0)} of them by skip.txt; "
        f"live: {pipeline} calls through the pipeline "
        f"({live.get('pipeline_attempts', 0)} attempts, {live.get('pipeline_retries', 0)} "
        f"retries, {live.get('passthrough_calls', 0)} passthrough), "
        f"{live.get('transports_wrapped', 0)} transports wrapped, "
        f"a 503 tried {live.get('selfcheck_tries_of_503', 0)}x"
        + (f", {live.get('aiohttp_requests', 0)} on the aiohttp wire" if name == "aiohttp" else "")
    )
    problems = []
    if not ok:
        problems.append(f"pytest exit {proc.returncode}")
    if not extra and name != "plain":  # a partial run (developer's -k) has no floors
        if pipeline < MIN_PIPELINE_CALLS[name]:
            problems.append(f"only {pipeline} calls went through svcclient's pipeline")
        if live.get("pipeline_retries", 0) < MIN_RETRIES[name]:
            problems.append(f"only {live.get('pipeline_retries', 0)} retries: policies not live")
        if name == "aiohttp" and live.get("aiohttp_requests", 0) < MIN_AIOHTTP_REQUESTS:
            problems.append(f"only {live.get('aiohttp_requests', 0)} requests on the aiohttp wire")
        for test_id in live.get("skip_unmatched", []):
            problems.append(f"skip.txt names {test_id}, which httpx's suite does not have")
        claim = README_CLAIMS.get(name, "").format(**counts)
        if claim and claim not in " ".join(README.read_text().split()):
            problems.append(f"README.md does not say {claim!r}: update its httpx-suite figures")
    for problem in problems:
        print(f"httpx-compat[{name}]: FAIL: {problem}")
    counts["ok"] = not problems
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RUNS), action="append")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    opts = parser.parse_args()
    version = importlib.metadata.version("httpx")
    sdist = _sdist(version)
    deps = _deps()
    print(f"httpx {version}: tests from {sdist.name}; test requirements in {deps}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="httpx-compat-") as tmp:
        tests = Path(tmp)
        _extract(sdist, tests)
        for name in opts.only or DEFAULT_RUNS:
            counts = _run(name, tests, deps, opts.pytest_args)
            failed |= not counts["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
