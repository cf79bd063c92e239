"""Where a config comes from: a name becomes the TOML file's entry or defaults, plus env."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .model import ServiceConfig, load_config

__all__ = ["CONFIG_ENV", "resolve_config"]

CONFIG_ENV = "SVCCLIENT_CONFIG"


def resolve_config(config: ServiceConfig | str, overrides: Mapping[str, Any]) -> ServiceConfig:
    """A name becomes the file's entry (``$SVCCLIENT_CONFIG``) or defaults, plus env."""
    if isinstance(config, str):
        path = os.environ.get(CONFIG_ENV)
        configs = load_config(path) if path else {}
        config = configs.get(config) or ServiceConfig.from_env(config)
    return config.with_overrides(**overrides) if overrides else config
