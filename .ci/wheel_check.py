"""Run inside a fresh venv holding only the svcclient wheel and its dependencies.

Checks: the dev tools are absent; ``svcclient doctor`` on a local server says healthy;
one call through ``ServiceClient`` succeeds; the pytest plugin module is installed.
(``svcclient demo`` is run by .ci/run itself.)
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from svcclient import ServiceClient
from svcclient.testing import FaultServer


def main() -> None:
    for dev_only in ("respx", "pytest", "mypy", "ruff"):
        if importlib.util.find_spec(dev_only) is not None:
            sys.exit(f"wheel venv unexpectedly has {dev_only}")
    if importlib.util.find_spec("pytest_svcclient") is None:
        sys.exit("the wheel lacks the pytest plugin module pytest_svcclient")
    script = Path(sys.executable).parent / "svcclient"
    if not script.exists():
        sys.exit("the svcclient console script is not installed")
    svcclient_cli = str(script)
    with FaultServer("127.0.0.2") as server:
        doctor = subprocess.run(
            [svcclient_cli, "doctor", server.url, "--timeout", "2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(doctor.stdout, end="")
        if doctor.returncode != 0:
            sys.exit(f"svcclient doctor {server.url} exited {doctor.returncode}: {doctor.stderr}")
        with ServiceClient("user-service", url=server.url) as users:
            response = users.get("/users/1", extensions={"route": "/users/{id}"})
        print(f"one call: GET {response.request.url} -> {response.status_code} {response.json()}")
        if response.status_code != 200:
            sys.exit("the call through the wheel failed")


if __name__ == "__main__":
    main()
