"""One redactor for everything svcclient prints: URLs, free text and config values.

A leaf module (it imports nothing from svcclient) so the exceptions, the observers and the
CLI can all use it. What counts as a secret:

* URL **userinfo** (``user:password@``) becomes ``REDACTED:REDACTED@`` (``REDACTED@``
  without a password), as the OpenTelemetry ``url.full`` convention asks;
* every **query value** becomes ``REDACTED`` (names are kept: they help debugging and are
  rarely secret); the fragment is dropped;
* **path segments that look like tokens** become ``REDACTED``: JWTs (``eyJ...`` parts
  joined by dots), UUIDs, hex strings of 16+ characters (hashes, object ids) and
  base64/base64url strings of 24+ characters that mix letters and digits. Readable slugs
  (``list-all-pending-invoices``) and short ids stay, so a redacted URL is still useful;
* in **free text** (exception messages, error strings the CLI shows) every ``scheme://``
  URL is redacted as above, JWTs anywhere are replaced, and so is whatever follows
  ``Authorization:`` / ``Proxy-Authorization:``;
* svcclient's **log records**: :class:`RedactingFilter` sits on the ``svcclient`` logger
  (installed when this module is imported) and redacts each record's message and
  traceback text before any handler sees it.

:func:`is_token` is the segment rule; the route normaliser builds on it so a metric label
never holds what a span would redact.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Final

__all__ = ["REDACTED", "RedactingFilter", "is_token", "redact_text", "redact_url", "redact_value"]

REDACTED: Final = "REDACTED"

# Patterns are compiled on first use, not at import (each costs import time).
_UUID: Final = functools.cache(
    lambda: re.compile(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
    )
)
_LONG_HEX: Final = functools.cache(lambda: re.compile(r"[0-9a-f]{16,}", re.IGNORECASE))
# base64 / base64url (RFC 4648) tokens. Requiring both a digit and a letter keeps long
# readable slugs such as "list-all-pending-invoices" intact.
_B64: Final = functools.cache(lambda: re.compile(r"[A-Za-z0-9_\-+]{24,}={0,2}"))
_HAS_DIGIT: Final = functools.cache(lambda: re.compile(r"\d"))
_HAS_ALPHA: Final = functools.cache(lambda: re.compile(r"[A-Za-z]"))
# A JWS has three base64url parts, a JWE five; the header always starts with '{"', which
# is "eyJ" in base64url.
_JWT_SEGMENT: Final = functools.cache(
    lambda: re.compile(r"eyJ[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){1,4}")
)
_JWT_IN_TEXT: Final = functools.cache(
    lambda: re.compile(r"eyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){1,4}")
)
_URL_IN_TEXT: Final = functools.cache(
    lambda: re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>\\]+")
)
_AUTH_IN_TEXT: Final = functools.cache(
    lambda: re.compile(
        r"((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
        r"(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s'\",;}]+",
        re.IGNORECASE,
    )
)


def is_token(segment: str) -> bool:
    """True when a path segment looks like a credential or an opaque id.

    >>> is_token("3f2b9c1e-8a4d-4c5e-9f00-1234567890ab"), is_token("invoices")
    (True, False)
    """
    n = len(segment)
    if n < 16:
        return False
    if n == 36 and _UUID().fullmatch(segment):
        return True
    if _LONG_HEX().fullmatch(segment) or _JWT_SEGMENT().fullmatch(segment):
        return True
    return bool(
        n >= 24
        and _B64().fullmatch(segment)
        and _HAS_DIGIT().search(segment)
        and _HAS_ALPHA().search(segment)
    )


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        if not item:
            continue
        key, eq, _ = item.partition("=")
        parts.append(f"{key}={REDACTED}" if eq else key)
    return "&".join(parts)


def _redact_path(path: str) -> str:
    if len(path) < 17:  # no segment can be a token
        return path
    segments = path.split("/")
    changed = False
    for i, seg in enumerate(segments):
        if is_token(seg):
            segments[i] = REDACTED
            changed = True
    return "/".join(segments) if changed else path


def redact_url(url: object) -> str:
    """``url`` (text or ``httpx.URL``) without secrets: see the module docstring.

    >>> redact_url("https://bob:pw@api.example.com/a?token=abc&page=2#top")
    'https://REDACTED:REDACTED@api.example.com/a?token=REDACTED&page=REDACTED'
    >>> redact_url("http://api/reset/eyJhbGciOiJIUzI1NiJ9.e30.sig")
    'http://api/reset/REDACTED'
    """
    s = str(url)
    hash_at = s.find("#")
    if hash_at != -1:
        s = s[:hash_at]
    query = ""
    q_at = s.find("?")
    if q_at != -1:
        s, query = s[:q_at], s[q_at + 1 :]
    start = s.find("://")
    start = 0 if start == -1 else start + 3
    end = s.find("/", start)
    if end == -1:
        end = len(s)
    at = s.rfind("@", start, end)
    if at != -1:
        creds = f"{REDACTED}:{REDACTED}@" if ":" in s[start:at] else f"{REDACTED}@"
        s = s[:start] + creds + s[at + 1 :]
        end = end - (at + 1 - start) + len(creds)
    if end < len(s):
        s = s[:end] + _redact_path(s[end:])
    if query:
        redacted = _redact_query(query)
        if redacted:
            s = f"{s}?{redacted}"
    return s


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted, JWTs and ``Authorization`` values removed.

    >>> redact_text("cannot reach http://u:pw@db:5432/x (Authorization: Bearer abc)")
    'cannot reach http://REDACTED:REDACTED@db:5432/x (Authorization: REDACTED)'
    """
    if "://" in text:
        text = _URL_IN_TEXT().sub(lambda m: redact_url(m.group(0)), text)
    if "eyJ" in text:
        text = _JWT_IN_TEXT().sub(REDACTED, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_IN_TEXT().sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_value(value: object) -> str:
    """``repr(value)`` with secrets removed: how errors and the CLI show a config value."""
    if isinstance(value, str):
        return repr(redact_text(value))
    return redact_text(repr(value))


class RedactingFilter(logging.Filter):
    """Redacts a record's message (and traceback text) before handlers format it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops it."""
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text)
        return True


_LOG_FILTER: Final = RedactingFilter()
_logger = logging.getLogger("svcclient")
if not any(isinstance(f, RedactingFilter) for f in _logger.filters):
    _logger.addFilter(_LOG_FILTER)
