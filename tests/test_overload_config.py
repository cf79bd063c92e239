"""Throttle and adaptive concurrency policies in ServiceConfig: off by default, built from
code, TOML and environment, validated with the service and section in every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcclient import (
    BulkheadPolicy,
    ConcurrencyPolicy,
    ConfigError,
    ServiceConfig,
    ThrottlePolicy,
    load_config,
)


def test_both_are_off_by_default() -> None:
    """A default config has neither throttling nor an adaptive limit."""
    config = ServiceConfig("users")
    assert config.throttle is None and config.concurrency is None


def test_toml_tables_build_the_policies(tmp_path: Path) -> None:
    """[services.x.throttle] and [services.x.concurrency] tables become frozen policies;
    `throttle = true` means the defaults."""
    path = tmp_path / "svc.toml"
    path.write_text(
        """
[services.users]
url = "http://users:8080"
[services.users.throttle]
k = 1.5
window = 60.0
buckets = 6
overload_statuses = [503]
[services.users.concurrency]
algorithm = "gradient2"
max_limit = 50
smoothing = 0.5

[services.orders]
throttle = true
"""
    )
    configs = load_config(path, environ={})
    users = configs["users"]
    assert users.throttle == ThrottlePolicy(
        k=1.5,
        window=60.0,
        buckets=6,
        overload_statuses=frozenset({503}),
    )
    assert users.concurrency == ConcurrencyPolicy(
        algorithm="gradient2", max_limit=50, smoothing=0.5
    )
    assert configs["orders"].throttle == ThrottlePolicy()
    assert configs["orders"].concurrency is None


def test_environment_enables_and_tunes_them() -> None:
    """SVCCLIENT_<NAME>__THROTTLE_K and ..._CONCURRENCY_* set (and so enable) the policies."""
    env = {
        "SVCCLIENT_USERS__THROTTLE_K": "3",
        "SVCCLIENT_USERS__THROTTLE_OVERLOAD_STATUSES": "429,503,502",
        "SVCCLIENT_USERS__CONCURRENCY_ALGORITHM": "vegas",
        "SVCCLIENT_USERS__CONCURRENCY_INITIAL_LIMIT": "5",
    }
    config = ServiceConfig.from_env("users", environ=env)
    assert config.throttle is not None and config.throttle.k == 3.0
    assert config.throttle.overload_statuses == frozenset({429, 502, 503})
    assert config.concurrency == ConcurrencyPolicy(initial_limit=5)
    off = ServiceConfig.from_env("users", config, {"SVCCLIENT_USERS__THROTTLE_ENABLED": "off"})
    assert off.throttle is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"throttle": {"k": 0.5}}, "throttle.k"),
        ({"throttle": {"max_reject_probability": "lots"}}, "throttle.max_reject_probability"),
        ({"throttle": {"bucket": 3}}, "throttle.bucket"),
        ({"concurrency": {"algorithm": "aimd"}}, "concurrency.algorithm"),
        ({"concurrency": {"min_limit": 0}}, "concurrency.min_limit"),
    ],
)
def test_bad_values_name_service_section_and_key(data: dict[str, object], key: str) -> None:
    """A bad setting from a file is a ConfigError naming the service and `section.key`."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_mapping("users", data)
    assert info.value.service == "users"
    assert info.value.key == key


def test_concurrency_replaces_the_bulkhead() -> None:
    """The default bulkhead steps aside for an adaptive limit; an explicit one is an error."""
    ServiceConfig("users", concurrency=ConcurrencyPolicy())
    ServiceConfig("users", concurrency=ConcurrencyPolicy(), bulkhead=None)
    with pytest.raises(ConfigError) as info:
        ServiceConfig(
            "users", concurrency=ConcurrencyPolicy(), bulkhead=BulkheadPolicy(max_concurrent=5)
        )
    assert info.value.key == "concurrency"


def test_concurrency_max_limit_fits_the_pool() -> None:
    """max_limit above max_connections would queue in the pool: a ConfigError."""
    ServiceConfig("users", max_connections=50, concurrency=ConcurrencyPolicy(max_limit=50))
    with pytest.raises(ConfigError) as info:
        ServiceConfig("users", max_connections=50, concurrency=ConcurrencyPolicy())
    assert info.value.key == "concurrency.max_limit"


def test_readme_overload_snippet_builds_the_config() -> None:
    """The README's overload-control example builds a config with both policies."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "ThrottlePolicy()" in b
    )
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    config = namespace["config"]
    assert isinstance(config, ServiceConfig)
    assert config.throttle == ThrottlePolicy() and config.concurrency == ConcurrencyPolicy()


def test_every_overload_benchmark_contender_builds_its_config() -> None:
    """bench_overload's contenders (full run, not only --quick) all have valid configs."""
    from benchmarks.bench_overload import CONTENDERS, _config

    configs = {name: _config(name) for name in CONTENDERS}
    assert configs.pop("httpx") is None
    assert all(isinstance(c, ServiceConfig) for c in configs.values())
