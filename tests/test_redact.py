"""The one redactor: URLs, free text and config values."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient import ConfigError, DiscoveryError, redact_url
from svcclient._redact import is_token, redact_text, redact_value

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpM"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://u:p@h.example/a?x=1#f", "https://REDACTED:REDACTED@h.example/a?x=REDACTED"),
        ("https://token@h.example/a", "https://REDACTED@h.example/a"),
        ("http://h.example:81/a/b", "http://h.example:81/a/b"),
        (f"http://h.example/reset/{JWT}", "http://h.example/reset/REDACTED"),
        (
            f"http://u:p@h.example/reset/{JWT}?t=1",
            "http://REDACTED:REDACTED@h.example/reset/REDACTED?t=REDACTED",
        ),
        ("http://h/i/3f2b9c1e-8a4d-4c5e-9f00-1234567890ab/x", "http://h/i/REDACTED/x"),
        ("http://h/blob/da39a3ee5e6b4b0d3255bfef95601890afd80709", "http://h/blob/REDACTED"),
        ("http://h/k/dGhpcyBpcyBhIHNlY3JldCB0b2tlbjEy", "http://h/k/REDACTED"),
        ("http://h/list-all-pending-invoices/42", "http://h/list-all-pending-invoices/42"),
        ("/relative/path?sig=xyz", "/relative/path?sig=REDACTED"),
        ("http://h.example/a@b", "http://h.example/a@b"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    """Userinfo, query values and token-like path segments go; the readable rest stays."""
    assert redact_url(url) == redacted
    assert redact_url(httpx.URL(url)) == redacted or url.startswith("/")


@pytest.mark.parametrize(
    "segment",
    [
        JWT,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "3F2B9C1E-8A4D-4C5E-9F00-1234567890AB",
        "507f1f77bcf86cd799439011",
        "aGVsbG8gd29ybGQgMTIzNDU2Nzg5MA==",
    ],
)
def test_tokens_are_recognised(segment: str) -> None:
    """JWTs (JWS and unsigned), UUIDs, long hex and base64 count as tokens."""
    assert is_token(segment)


@pytest.mark.parametrize("segment", ["users", "42", "v1", "list-all-pending-invoices", "u123"])
def test_readable_segments_are_not_tokens(segment: str) -> None:
    """Words, short ids and slugs are kept (the route normaliser handles ids)."""
    assert not is_token(segment)


def test_redact_text_finds_urls_jwts_and_authorization() -> None:
    """Free text loses URL secrets, bare JWTs and whatever follows Authorization."""
    text = (
        f"env: X_URL=http://admin:hunter2@db:5432/x?token=s3cr3t; bearer {JWT}; "
        "headers {'Authorization': 'Bearer abc.def'} authorization=Basic Zm9vOmJhcg=="
    )
    out = redact_text(text)
    for secret in ("hunter2", "s3cr3t", JWT, "abc.def", "Zm9vOmJhcg"):
        assert secret not in out
    assert "db:5432" in out and "env: X_URL=" in out


def test_redact_value_is_a_repr() -> None:
    """Values are shown as repr, strings redacted first."""
    assert redact_value("http://a:b@h") == "'http://REDACTED:REDACTED@h'"
    assert redact_value(1.5) == "1.5"
    assert "pw" not in redact_value(["http://u:pw@h"])


def test_config_error_message_and_repr_are_redacted() -> None:
    """ConfigError names key and value but shows the value redacted; .value keeps it."""
    err = ConfigError("svc", "url", "http://u:hunter2@h/x?x=1", "a base URL takes no query")
    assert "hunter2" not in str(err) and "hunter2" not in repr(err)
    assert str(err).startswith("svc: url='http://REDACTED:REDACTED@h/x?x=REDACTED'")
    assert err.value == "http://u:hunter2@h/x?x=1"


def test_discovery_error_tried_is_redacted() -> None:
    """The rules' findings in DiscoveryError.tried never carry credentials."""
    err = DiscoveryError("svc", ["env: SVC_URL=http://u:hunter2@h:80"], "no answer")
    assert "hunter2" not in str(err) and "hunter2" not in repr(err)
    assert all("hunter2" not in t for t in err.tried)


@settings(max_examples=200, deadline=None)
@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
    # Lower case: the marker REDACTED can never contain a planted secret.
    password=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20),
    value=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20),
    path=st.lists(st.sampled_from(["users", "42", "v1", "orders", "a-b"]), max_size=4),
)
def test_no_planted_secret_survives(user: str, password: str, value: str, path: list[str]) -> None:
    """Property: a password in userinfo and a query value never survive redaction."""
    url = f"https://{user}:{password}@api.example/{'/'.join(path)}?key={value}&flag"
    out = redact_url(url)
    assert password not in out and f"={value}" not in out
    assert out.startswith("https://REDACTED:REDACTED@api.example/")
    assert password not in redact_text(f"failed: {url} (see logs)")


def test_svcclient_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A record on the svcclient logger loses URL secrets in its message and traceback."""
    import logging

    log = logging.getLogger("svcclient")
    with caplog.at_level(logging.DEBUG, logger="svcclient"):
        log.warning("fetching %s", "http://u:hunter2@h/x?token=s3cr3t")
        try:
            raise ValueError(f"bad {JWT}")
        except ValueError:
            log.exception("failed")
    text = caplog.text
    assert "hunter2" not in text and "s3cr3t" not in text and JWT not in text
    assert "http://REDACTED:REDACTED@h/x?token=REDACTED" in text
