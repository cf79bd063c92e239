"""Retry-After parsing: both header forms, and garbage treated as absent."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcclient._policies.retry_after import MAX_RETRY_AFTER, parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("5", 5.0), ("120", 120.0), ("  7 ", 7.0), ("1.5", 1.5), ("007", 7.0)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    """Delta-seconds values (and a decimal fraction) parse to that many seconds."""
    assert parse_retry_after(value, NOW) == expected


def test_http_date_in_the_future() -> None:
    """An IMF-fixdate 90 s after now gives 90 s."""
    assert parse_retry_after("Wed, 01 May 2024 12:01:30 GMT", NOW) == pytest.approx(90.0)


def test_http_date_in_the_past_is_zero() -> None:
    """A date that has already passed means "retry now", not a negative wait."""
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", NOW) == 0.0


def test_http_date_obsolete_forms() -> None:
    """The obsolete RFC 850 and asctime date forms are understood too."""
    assert parse_retry_after("Wednesday, 01-May-24 12:00:10 GMT", NOW) == pytest.approx(10.0)
    assert parse_retry_after("Wed May  1 12:00:20 2024", NOW) == pytest.approx(20.0)


def test_http_date_with_minus_zero_zone() -> None:
    """A "-0000" zone (naive datetime in email.utils) is read as UTC."""
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 -0000", NOW) == pytest.approx(30.0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "-5",
        "+5",
        "1e3",
        "inf",
        "nan",
        "soon",
        "5 seconds",
        "Wed, 32 May 2024 12:00:00 GMT",
        "Wed, 01 Foo 2024 12:00:00 GMT",
        "1" * 65,
        "٣",  # an Arabic-Indic digit three: not an ASCII digit
        "\x00",
    ],
)
def test_garbage_is_absent(value: str) -> None:
    """Values that are neither delta-seconds nor an HTTP-date give None."""
    assert parse_retry_after(value, NOW) is None


def test_none_and_non_str_are_absent() -> None:
    """A missing header (None) or a non-string value gives None rather than raising."""
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after(5, NOW) is None  # type: ignore[arg-type]


def test_huge_values_are_clamped() -> None:
    """Huge delta-seconds and far-future dates are clamped to MAX_RETRY_AFTER."""
    assert parse_retry_after("9" * 60, NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == MAX_RETRY_AFTER


def test_now_wall_nan_gives_none() -> None:
    """A nonsensical wall-clock time cannot produce a NaN delay."""
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", float("nan")) is None


@given(st.text(max_size=80), st.floats(allow_nan=True, allow_infinity=True))
def test_never_raises(value: str, now: float) -> None:
    """Any string with any clock value gives None or a finite delay within [0, max]."""
    result = parse_retry_after(value, now)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER


@given(st.integers(min_value=0, max_value=10**6))
def test_http_date_roundtrip(seconds: int) -> None:
    """A date formatted by email.utils `seconds` from now parses back to `seconds`."""
    when = datetime.fromtimestamp(NOW + seconds, tz=UTC)
    value = format_datetime(when, usegmt=True)
    assert parse_retry_after(value, NOW) == pytest.approx(min(seconds, MAX_RETRY_AFTER))
