"""``SVCCLIENT_<NAME>__<KEY>``: environment overrides of a service's configuration.

The grammar
-----------
::

    SVCCLIENT_<NAME>__<KEY>             top-level key     SVCCLIENT_USER_SERVICE__TIMEOUT=1.5
    SVCCLIENT_<NAME>__<SECTION>_<KEY>   policy key        SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS=5
    SVCCLIENT_<NAME>__<SECTION>_ENABLED=off             turn a policy off

``<NAME>`` is the service name upper-cased with ``-`` and ``.`` as ``_`` (``user-service``
-> ``USER_SERVICE``). The **double underscore** ends the name: a variable is split at its
*last* ``__`` (keys never contain one), so ``SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS``
belongs to ``user-service`` and never to ``user``. With a single underscore the reading
is ambiguous: ``SVCCLIENT_USER_DNS_TIMEOUT`` could be ``user``'s ``dns_timeout`` or
``user-dns``'s ``timeout``, and a variable meant for ``user-service`` made ``user`` fail
with "unknown key".

Because the name part must match exactly, an unknown key after *our* name is a typo and
raises :class:`ConfigError`; a variable for any other name is none of our business.
Variables in the old single-underscore form that would have named one of our keys are
ignored with one warning each (logger ``svcclient``), pointing at the new spelling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from typing import Any

from .._discovery.rules import env_name
from .._exceptions import ConfigError

__all__ = ["ENV_PREFIX", "SEPARATOR", "env_overrides", "override_variable"]

log = logging.getLogger("svcclient")

ENV_PREFIX = "SVCCLIENT_"
SEPARATOR = "__"

_warned_lock = threading.Lock()
_warned: set[str] = set()


def override_variable(name: str, key: str) -> str:
    """The variable that overrides ``key`` (``"timeout"``, ``"retry.attempts"``) of ``name``.

    >>> override_variable("user-service", "retry.attempts")
    'SVCCLIENT_USER_SERVICE__RETRY_ATTEMPTS'
    """
    return f"{ENV_PREFIX}{env_name(name)}{SEPARATOR}{key.upper().replace('.', '_')}"


def _split(var: str) -> tuple[str, str] | None:
    """``SVCCLIENT_A__B__TIMEOUT`` -> ``("A__B", "TIMEOUT")``; None without a separator."""
    if not var.startswith(ENV_PREFIX):
        return None
    body = var[len(ENV_PREFIX) :]
    head, sep, key = body.rpartition(SEPARATOR)
    if not sep or not head or not key:
        return None
    return head, key


def env_overrides(
    name: str,
    env: Mapping[str, str],
    top_keys: Collection[str],
    sections: Collection[str],
) -> dict[str, Any]:
    """The overrides ``env`` holds for service ``name`` as a TOML-style mapping.

    ``top_keys`` are the settable top-level keys, ``sections`` the policy tables. Values
    stay strings (the config model coerces them). Raises :class:`ConfigError` naming the
    variable for an unknown key after this service's name.
    """
    ours = env_name(name)
    out: dict[str, Any] = {}
    legacy = ENV_PREFIX + ours + "_"
    for var, value in env.items():
        split = _split(var)
        if split is None:
            if var.startswith(legacy) and _is_key(var[len(legacy) :].lower(), top_keys, sections):
                _warn_legacy(var, name)
            continue
        head, key = split
        if head != ours:
            continue
        rest = key.lower()
        if rest in top_keys:
            out[rest] = value
            continue
        section, _, sub = rest.partition("_")
        if section in sections and sub:
            if sub == "enabled" and value.strip().lower() in ("none", "off", "false", "0"):
                out[section] = None
            else:
                table = out.setdefault(section, {})
                if isinstance(table, dict):
                    table[sub] = value
            continue
        raise ConfigError(name, var, value, "unknown configuration key in environment variable")
    return out


def _is_key(rest: str, top_keys: Collection[str], sections: Collection[str]) -> bool:
    if rest in top_keys:
        return True
    section, _, sub = rest.partition("_")
    return section in sections and bool(sub)


def _warn_legacy(var: str, name: str) -> None:
    with _warned_lock:
        if var in _warned:
            return
        _warned.add(var)
    key = var[len(ENV_PREFIX + env_name(name) + "_") :]
    log.warning(
        "%s is ignored: overrides are spelled %s%s%s%s (a double underscore ends the name)",
        var,
        ENV_PREFIX,
        env_name(name),
        SEPARATOR,
        key,
    )
