"""Fuzzing the config doors: code, TOML and environment only ever raise ConfigError.

For ``ServiceConfig(**kwargs)`` a ``TypeError`` is also allowed (an unknown keyword is
Python's own error). Every ``ConfigError`` must name the service (when there is one), the
key, and the value as the redactor shows it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcclient import (
    BreakerPolicy,
    ConfigError,
    HedgePolicy,
    RetryPolicy,
    ServiceConfig,
    load_config,
)
from svcclient._config.model import _sections
from svcclient._redact import redact_value

_SECTIONS = _sections()  # every policy section (three are imported on first use)
FIELDS = [f.name for f in dataclasses.fields(ServiceConfig) if f.name != "name"]
SECTION_KEYS = {
    section: [f.name for f in dataclasses.fields(cls) if f.init]
    for section, cls in _SECTIONS.items()
}
TOP_KEYS = [k for k in FIELDS if k not in _SECTIONS and k != "fallback"]

names = st.one_of(
    st.sampled_from(["svc", "user-service", "a.b", "http://127.0.0.1:8080"]),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["Host", "X-Deadline", "127.0.0.1:53", "http://u:pw@h:1/x?t=1", "p95"]),
    st.sampled_from([1e306, 1e308, 5e-324, 2**63, -0.0]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.sampled_from([RetryPolicy(), BreakerPolicy(), HedgePolicy(), b"bytes", object()]),
)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_message(exc: ConfigError, service: str | None) -> None:
    text = str(exc)
    assert exc.key and exc.key in text, text
    assert redact_value(exc.value) in text, text
    if service:
        assert exc.service == service
        assert text.startswith(redact_value(service)[1:-1] + ": "), text


@_SETTINGS
@given(name=names, kwargs=st.dictionaries(st.sampled_from(FIELDS), values, max_size=4))
def test_service_config_kwargs_raise_only_config_or_type_errors(
    name: str, kwargs: dict[str, Any]
) -> None:
    """Any keyword values give a config, a ConfigError naming service/key/value, or TypeError."""
    try:
        ServiceConfig(name, **kwargs)
    except ConfigError as exc:
        _check_message(exc, name if exc.key != "name" else None)
    except TypeError:
        pass


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml(services: dict[str, dict[str, Any]], defaults: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(header: str, body: dict[str, Any]) -> None:
        lines.append(f"[{header}]")
        subs = {k: v for k, v in body.items() if isinstance(v, dict)}
        for key, value in body.items():
            if not isinstance(value, dict):
                lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
        for key, sub in subs.items():
            table(f"{header}.{json.dumps(key)}", sub)

    if defaults:
        table("defaults", defaults)
    for name, body in services.items():
        table(f"services.{json.dumps(name)}", body)
    return "\n".join(lines) + "\n"


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=16),
    st.sampled_from(["Host", "auto", "dns", "127.0.0.1", "http://u:pw@h:1", "time", "count"]),
)
toml_values = st.one_of(toml_scalars, st.lists(toml_scalars, max_size=3))


@st.composite
def service_tables(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from([*TOP_KEYS, "bogus"]), max_size=3)):
        body[key] = draw(toml_values)
    for section in draw(st.lists(st.sampled_from(sorted(SECTION_KEYS)), max_size=2)):
        keys = st.sampled_from([*SECTION_KEYS[section], "bogus"])
        body[section] = draw(st.dictionaries(keys, toml_values, max_size=3))
    return body


@_SETTINGS
@given(
    services=st.dictionaries(names, service_tables(), max_size=3),
    defaults=service_tables(),
    garbage=st.one_of(st.just(""), st.text(max_size=30)),
)
def test_load_config_on_generated_toml_raises_only_config_errors(
    services: dict[str, dict[str, Any]], defaults: dict[str, Any], garbage: str
) -> None:
    """Generated TOML (and trailing garbage) loads or raises a ConfigError naming the key."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "svc.toml"
        path.write_text(_toml(services, defaults) + garbage, encoding="utf-8")
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            _check_message(exc, exc.service)
            if exc.service is not None:
                assert exc.service in services


env_keys = st.one_of(
    st.sampled_from([k.upper() for k in TOP_KEYS]),
    st.sampled_from(
        [f"{s.upper()}_{k.upper()}" for s, keys in SECTION_KEYS.items() for k in [*keys, "enabled"]]
    ),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12),
)
env_values = st.one_of(
    st.text(max_size=16),
    st.sampled_from(
        [
            "1",
            "0",
            "-1",
            "1e400",
            "1e306",
            "9" * 30,
            "inf",
            "nan",
            "true",
            "off",
            "none",
            "2.5",
            "429,503",
        ]
    ),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@_SETTINGS
@given(env=st.dictionaries(env_keys.map(lambda k: f"SVCCLIENT_SVC__{k}"), env_values, max_size=4))
def test_env_overrides_raise_only_config_errors(env: dict[str, str]) -> None:
    """Any SVCCLIENT_SVC__* variables override, or raise a ConfigError naming svc and the key."""
    try:
        ServiceConfig.from_env("svc", environ=env)
    except ConfigError as exc:
        _check_message(exc, "svc")
