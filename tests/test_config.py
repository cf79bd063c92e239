"""ServiceConfig validation, TOML loading and environment overrides (issue 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from svcclient import ConfigError, RetryPolicy, ServiceConfig, load_config


def test_defaults_follow_the_issue() -> None:
    """Per-attempt timeout 2 s, deadline 3 s, breaker and retry on, hedging off."""
    c = ServiceConfig("user-service")
    assert (c.timeout, c.deadline) == (2.0, 3.0)
    assert c.retry.attempts == 3
    assert c.breaker is not None and c.hedge is None


def test_default_bulkhead_follows_the_pool_size() -> None:
    """The default bulkhead admits max_connections calls; a user's own bulkhead is kept."""
    from svcclient import BulkheadPolicy

    assert ServiceConfig("s").bulkhead is not None
    assert ServiceConfig("s").bulkhead.max_concurrent == 100  # type: ignore[union-attr]
    bigger = ServiceConfig("s", max_connections=400)
    assert bigger.bulkhead is not None and bigger.bulkhead.max_concurrent == 400
    own = BulkheadPolicy(max_concurrent=7)
    assert ServiceConfig("s", max_connections=400, bulkhead=own).bulkhead == own
    assert ServiceConfig("s", bulkhead=None).bulkhead is None


@pytest.mark.parametrize("key", ["timeout", "deadline", "dns_timeout"])
@pytest.mark.parametrize("value", [0, -1.0])
def test_non_positive_durations_are_rejected(key: str, value: float) -> None:
    """Negative or zero durations raise ConfigError naming service, key and value."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig("user-service", **{key: value})
    assert (info.value.service, info.value.key, info.value.value) == ("user-service", key, value)


def test_unparsable_url_is_rejected() -> None:
    """A default URL that is not http(s) names the 'url' key."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig("user-service", url="user-service:3000/x y")
    assert info.value.key == "url"


def test_timeout_must_not_exceed_deadline() -> None:
    """Cross-field rule: per-attempt timeout <= total deadline."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig("s", timeout=5.0, deadline=3.0)
    assert info.value.key == "timeout"


def test_breaker_window_must_cover_two_timeouts() -> None:
    """Cross-field rule: the breaker's sampling window >= 2 x per-attempt timeout."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig("s", timeout=6.0, deadline=20.0)
    assert info.value.key == "breaker.window_duration"


def test_worst_case_retry_delays_must_fit_the_deadline() -> None:
    """Cross-field rule: sum of worst-case backoff sleeps <= deadline."""
    slow = RetryPolicy(attempts=6, backoff_base=1.0, backoff_cap=5.0)
    assert slow.worst_case_delay() > 3.0
    with pytest.raises(ConfigError) as info:
        ServiceConfig("s", retry=slow)
    assert info.value.key == "retry"


def test_variants_are_made_with_replace_not_mutation() -> None:
    """ServiceConfig is frozen; with_overrides returns a validated copy."""
    c = ServiceConfig("s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.timeout = 1.0  # type: ignore[misc]
    d = c.with_overrides(timeout=1.0, retry={"attempts": 5})
    assert (d.timeout, d.retry.attempts, c.timeout) == (1.0, 5, 2.0)
    with pytest.raises(ConfigError):
        c.with_overrides(timeout=-3)


TOML = """
[defaults]
timeout = 1.5

[services.user-service]
url = "http://user-service:3000"
deadline = 4
[services.user-service.retry]
attempts = 4
[services.user-service.breaker]
error_threshold_percentage = 25

[services.orders]
bulkhead = { max_concurrent = 8 }
"""


def test_load_config_reads_services_and_defaults(tmp_path: Path) -> None:
    """[defaults] apply to every service; nested tables fill policies."""
    path = tmp_path / "svc.toml"
    path.write_text(TOML)
    configs = load_config(path, environ={})
    users = configs["user-service"]
    assert (users.url, users.timeout, users.deadline) == ("http://user-service:3000", 1.5, 4.0)
    assert users.retry.attempts == 4
    assert users.breaker is not None and users.breaker.error_threshold_percentage == 25
    assert configs["orders"].bulkhead is not None
    assert configs["orders"].bulkhead.max_concurrent == 8
    assert configs["orders"].timeout == 1.5


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """SVCCLIENT_<NAME>__<KEY> and __<SECTION>_<KEY> beat the TOML file."""
    path = tmp_path / "svc.toml"
    path.write_text(TOML)
    env = {
        "SVCCLIENT_USER_SERVICE__TIMEOUT": "0.5",
        "SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS": "2",
        "SVCCLIENT_OTHER__TIMEOUT": "9",
    }
    users = load_config(path, environ=env)["user-service"]
    assert (users.timeout, users.retry.attempts) == (0.5, 2)


@pytest.mark.parametrize(
    ("body", "service", "key", "value"),
    [
        ("[services.a]\ntimeuot = 1\n", "a", "timeuot", 1),
        ("[services.a]\ntimeout = -2\n", "a", "timeout", -2),
        ("[services.a]\ntimeout = 'fast'\n", "a", "timeout", "fast"),
        ("[services.a.retry]\nattempts = 0\n", "a", "retry.attempts", 0),
        ("[services.a.retry]\ntries = 3\n", "a", "retry.tries", 3),
        ("[services.a]\nurl = 'nope'\n", "a", "url", "nope"),
        ("[servicez.a]\n", None, "servicez", {"a": {}}),
    ],
)
def test_bad_toml_values_name_service_key_and_value(
    tmp_path: Path, body: str, service: str | None, key: str, value: object
) -> None:
    """Every invalid entry raises ConfigError with the service, the key and the value."""
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (info.value.service, info.value.key, info.value.value) == (service, key, value)


def test_bad_environment_value_names_the_key() -> None:
    """An env override that does not parse names the service and key."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env("user-service", environ={"SVCCLIENT_USER_SERVICE__DEADLINE": "soon"})
    assert (info.value.service, info.value.key) == ("user-service", "deadline")


def test_unknown_environment_key_is_rejected() -> None:
    """A typo in an override variable is an error, not silently ignored."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env("orders", environ={"SVCCLIENT_ORDERS__TIMEOTU": "1"})
    assert info.value.key == "SVCCLIENT_ORDERS__TIMEOTU"


def test_invalid_toml_file_is_config_error(tmp_path: Path) -> None:
    """A syntax error in the file is reported as ConfigError, not a raw parser error."""
    path = tmp_path / "broken.toml"
    path.write_text("[services.a\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "path"


@pytest.mark.parametrize(
    ("body", "key", "value"),
    [
        ("http2 = 'no'\n", "http2", "no"),
        ("verify = 'false'\n", "verify", "false"),
        ("deadline_header = 'Host'\n", "deadline_header", "Host"),
        ("namespace = 'x@evil.example'\n", "namespace", "x@evil.example"),
        ("port = 1.5\n", "port", 1.5),
        ("timeout = '1.5'\n", "timeout", "1.5"),
        ("[services.svc.breaker]\nwindow_duration = 1e306\n", "breaker.window_duration", 1e306),
        ("[services.svc.breaker]\nvolume_threshold = true\n", "breaker.volume_threshold", True),
        ("[services.svc.hedge]\nmax_hedges = true\n", "hedge.max_hedges", True),
        ("dns_nameservers = ['resolver.example']\n", "dns_nameservers", "resolver.example"),
    ],
)
def test_toml_values_keep_their_types(tmp_path: Path, body: str, key: str, value: object) -> None:
    """TOML has real booleans and numbers: text or bools in their place are errors."""
    path = tmp_path / "c.toml"
    path.write_text(body if body.startswith("[") else "[services.svc]\n" + body)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (info.value.service, info.value.key, info.value.value) == ("svc", key, value)


def test_environment_text_is_parsed_into_the_field_type() -> None:
    """Environment variables are text: numbers, booleans and lists are parsed from it."""
    env = {
        "SVCCLIENT_SVC__HTTP2": "yes",
        "SVCCLIENT_SVC__TIMEOUT": "1.5",
        "SVCCLIENT_SVC__RETRY_RETRY_STATUSES": "503, 429",
        "SVCCLIENT_SVC__DNS_NAMESERVERS": "127.0.0.1:5353",
    }
    c = ServiceConfig.from_env("svc", environ=env)
    assert c.http2 is True and c.timeout == 1.5
    assert c.retry.retry_statuses == {429, 503}
    assert c.dns_nameservers == ("127.0.0.1:5353",)


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("SVCCLIENT_SVC__BREAKER_WINDOW_DURATION", "1e400", "breaker.window_duration"),
        ("SVCCLIENT_SVC__DEADLINE", "inf", "deadline"),
        ("SVCCLIENT_SVC__PORT", "99999999999999999999999", "port"),
        ("SVCCLIENT_SVC__HTTP2", "maybe", "http2"),
    ],
)
def test_environment_errors_name_the_dotted_key(var: str, value: str, key: str) -> None:
    """An env value out of range: ConfigError naming service and dotted key, no OverflowError."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env("svc", environ={var: value})
    assert (info.value.service, info.value.key) == ("svc", key)
    assert str(info.value).startswith(f"svc: {key}=")


def test_field_types_are_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading many services resolves each class's type hints once, not per service."""
    import typing

    from svcclient._config import model

    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(model, "_HINTS", {})
    monkeypatch.setattr(model.typing, "get_type_hints", lambda cls: calls.append(cls) or real(cls))
    for i in range(20):
        ServiceConfig.from_mapping(f"s{i}", {"timeout": 1.0, "retry": {"attempts": 2}})
    assert len(calls) == len(set(calls)) <= 2
