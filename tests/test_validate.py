"""The one validator: numbers, durations, flags, header names, DNS names, status codes."""

from __future__ import annotations

import math

import pytest

from svcclient import (
    BalancingPolicy,
    BreakerPolicy,
    BudgetPolicy,
    BulkheadPolicy,
    ConfigError,
    HedgePolicy,
    OutlierPolicy,
    RetryPolicy,
    ServiceConfig,
)
from svcclient._validate import (
    MAX_SECONDS,
    check_choice,
    check_count,
    check_dns_label,
    check_dns_name,
    check_flag,
    check_header_name,
    check_number,
    check_seconds,
    check_status_codes,
    check_token,
)


@pytest.mark.parametrize("value", [True, "1", None, [1], math.nan, math.inf, -math.inf])
def test_number_rejects_bools_text_and_non_finite(value: object) -> None:
    """A number is an int or float, never a bool, and finite unless inf is allowed."""
    with pytest.raises(ConfigError) as info:
        check_number("k", value)
    assert info.value.key == "k" and info.value.value is value


def test_number_bounds_and_documented_inf() -> None:
    """Open and closed bounds are honoured; allow_inf admits inf but never NaN."""
    assert check_number("k", 0, low=0) == 0
    with pytest.raises(ConfigError, match="> 0"):
        check_number("k", 0, low=0, low_open=True)
    with pytest.raises(ConfigError, match="<= 100"):
        check_number("k", 100.5, high=100)
    assert check_number("k", math.inf, allow_inf=True) == math.inf
    with pytest.raises(ConfigError):
        check_number("k", math.nan, allow_inf=True)


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, 1e306, MAX_SECONDS * 2, False])
def test_seconds_are_finite_positive_and_bounded(value: object) -> None:
    """Durations are > 0 and <= MAX_SECONDS, so arithmetic on them cannot overflow."""
    with pytest.raises(ConfigError):
        check_seconds("t", value)


def test_seconds_zero_when_allowed() -> None:
    """zero=True admits 0 (a wait that refuses at once) and still rejects negatives."""
    assert check_seconds("t", 0, zero=True) == 0
    with pytest.raises(ConfigError):
        check_seconds("t", -0.1, zero=True)


@pytest.mark.parametrize("value", [True, 2.5, "3", 0])
def test_count_is_an_int_not_a_bool(value: object) -> None:
    """Counts are ints (not bools, floats or text) within bounds."""
    with pytest.raises(ConfigError):
        check_count("n", value)


@pytest.mark.parametrize("value", ["false", 0, 1, None, "True"])
def test_flag_is_a_bool(value: object) -> None:
    """A flag is True or False: the string "false" is truthy and is refused."""
    with pytest.raises(ConfigError, match="True or False"):
        check_flag("f", value)


def test_choice_compares_type_and_value() -> None:
    """A choice must equal one option and have its type (1 is not True)."""
    assert check_choice("c", "a", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match="one of a, b"):
        check_choice("c", "x", ("a", "b"))
    with pytest.raises(ConfigError):
        check_choice("c", 1, (True, False))


@pytest.mark.parametrize(
    "name",
    [
        "X-Deadline\r\nInjected: 1",
        "X-Deadline\n",
        "X-Déadline",
        "X Deadline",
        "",
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        5,
    ],
)
def test_header_names_are_tokens_and_not_framing_headers(name: object) -> None:
    """Header names are RFC 9110 tokens and never Host, Content-Length or hop-by-hop ones."""
    with pytest.raises(ConfigError):
        check_header_name("deadline_header", name)


def test_good_header_names_pass() -> None:
    """Ordinary extension headers are accepted as given."""
    assert check_header_name("h", "X-Request-Deadline-Ms") == "X-Request-Deadline-Ms"
    assert check_header_name("h", None, optional=True) is None
    assert check_token("m", "PATCH") == "PATCH"


@pytest.mark.parametrize(
    "value", ["default\n", "x@evil.example", "a.b", "-a", "a-", "A" * 64, "", "a_b", "ns/x"]
)
def test_dns_label_matches_whole(value: str) -> None:
    """A namespace is one DNS label; a trailing newline is not silently accepted."""
    with pytest.raises(ConfigError):
        check_dns_label("namespace", value)


@pytest.mark.parametrize(
    "value", ["cluster.local\n", "a/b", "a b", "a..b", ".a", "x@y", "a." * 130]
)
def test_dns_name_rejects_slashes_spaces_and_empty_labels(value: str) -> None:
    """A cluster domain is labels joined by dots, and nothing else."""
    with pytest.raises(ConfigError):
        check_dns_name("cluster_domain", value)


def test_dns_name_absolute_and_relative() -> None:
    """A final dot is accepted for absolute names unless the field forbids it."""
    assert check_dns_name("d", "cluster.local.") == "cluster.local."
    with pytest.raises(ConfigError):
        check_dns_name("name", "svc.", absolute=False)


def test_status_codes_become_a_frozenset() -> None:
    """Any collection of ints in range becomes a frozenset; classes and strings are refused."""
    assert check_status_codes("s", [503, 503, 429], low=400, high=599) == {429, 503}
    for bad in ("5xx", 503, [True], ["503"], [200]):
        with pytest.raises(ConfigError):
            check_status_codes("s", bad, low=400, high=599)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: HedgePolicy(max_hedges=True), "max_hedges"),
        (lambda: HedgePolicy(delay=math.inf), "delay"),
        (lambda: HedgePolicy(min_delay=math.nan), "min_delay"),
        (lambda: BreakerPolicy(window_duration=1e306), "window_duration"),
        (lambda: BreakerPolicy(volume_threshold=True), "volume_threshold"),
        (lambda: BreakerPolicy(error_threshold_percentage=math.nan), "error_threshold_percentage"),
        (lambda: BudgetPolicy(ratio=math.inf), "ratio"),
        (lambda: BulkheadPolicy(max_concurrent=2.5), "max_concurrent"),  # type: ignore[arg-type]
        (lambda: BulkheadPolicy(wait_timeout=math.inf), "wait_timeout"),
        (lambda: RetryPolicy(attempts=True), "attempts"),
        (lambda: RetryPolicy(retry_read_timeouts="false"), "retry_read_timeouts"),  # type: ignore[arg-type]
        (lambda: RetryPolicy(idempotency_header="Host"), "idempotency_header"),
        (lambda: OutlierPolicy(enabled="no"), "enabled"),  # type: ignore[arg-type]
        (lambda: OutlierPolicy(max_ejection_percent=True), "max_ejection_percent"),
        (lambda: BalancingPolicy(affinity_header="Content-Length"), "affinity_header"),
        (lambda: BalancingPolicy(ewma_decay=math.inf), "ewma_decay"),
    ],
)
def test_every_policy_uses_the_same_rules(build: object, key: str) -> None:
    """Each policy rejects bools as numbers, non-finite values and framing headers alike."""
    with pytest.raises(ConfigError) as info:
        build()  # type: ignore[operator]
    assert info.value.key == key


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"deadline_header": "X-D\r\nEvil: 1"}, "deadline_header"),
        ({"deadline_header": "X-Dé"}, "deadline_header"),
        ({"deadline_header": "Host"}, "deadline_header"),
        ({"namespace": "x@evil.example"}, "namespace"),
        ({"cluster_domain": "a/b"}, "cluster_domain"),
        ({"cluster_domain": "a b"}, "cluster_domain"),
        ({"dns_nameservers": ["dns.example"]}, "dns_nameservers"),
        ({"dns_nameservers": []}, "dns_nameservers"),
        ({"dns_timeout": math.inf}, "dns_timeout"),
        ({"http2": "no"}, "http2"),
        ({"verify": "false"}, "verify"),
        ({"use_srv": "x"}, "use_srv"),
        ({"port": True}, "port"),
        ({"port": 70000}, "port"),
        ({"deadline": 1e306, "deadline_header": "X-Deadline"}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"max_keepalive_connections": -1}, "max_keepalive_connections"),
        ({"retry": {"attempts": 2}}, "retry"),
        ({"fallback": "fallback"}, "fallback"),
    ],
)
def test_service_config_names_service_and_exact_key(kwargs: dict[str, object], key: str) -> None:
    """Each bad field raises ConfigError with the service and that field's own name."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig("user-service", **kwargs)  # type: ignore[arg-type]
    assert (info.value.service, info.value.key) == ("user-service", key)
    assert str(info.value).startswith(f"user-service: {key}=")


@pytest.mark.parametrize("name", ["user-service\n", "", " ", "a b", "bad/name", "x@y"])
def test_service_name_is_a_dns_name(name: str) -> None:
    """A service name ending in a newline (what `$` lets through) is rejected."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig(name)
    assert info.value.key == "name"


def test_url_as_name_may_not_carry_credentials() -> None:
    """A URL used as the name is a metric label: userinfo in it is refused."""
    assert ServiceConfig("http://127.0.0.1:8080").name == "http://127.0.0.1:8080"
    with pytest.raises(ConfigError) as info:
        ServiceConfig("http://bob:hunter2@127.0.0.1:8080")
    assert "hunter2" not in str(info.value)


def test_nameservers_parsed_at_config_time() -> None:
    """dns_nameservers are parsed when the config is built; a single string is a list of one."""
    assert ServiceConfig("s", dns_nameservers="127.0.0.1:5353").dns_nameservers == (  # type: ignore[arg-type]
        "127.0.0.1:5353",
    )
    with pytest.raises(ConfigError) as info:
        ServiceConfig("s", dns_nameservers=("127.0.0.1:99999",))
    assert (info.value.service, info.value.key) == ("s", "dns_nameservers")
