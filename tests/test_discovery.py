"""Discovery rules and their precedence (issue 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcclient import ConfigError, discover
from svcclient._discovery.rules import env_name

NO_NS_FILE = "/nonexistent/namespace"


def test_env_name_uppercases_and_replaces_dashes_and_dots() -> None:
    """user-service reads USER_SERVICE_*; dots become underscores too."""
    assert env_name("user-service") == "USER_SERVICE"
    assert env_name("billing.v2") == "BILLING_V2"


def test_env_url_wins_over_everything() -> None:
    """Rule 1: <NAME>_URL beats the Kubernetes pair, the default and cluster DNS."""
    env = {
        "USER_SERVICE_URL": "http://10.1.2.3:8080",
        "USER_SERVICE_SERVICE_HOST": "10.0.0.9",
        "USER_SERVICE_SERVICE_PORT": "3000",
    }
    d = discover("user-service", "http://user-service:3000", environ=env, namespace_file=NO_NS_FILE)
    assert (d.url, d.source) == ("http://10.1.2.3:8080", "env")
    assert [s for s, _ in d.candidates] == ["env", "kubernetes_env", "default", "cluster_dns"]


def test_kubernetes_env_pair_beats_default() -> None:
    """Rule 2: the kubelet-injected HOST/PORT pair wins when no _URL is set."""
    env = {"USER_SERVICE_SERVICE_HOST": "10.0.0.9", "USER_SERVICE_SERVICE_PORT": "3000"}
    d = discover("user-service", "http://user-service:3000", environ=env, namespace_file=NO_NS_FILE)
    assert (d.url, d.source) == ("http://10.0.0.9:3000", "kubernetes_env")


def test_kubernetes_env_needs_both_host_and_port() -> None:
    """A HOST without a PORT is not a match; the default is used."""
    env = {"USER_SERVICE_SERVICE_HOST": "10.0.0.9"}
    d = discover("user-service", "http://user-service:3000", environ=env, namespace_file=NO_NS_FILE)
    assert d.source == "default"


def test_kubernetes_port_443_means_https_and_ipv6_is_bracketed() -> None:
    """Port 443 gives an https URL; IPv6 cluster IPs get brackets."""
    env = {"PAY_SERVICE_HOST": "fd00::1", "PAY_SERVICE_PORT": "443"}
    d = discover("pay", environ=env, namespace_file=NO_NS_FILE)
    assert d.url == "https://[fd00::1]:443"


def test_default_then_cluster_dns() -> None:
    """Rule 3 (default) beats rule 4 (cluster DNS)."""
    d = discover("user-service", "http://user-service:3000", environ={}, namespace_file=NO_NS_FILE)
    assert (d.url, d.source) == ("http://user-service:3000", "default")


def test_cluster_dns_uses_namespace_argument_and_port() -> None:
    """Rule 4 builds name.namespace.svc.cluster-domain:port."""
    d = discover("user-service", environ={}, namespace="shop", port=3000, namespace_file=NO_NS_FILE)
    assert d.url == "http://user-service.shop.svc.cluster.local.:3000"
    assert d.source == "cluster_dns"


def test_cluster_dns_namespace_from_pod_namespace_env() -> None:
    """POD_NAMESPACE supplies the namespace when no argument is given."""
    d = discover("orders", environ={"POD_NAMESPACE": "prod"}, namespace_file=NO_NS_FILE)
    assert d.url == "http://orders.prod.svc.cluster.local.:80"


def test_cluster_dns_namespace_from_service_account_file(tmp_path: Path) -> None:
    """The service-account namespace file is read when nothing else names one."""
    ns_file = tmp_path / "namespace"
    ns_file.write_text("staging\n")
    d = discover("orders", environ={}, namespace_file=str(ns_file), cluster_domain="corp.local")
    assert d.url == "http://orders.staging.svc.corp.local.:80"


def test_cluster_dns_falls_back_to_default_namespace() -> None:
    """Outside a cluster with nothing configured, the 'default' namespace is assumed."""
    d = discover("orders", environ={}, namespace_file=NO_NS_FILE)
    assert d.url == "http://orders.default.svc.cluster.local.:80"
    assert any("fallback" in t for t in d.tried)


def test_external_url_passes_through_unchanged() -> None:
    """A name that already is a URL is used as it is."""
    d = discover("https://api.stripe.com", environ={"X_URL": "http://nope"})
    assert (d.url, d.source) == ("https://api.stripe.com", "url")


@pytest.mark.parametrize("bad", ["not a url", "ftp://host", "http://", "http://h:99999"])
def test_malformed_env_url_raises_config_error_naming_the_variable(bad: str) -> None:
    """A malformed <NAME>_URL is a ConfigError naming the variable and the value."""
    with pytest.raises(ConfigError) as info:
        discover("user-service", environ={"USER_SERVICE_URL": bad}, namespace_file=NO_NS_FILE)
    assert info.value.key == "USER_SERVICE_URL"
    assert info.value.value == bad
    assert "USER_SERVICE_URL" in str(info.value)


def test_unparseable_kubernetes_port_is_a_noted_non_match() -> None:
    """A non-numeric injected port is not a match (noted in tried), never a crash."""
    env = {"USER_SERVICE_SERVICE_HOST": "10.0.0.9", "USER_SERVICE_SERVICE_PORT": "http"}
    d = discover("user-service", environ=env, namespace_file=NO_NS_FILE)
    assert d.source == "cluster_dns"
    assert "USER_SERVICE_SERVICE_PORT='http' is not a port" in d.tried[1]


def test_invalid_service_name_is_config_error() -> None:
    """Spaces or slashes in a service name are rejected."""
    with pytest.raises(ConfigError):
        discover("user service", environ={})


def test_tried_lists_every_rule_in_order() -> None:
    """`tried` names all four rules, for error messages and the doctor command."""
    d = discover("orders", environ={}, namespace_file=NO_NS_FILE)
    assert [t.split(":")[0] for t in d.tried] == ["env", "kubernetes_env", "default", "cluster_dns"]
