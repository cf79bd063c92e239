"""The seed's config, made real: env-or-DNS URLs for internal services, full URLs for external.

The seed wrote::

    const config = {
      userService: process.env.USER_SERVICE_URL || 'http://user-service:3000',
      taskService: process.env.TASK_SERVICE_URL || 'http://task-service:3000',
      paymentGateway: process.env.PAYMENT_GATEWAY_URL || 'https://api.stripe.com'
    };

``svcclient.discover`` does the same and says which rule won. Run: ``python examples/01_config.py``
(no network: discovery only chooses URLs).
"""

from __future__ import annotations

from svcclient import ServiceClient, discover

config = {
    "userService": discover("user-service", "http://user-service:3000"),
    "taskService": discover("task-service", "http://task-service:3000"),
    "paymentGateway": discover("payment-gateway", "https://api.stripe.com"),
}


def show(label: str, environ: dict[str, str]) -> None:
    print(f"\n{label}")
    for key, default in (
        ("user-service", "http://user-service:3000"),
        ("task-service", "http://task-service:3000"),
        ("payment-gateway", "https://api.stripe.com"),
    ):
        found = discover(key, default, environ=environ)
        print(f"  {key:16} {found.url:40} (rule: {found.source})")


def main() -> None:
    print("This process's environment:")
    for key, found in config.items():
        print(f"  {key:16} {found.url:40} (rule: {found.source})")

    show(
        "With USER_SERVICE_URL set (docker-compose, a laptop):",
        {
            "USER_SERVICE_URL": "http://localhost:3001",
        },
    )
    show(
        "Inside a pod, where the kubelet injects <NAME>_SERVICE_HOST/PORT:",
        {
            "TASK_SERVICE_SERVICE_HOST": "10.96.0.12",
            "TASK_SERVICE_SERVICE_PORT": "3000",
        },
    )

    # No default at all: the Kubernetes cluster-DNS name, namespace from POD_NAMESPACE.
    found = discover("user-service", environ={"POD_NAMESPACE": "shop"}, port=3000)
    print(f"\nNo default, POD_NAMESPACE=shop: {found.url} (rule: {found.source})")
    print("Every rule looked at, in order:")
    for line in found.tried:
        print(f"  - {line}")

    # A client carries its discovery; creating it opens no connection.
    with ServiceClient("user-service", url="http://user-service:3000") as users:
        print(f"\nServiceClient('user-service').base_url = {users.base_url}")
        print(f"discovered by rule: {users.discovery.source}")


if __name__ == "__main__":
    main()
