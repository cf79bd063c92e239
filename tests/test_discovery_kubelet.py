"""Discovery against the variables kubelet really writes (issue 13, findings 1, 3, 6)."""

from __future__ import annotations

import pytest

from svcclient import discover
from svcclient._discovery.rules import is_service_name

from .kubelet_env import Service, kubelet_environ

NO_NS = "/nonexistent/namespace"
USER = Service("user", "10.96.0.5", (("", 3000),))
USER_NAMED = Service("user", "10.96.0.5", (("http", 3000),))
USER_SERVICE = Service("user-service", "10.96.12.34", (("metrics", 9090), ("http", 3000)))


@pytest.mark.parametrize("order", [(USER, USER_SERVICE), (USER_SERVICE, USER)])
def test_user_beside_user_service_never_crashes(order: tuple[Service, Service]) -> None:
    """Whichever Service's USER_SERVICE_PORT wins, discover("user") does not raise."""
    env = kubelet_environ(order)
    d = discover("user", "http://user:3000", environ=env, namespace_file=NO_NS)
    if env["USER_SERVICE_PORT"].startswith("tcp://"):
        # user-service's Docker-link variable clobbered user's port: noted, and user's own
        # link variables (USER_PORT_3000_TCP, checked against its cluster IP) list 3000.
        assert "is not a port" in d.tried[1]
    assert (d.source, d.url) == ("kubernetes_env", "http://10.96.0.5:3000")


@pytest.mark.parametrize("order", [(USER, USER_SERVICE), (USER_SERVICE, USER)])
def test_clobbered_first_port_comes_from_the_link_variable(order: tuple[Service, Service]) -> None:
    """No default URL, USER_SERVICE_PORT clobbered: USER_PORT=tcp://<user's ip>:3000 gives it."""
    d = discover("user", environ=kubelet_environ(order), namespace_file=NO_NS)
    assert (d.source, d.url) == ("kubernetes_env", "http://10.96.0.5:3000")


def test_link_variable_of_another_ip_is_ignored() -> None:
    """A tcp:// value naming a different address is not taken as this Service's port."""
    env = {
        "USER_SERVICE_HOST": "10.96.0.5",
        "USER_SERVICE_PORT": "tcp://10.96.12.34:3000",
        "USER_PORT": "tcp://10.96.99.99:4000",
    }
    d = discover("user", environ=env, namespace_file=NO_NS)
    assert d.source == "cluster_dns"


@pytest.mark.parametrize("order", [(USER_NAMED, USER_SERVICE), (USER_SERVICE, USER_NAMED)])
def test_named_http_port_survives_the_collision(order: tuple[Service, Service]) -> None:
    """With a port named http, `user` finds its port in USER_SERVICE_PORT_HTTP either way."""
    d = discover("user", environ=kubelet_environ(order), namespace_file=NO_NS)
    assert (d.source, d.url) == ("kubernetes_env", "http://10.96.0.5:3000")


@pytest.mark.parametrize("order", [(USER, USER_SERVICE), (USER_SERVICE, USER)])
def test_user_service_prefers_the_named_http_port(order: tuple[Service, Service]) -> None:
    """Multi-port: the port named http wins over the first port (metrics=9090)."""
    d = discover("user-service", environ=kubelet_environ(order), namespace_file=NO_NS)
    assert d.url == "http://10.96.12.34:3000"


def test_url_in_code_keeps_its_port() -> None:
    """A default URL's explicit port is used when the Service has it, never replaced."""
    env = kubelet_environ([USER_SERVICE])
    d = discover("user-service", "http://user-service:9090", environ=env, namespace_file=NO_NS)
    assert d.url == "http://10.96.12.34:9090"
    d = discover("user-service", "http://user-service:3000", environ=env, namespace_file=NO_NS)
    assert d.url == "http://10.96.12.34:3000"


def test_url_port_the_service_lacks_is_a_non_match() -> None:
    """A port the Service does not list leaves the default URL as it is, with a note."""
    env = kubelet_environ([USER_SERVICE])
    d = discover("user-service", "http://user-service:4000", environ=env, namespace_file=NO_NS)
    assert (d.source, d.url) == ("default", "http://user-service:4000")
    assert "4000 is not a port of the Service (3000, 9090)" in d.tried[1]


def test_https_named_port_gives_https() -> None:
    """Only a port named https: an https URL on that port."""
    env = kubelet_environ([Service("pay", "10.96.1.1", (("https", 8443),))])
    assert discover("pay", environ=env, namespace_file=NO_NS).url == "https://10.96.1.1:8443"


def test_http_is_preferred_over_https() -> None:
    """Ports named http and https: http first (then https)."""
    env = kubelet_environ([Service("web", "10.96.1.2", (("https", 443), ("http", 80)))])
    assert discover("web", environ=env, namespace_file=NO_NS).url == "http://10.96.1.2:80"


@pytest.mark.parametrize("name", ["user.service", "user_service", "User-Service"])
def test_non_dns_1035_names_do_not_take_user_service_variables(name: str) -> None:
    """Service names are DNS-1035 labels: look-alikes never read USER_SERVICE_SERVICE_*."""
    env = kubelet_environ([USER_SERVICE])
    d = discover(name, environ=env, namespace_file=NO_NS)
    assert d.source == "cluster_dns"
    assert "not a Service name" in d.tried[1]


def test_host_that_is_not_an_ip_is_a_non_match() -> None:
    """A *_SERVICE_HOST that is not an address is ignored with a note."""
    env = {"ORDERS_SERVICE_HOST": "orders.local", "ORDERS_SERVICE_PORT": "80"}
    d = discover("orders", environ=env, namespace_file=NO_NS)
    assert d.source == "cluster_dns" and "not an IP address" in d.tried[1]


def test_many_services_each_find_their_own() -> None:
    """Thirty Services with prefix-sharing names: each discovers its own cluster IP."""
    names = [f"svc{i}" for i in range(10)] + [f"svc{i}-api" for i in range(10)]
    names += [f"svc{i}-api-service" for i in range(10)]
    services = [Service(n, f"10.96.3.{i + 1}", (("http", 8000 + i),)) for i, n in enumerate(names)]
    env = kubelet_environ(services)
    for i, n in enumerate(names):
        d = discover(n, environ=env, namespace_file=NO_NS)
        assert d.url == f"http://10.96.3.{i + 1}:{8000 + i}", n


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a", True), ("user-service", True), ("a--b", True), ("1abc", False), ("a-", False)],
)
def test_is_service_name(name: str, ok: bool) -> None:
    """DNS-1035: starts with a letter, letters/digits/hyphens, no trailing hyphen."""
    assert is_service_name(name) is ok
