"""The SVCCLIENT_<NAME>__<KEY> override grammar (issue 13): no collisions between names."""

from __future__ import annotations

import logging

import pytest

from svcclient import ConfigError, ServiceClient, ServiceConfig
from svcclient._config.env import override_variable
from svcclient._config.model import ServiceConfig as _Model
from svcclient._config.model import _sections

_SECTIONS = _sections()  # every policy section (three are imported on first use)
BOTH = {
    "SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS": "5",
    "SVCCLIENT_USER__TIMEOUT": "0.5",
}


def test_user_service_override_does_not_break_user() -> None:
    """user-service's retry override leaves `user` alone (it used to raise unknown key)."""
    user = ServiceConfig.from_env("user", ServiceConfig("user", url="http://user:80"), BOTH)
    assert (user.timeout, user.retry.attempts) == (0.5, ServiceConfig("x").retry.attempts)


def test_user_override_does_not_reach_user_service() -> None:
    """Each name takes only the variables whose name part is exactly its own."""
    svc = ServiceConfig.from_env("user-service", environ=BOTH)
    assert (svc.timeout, svc.retry.attempts) == (ServiceConfig("x").timeout, 5)


def test_service_client_for_user_builds_beside_user_service_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's case end to end: ServiceClient("user", url=...) builds with the var set."""
    monkeypatch.setenv("SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS", "5")
    from prometheus_client import CollectorRegistry

    with ServiceClient("user", url="http://user:80", registry=CollectorRegistry()) as client:
        assert client.config.retry.attempts != 5


def test_double_hyphen_names_split_at_the_last_separator() -> None:
    """`a--b`'s variables (SVCCLIENT_A__B__TIMEOUT) belong to it, not to `a`."""
    env = {"SVCCLIENT_A__B__TIMEOUT": "0.25"}
    assert ServiceConfig.from_env("a--b", environ=env).timeout == 0.25
    assert ServiceConfig.from_env("a", environ=env).timeout == ServiceConfig("x").timeout


def test_dns_timeout_is_unambiguous() -> None:
    """`user`'s dns_timeout and `user-dns`'s timeout are two different variables."""
    env = {"SVCCLIENT_USER__DNS_TIMEOUT": "0.3", "SVCCLIENT_USER_DNS__TIMEOUT": "0.7"}
    assert ServiceConfig.from_env("user", environ=env).dns_timeout == 0.3
    assert ServiceConfig.from_env("user-dns", environ=env).timeout == 0.7


def test_typo_after_our_name_is_an_error() -> None:
    """An unknown key after this service's exact name raises, naming the variable."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env("user", environ={"SVCCLIENT_USER__RETRY": "5"})
    assert info.value.key == "SVCCLIENT_USER__RETRY"


def test_section_enabled_off_disables_the_policy() -> None:
    """__<SECTION>_ENABLED=off turns an optional policy off."""
    cfg = ServiceConfig.from_env("orders", environ={"SVCCLIENT_ORDERS__BREAKER_ENABLED": "off"})
    assert cfg.breaker is None


def test_old_single_underscore_form_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The old spelling does nothing and says how to spell it now (once)."""
    env = {"SVCCLIENT_BILLING_RETRY_ATTEMPTS": "7"}
    with caplog.at_level(logging.WARNING, logger="svcclient"):
        cfg = ServiceConfig.from_env("billing", environ=env)
        ServiceConfig.from_env("billing", environ=env)
    assert cfg.retry.attempts != 7
    hits = [
        r.getMessage() for r in caplog.records if "SVCCLIENT_BILLING_RETRY_ATTEMPTS" in r.message
    ]
    assert len(hits) == 1 and "SVCCLIENT_BILLING__RETRY_ATTEMPTS" in hits[0]


def test_override_variable_builds_the_documented_name() -> None:
    """override_variable spells keys the way the parser reads them."""
    name = override_variable("user-service", "retry.attempts")
    cfg = ServiceConfig.from_env("user-service", environ={name: "4"})
    assert (name, cfg.retry.attempts) == ("SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS", 4)


def test_no_top_level_key_starts_with_a_section_name() -> None:
    """`<SECTION>_<KEY>` can never be misread as a top-level key (the grammar relies on it)."""
    import dataclasses

    top = {f.name for f in dataclasses.fields(_Model)} - set(_SECTIONS)
    assert not [k for k in top for s in _SECTIONS if k.startswith(s + "_")]
    assert not [k for k in top if "__" in k]


def test_new_dns_and_connection_age_keys_from_env_and_file() -> None:
    """dns_search, dns_allow_addresses and max_connection_age parse from env and TOML."""
    env = {
        "SVCCLIENT_USER__MAX_CONNECTION_AGE": "none",
        "SVCCLIENT_USER__DNS_SEARCH": "a.local,b.local",
        "SVCCLIENT_USER__DNS_ALLOW_ADDRESSES": "169.254.10.0/24",
    }
    cfg = ServiceConfig.from_env("user", environ=env)
    assert cfg.max_connection_age is None
    assert cfg.dns_search == ("a.local", "b.local")
    assert cfg.dns_allow_addresses == ("169.254.10.0/24",)
    cfg = ServiceConfig.from_mapping("user", {"dns_search": [], "max_connection_age": 60})
    assert (cfg.dns_search, cfg.max_connection_age) == ((), 60.0)
