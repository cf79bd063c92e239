"""One validator for every setting: policies, ``ServiceConfig``, TOML and environment.

Each check takes the setting's ``key`` and ``value``, returns the value (normalised where
that is the point, e.g. a frozenset of status codes) and otherwise raises
:class:`~svcclient.ConfigError` naming the key, the value and the reason. Policies do not
know which service they belong to; ``ServiceConfig`` catches their errors and adds the
service and the section, so a user reads ``user-service: breaker.window_duration=...``.

The rules, the same everywhere:

* numbers are ``int`` or ``float`` but never ``bool`` (``True`` is an int in Python, and
  ``max_hedges=True`` must not mean 1); integers are ``int``;
* numbers are finite unless a field documents ``inf``; durations are also at most
  :data:`MAX_SECONDS`, so arithmetic on them (milliseconds, deadlines) cannot overflow;
* booleans are ``bool`` (``"false"`` is a non-empty, truthy string);
* header names are RFC 9110 tokens and never ``Host``, ``Content-Length``,
  ``Transfer-Encoding``, ``Connection`` or another hop-by-hop name (RFC 9110 7.6.1);
* service names, namespaces and domains are DNS labels and names (RFC 1123), matched
  whole (``fullmatch``: a ``$`` would accept a trailing newline).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from typing import Final, TypeVar

from ._exceptions import ConfigError

__all__ = [
    "FORBIDDEN_HEADERS",
    "MAX_SECONDS",
    "check_choice",
    "check_count",
    "check_dns_label",
    "check_dns_name",
    "check_flag",
    "check_header_name",
    "check_metric_prefix",
    "check_number",
    "check_percent",
    "check_seconds",
    "check_status_codes",
    "check_token",
    "is_number",
]

MAX_SECONDS: Final = 1e9
"""The longest duration any setting accepts (about 31 years)."""

FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
"""Header names a setting may not name: framing, routing and hop-by-hop headers."""

# Patterns are compiled on first use, not at import (each costs import time).
# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN: Final = functools.cache(lambda: re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"))
# RFC 1123 label: letters, digits, '-', not at either end, at most 63 characters.
_LABEL: Final = functools.cache(
    lambda: re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?", re.IGNORECASE)
)

_METRIC_NAME: Final = functools.cache(lambda: re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*"))

# Status-code sets already validated, by identity (equality would let {503.0} pass as {503}).
_CHECKED_CODES: dict[tuple[int, int, int], object] = {}

_T = TypeVar("_T")


def is_number(value: object) -> bool:
    """``int`` or ``float`` and not ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_number(
    key: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """A finite number in ``[low, high]`` (open ends with ``low_open`` / ``high_open``)."""
    if not is_number(value):
        raise ConfigError(None, key, value, "must be a number")
    x: float = value  # type: ignore[assignment]
    if math.isnan(x) or (not allow_inf and not math.isfinite(x)):
        raise ConfigError(None, key, value, "must be a finite number")
    if low is not None and (x <= low if low_open else x < low):
        raise ConfigError(None, key, value, f"must be {'>' if low_open else '>='} {_fmt(low)}")
    if high is not None and (x >= high if high_open else x > high):
        raise ConfigError(None, key, value, f"must be {'<' if high_open else '<='} {_fmt(high)}")
    return x


def check_seconds(key: str, value: object, *, zero: bool = False) -> float:
    """A duration in seconds: finite, > 0 (>= 0 with ``zero``), at most ``MAX_SECONDS``."""
    if not is_number(value):
        raise ConfigError(None, key, value, "must be a number of seconds")
    x: float = value  # type: ignore[assignment]
    if not (0 <= x <= MAX_SECONDS) or (x == 0 and not zero):
        low = ">= 0" if zero else "> 0"
        raise ConfigError(None, key, value, f"must be a finite number of seconds {low}, <= 1e9")
    return x


def check_count(key: str, value: object, *, low: int = 1, high: int | None = None) -> int:
    """An ``int`` (not ``bool``) in ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(None, key, value, "must be an integer")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(None, key, value, f"must be an integer {bounds}")
    return value


def check_percent(key: str, value: object) -> float:
    """A percentage in ``(0, 100]``."""
    return check_number(key, value, low=0, low_open=True, high=100)


def check_flag(key: str, value: object) -> bool:
    """A ``bool``: ``True`` or ``False``, nothing truthy."""
    if not isinstance(value, bool):
        raise ConfigError(None, key, value, "must be True or False")
    return value


def check_choice(key: str, value: _T, choices: Iterable[object]) -> _T:
    """One of ``choices`` (compared with ``==``, and of the same type)."""
    options = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in options):
        raise ConfigError(None, key, value, "must be one of " + ", ".join(map(str, options)))
    return value


def check_token(key: str, value: object, *, optional: bool = False) -> str | None:
    """An RFC 9110 token (header, cookie or method name); ``None`` with ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _TOKEN().fullmatch(value):
        reason = "must be a token (RFC 9110: letters, digits and !#$%&'*+-.^_`|~)"
        raise ConfigError(None, key, value, reason)
    return value


def check_header_name(key: str, value: object, *, optional: bool = False) -> str | None:
    """A header name a setting may set: a token, and not in :data:`FORBIDDEN_HEADERS`."""
    name = check_token(key, value, optional=optional)
    if name is not None and name.lower() in FORBIDDEN_HEADERS:
        raise ConfigError(None, key, value, "a framing or hop-by-hop header cannot be set")
    return name


def check_dns_label(key: str, value: object, *, optional: bool = False) -> str | None:
    """One DNS label (RFC 1123): ``user-service``, no dots, 63 characters at most."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _LABEL().fullmatch(value):
        reason = "must be a DNS label: letters, digits and '-' (not at the ends), <= 63"
        raise ConfigError(None, key, value, reason)
    return value


def check_dns_name(
    key: str, value: object, *, optional: bool = False, absolute: bool = True
) -> str | None:
    """A DNS name: labels joined by dots, 253 characters at most.

    A final dot (an absolute name) is allowed unless ``absolute=False``.
    """
    if value is None and optional:
        return None
    if isinstance(value, str):
        relative = value[:-1] if absolute and value.endswith(".") else value
        if len(relative) <= 253 and all(_LABEL().fullmatch(p) for p in relative.split(".")):
            return value
    raise ConfigError(None, key, value, "must be a DNS name: labels joined by '.'")


def check_metric_prefix(key: str, value: object) -> str:
    """A Prometheus metric name prefix (``[a-zA-Z_:][a-zA-Z0-9_:]*``) or ``""`` for none."""
    if not isinstance(value, str) or (value and not _METRIC_NAME().fullmatch(value)):
        reason = "must be a Prometheus name: letters, digits, '_' and ':', not a digit first"
        raise ConfigError(None, key, value, reason)
    return value


def check_status_codes(key: str, value: object, *, low: int, high: int) -> frozenset[int]:
    """A collection of HTTP status codes in ``[low, high]``, returned as a frozenset."""
    if _CHECKED_CODES.get((id(value), low, high)) is value:
        return value  # type: ignore[return-value]  # checked before: the defaults, once
    if isinstance(value, str | bytes | int) or not isinstance(value, Iterable):
        raise ConfigError(None, key, value, "must be a collection of status codes")
    out: set[int] = set()
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int):
            raise ConfigError(
                None,
                key,
                code,
                "must be an integer status code (classes such as '5xx' are not accepted)",
            )
        if not low <= code <= high:
            raise ConfigError(None, key, code, f"must be a status code {low}-{high}")
        out.add(code)
    codes = frozenset(out)
    if type(value) is frozenset and value == codes and len(_CHECKED_CODES) < 64:
        _CHECKED_CODES[(id(value), low, high)] = value  # kept alive, so the id stays its own
    return codes
