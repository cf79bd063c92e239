"""Several services from one TOML file, with an environment override.

Loads ``06_services.toml``, prints each service's effective settings, shows
``SVCCLIENT_USER_SERVICE__TIMEOUT`` overriding the file, and makes one call with the
loaded config (``USER_SERVICE_URL`` points it at a local FaultServer).
Run: ``python examples/06_toml_config.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from svcclient import ServiceClient, load_config
from svcclient.testing import FaultServer

HERE = Path(__file__).resolve().parent
TOML = HERE / "06_services.toml"


def main() -> None:
    configs = load_config(TOML, environ={})
    print(f"{TOML.name}: {len(configs)} services")
    for name, cfg in configs.items():
        print(
            f"  {name:16} url={cfg.url:28} timeout={cfg.timeout:g}s deadline={cfg.deadline:g}s "
            f"retry.attempts={cfg.retry.attempts}"
        )

    env = {"SVCCLIENT_USER_SERVICE__TIMEOUT": "0.5"}
    overridden = load_config(TOML, environ=env)["user-service"]
    print(
        f"\nwith SVCCLIENT_USER_SERVICE__TIMEOUT=0.5: user-service timeout={overridden.timeout:g}s"
    )

    with FaultServer("127.0.0.1", name="user-service") as server:
        os.environ["USER_SERVICE_URL"] = server.url  # discovery rule 1 beats the file's url
        try:
            with ServiceClient(configs["user-service"], registry=CollectorRegistry()) as users:
                response = users.get("/users/42")
                print(
                    f"\nGET /users/42 via {users.discovery.source} rule -> "
                    f"{response.status_code} {response.json()}"
                )
        finally:
            del os.environ["USER_SERVICE_URL"]


if __name__ == "__main__":
    main()
