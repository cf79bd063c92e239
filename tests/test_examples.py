"""Every example in examples/ runs to completion on loopback and prints its key line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example file -> a line fragment its output must contain
EXPECTED = {
    "01_config.py": "(rule: kubernetes_env)",
    "02_breaker_fallback.py": "'name': 'Unknown User'",
    "03_metrics_server.py": 'svcclient_retries_total{reason="status_503"',
    "04_upgrade_httpx_client.py": "with ResilientTransport:  200",
    "05_async_web_app.py": "same trace id: True",
    "06_toml_config.py": "user-service timeout=0.5s",
}


def test_every_example_is_covered() -> None:
    """A new example file needs an expected line here, so none goes unchecked."""
    assert sorted(p.name for p in EXAMPLES.glob("[0-9]*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    """The example exits 0 within 60 s and prints its key line."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SVCCLIENT_", "USER_SERVICE", "TASK_SERVICE", "PAYMENT_GATEWAY"))
        and k != "POD_NAMESPACE"
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES.parent,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert EXPECTED[name] in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
