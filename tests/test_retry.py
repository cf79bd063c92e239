"""RetryPolicy validation and backoff bounds, and the pure retry decision."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcclient._classify import ERROR_TYPES
from svcclient._exceptions import ConfigError
from svcclient._policies.retry import RetryDecision, RetryPolicy, decide_retry

# --- policy -------------------------------------------------------------------------------


def test_defaults() -> None:
    """Defaults match the contract: 3 attempts, 0.05 s base, 1 s cap, 429/502/503/504."""
    p = RetryPolicy()
    assert (p.attempts, p.backoff_base, p.backoff_cap) == (3, 0.05, 1.0)
    assert p.retry_statuses == frozenset({429, 502, 503, 504})
    assert p.idempotent_methods == frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
    assert p.idempotency_header == "Idempotency-Key"
    assert p.retry_read_timeouts and p.respect_retry_after
    assert p.max_retries == 2


def test_frozen_and_replace() -> None:
    """Policies cannot be mutated; dataclasses.replace makes a validated variant."""
    p = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.attempts = 5  # type: ignore[misc]
    q = dataclasses.replace(p, attempts=5)
    assert q.attempts == 5 and q.worst_case_delay() > p.worst_case_delay()
    with pytest.raises(ConfigError):
        dataclasses.replace(p, attempts=0)


def test_equality_ignores_cached_tenacity_objects() -> None:
    """Two policies with the same settings are equal and hash alike."""
    assert RetryPolicy(attempts=4) == RetryPolicy(attempts=4)
    assert hash(RetryPolicy(attempts=4)) == hash(RetryPolicy(attempts=4))
    assert "_wait" not in repr(RetryPolicy())


def test_disabled_means_one_attempt() -> None:
    """RetryPolicy.disabled() has one attempt and never retries."""
    p = RetryPolicy.disabled()
    assert p.attempts == 1 and p.worst_case_delay() == 0.0
    assert not decide(p, status=503).retry


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"backoff_base": 0}, "backoff_base"),
        ({"backoff_base": -0.1}, "backoff_base"),
        ({"backoff_base": float("nan")}, "backoff_base"),
        ({"backoff_base": float("inf"), "backoff_cap": float("inf")}, "backoff_base"),
        ({"backoff_base": "0.1"}, "backoff_base"),
        ({"backoff_base": 0.5, "backoff_cap": 0.1}, "backoff_cap"),
        ({"backoff_cap": float("inf")}, "backoff_cap"),
        ({"retry_statuses": frozenset({"5xx"})}, "retry_statuses"),
        ({"retry_statuses": frozenset({"503"})}, "retry_statuses"),
        ({"retry_statuses": frozenset({600})}, "retry_statuses"),
        ({"retry_statuses": frozenset({200})}, "retry_statuses"),
        ({"retry_statuses": frozenset({99})}, "retry_statuses"),
        ({"retry_statuses": frozenset({True})}, "retry_statuses"),
        ({"retry_statuses": "503"}, "retry_statuses"),
        ({"retry_statuses": 503}, "retry_statuses"),
        ({"idempotent_methods": frozenset({""})}, "idempotent_methods"),
        ({"idempotent_methods": frozenset({"GE T"})}, "idempotent_methods"),
        ({"idempotent_methods": "GET"}, "idempotent_methods"),
        ({"idempotency_header": ""}, "idempotency_header"),
        ({"idempotency_header": "Bad Header"}, "idempotency_header"),
        ({"retry_read_timeouts": 1}, "retry_read_timeouts"),
        ({"respect_retry_after": "yes"}, "respect_retry_after"),
    ],
)
def test_bad_config_raises_config_error(kwargs: dict[str, Any], key: str) -> None:
    """Invalid settings (including status classes like '5xx') raise ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)
    assert info.value.key == key
    assert info.value.service is None


def test_collections_are_normalised() -> None:
    """Any iterable of statuses/methods is stored as a frozenset; methods are upper-cased."""
    p = RetryPolicy(retry_statuses=[503, 503, 500], idempotent_methods=["get", "Put"])  # type: ignore[arg-type]
    assert p.retry_statuses == frozenset({500, 503})
    assert p.idempotent_methods == frozenset({"GET", "PUT"})


def test_worst_case_delay() -> None:
    """worst_case_delay sums the capped exponential upper bounds over attempts - 1 retries."""
    assert RetryPolicy().worst_case_delay() == pytest.approx(0.05 + 0.1)
    p = RetryPolicy(attempts=8, backoff_base=0.1, backoff_cap=1.0)
    # 0.1, 0.2, 0.4, 0.8, then capped at 1.0 three times
    assert p.worst_case_delay() == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 3 * 1.0)


def test_worst_case_delay_with_many_attempts() -> None:
    """Very many attempts end at cap * retries without overflow or a long loop."""
    p = RetryPolicy(attempts=1000, backoff_base=1.0, backoff_cap=2.0)
    assert p.worst_case_delay() == pytest.approx(1.0 + 2.0 * 998)


@given(
    retry_number=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.001, max_value=5.0),
    factor=st.floats(min_value=1.0, max_value=100.0),
)
def test_backoff_within_full_jitter_bounds(retry_number: int, base: float, factor: float) -> None:
    """backoff(n) is in [0, min(cap, base * 2**(n-1))]."""
    p = RetryPolicy(attempts=2, backoff_base=base, backoff_cap=base * factor)
    delay = p.backoff(retry_number)
    assert 0.0 <= delay <= min(base * factor, base * 2.0 ** (retry_number - 1)) * (1 + 1e-9)


def test_backoff_is_jittered_over_the_whole_window() -> None:
    """Full jitter: draws spread over the window, not clustered at its top."""
    random.seed(1234)
    p = RetryPolicy(backoff_base=1.0, backoff_cap=8.0)
    draws = [p.backoff(3) for _ in range(400)]  # window [0, 4]
    assert min(draws) < 0.5 and max(draws) > 3.5
    assert 1.5 < sum(draws) / len(draws) < 2.5


def test_backoff_window_doubles_then_caps() -> None:
    """The largest draw grows with the retry number up to the cap."""
    random.seed(99)
    p = RetryPolicy(backoff_base=0.1, backoff_cap=0.3)
    top = [max(p.backoff(n) for _ in range(300)) for n in (1, 2, 3, 4)]
    assert 0.09 < top[0] <= 0.1
    assert 0.19 < top[1] <= 0.2
    assert 0.29 < top[2] <= 0.3 and 0.29 < top[3] <= 0.3


def test_backoff_reuses_one_tenacity_wait_per_policy() -> None:
    """The tenacity wait object is built once per policy, not per call."""
    p = RetryPolicy()
    wait, states = p._wait, p._states
    p.backoff(1)
    p.backoff(2)
    assert p._wait is wait and p._states is states
    assert [s.attempt_number for s in states] == [1, 2, 3, 4, 5, 6]  # 0.05 * 2**5 >= 1.0


def test_extreme_base_and_cap_are_handled() -> None:
    """A cap/base ratio beyond float range builds a policy with bounded backoffs."""
    p = RetryPolicy(attempts=5000, backoff_base=5e-324, backoff_cap=1e9)
    assert 0.0 <= p.backoff(10**6) <= 1e9
    assert p.worst_case_delay() > 1e12  # thousands of retries at the cap
    q = RetryPolicy(attempts=3, backoff_base=0.5, backoff_cap=0.5)
    assert q.worst_case_delay() == 1.0
    assert 0.0 <= q.backoff(0) <= 0.5


def test_decision_reads_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """decide_retry (and the backoff it draws) never reads the clock: time comes in as args."""
    p = RetryPolicy()

    def forbidden() -> float:
        raise AssertionError("clock read")

    monkeypatch.setattr(time, "monotonic", forbidden)
    monkeypatch.setattr(time, "time", forbidden)
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:13:21 GMT"}
    d = decide(p, status=503, response_headers=headers)
    monkeypatch.undo()
    assert d.retry and d.delay >= 1.0


# --- decision -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "method": "GET",
    "has_idempotency_key": False,
    "opt_in": None,
    "replayable": True,
    "retry_number": 1,
    "status": None,
    "error_type": None,
    "response_headers": None,
    "remaining": 10.0,
    "now_wall": 1_700_000_000.0,
}


def decide(policy: RetryPolicy | None = None, **overrides: Any) -> RetryDecision:
    return decide_retry(policy or RetryPolicy(), **{**BASE, **overrides})


@pytest.mark.parametrize("error", ["connect_refused", "connect_timeout", "dns_failure"])
@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_never_sent_errors_always_retry(error: str, method: str) -> None:
    """Errors before the request reached a server retry even for POST and PATCH."""
    d = decide(method=method, error_type=error)
    assert d.retry and d.reason == error


@pytest.mark.parametrize("error", ["read_timeout", "reset", "protocol_error"])
def test_maybe_sent_errors_retry_only_when_idempotent(error: str) -> None:
    """Read timeouts, resets and protocol errors retry GET but not a plain POST."""
    assert decide(method="GET", error_type=error).retry
    d = decide(method="POST", error_type=error)
    assert not d.retry
    assert d.reason == "not idempotent: POST without Idempotency-Key"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retry_statuses_for_idempotent(status: int) -> None:
    """The default retry statuses are retried for idempotent methods."""
    d = decide(method="put", status=status)
    assert d.retry and d.reason == f"status {status}"


def test_post_with_idempotency_key_or_opt_in_retries() -> None:
    """An idempotency key or opt_in=True makes a POST retryable."""
    assert decide(method="POST", status=503, has_idempotency_key=True).retry
    assert decide(method="PATCH", error_type="reset", opt_in=True).retry


def test_reason_names_the_configured_header() -> None:
    """The non-idempotent reason uses the policy's idempotency header name."""
    p = RetryPolicy(idempotency_header="X-Request-Id")
    assert decide(p, method="patch", status=503).reason == (
        "not idempotent: PATCH without X-Request-Id"
    )


def test_opt_in_false_forbids_all_retries() -> None:
    """opt_in=False stops even a connection refused on a GET."""
    d = decide(error_type="connect_refused", opt_in=False)
    assert not d.retry and d.reason == "retries disabled for this request"


def test_non_retry_status_and_errors() -> None:
    """500, TLS errors, deadline, open circuit and unknown errors are not retried."""
    assert decide(status=500).reason == "status 500 is not retryable"
    for error in ("tls_error", "deadline_exceeded", "circuit_open", "unknown"):
        d = decide(error_type=error)
        assert not d.retry and d.reason == f"{error} is not retryable"
    assert decide(error_type="martian").reason == "unknown error type 'martian'"
    assert decide().reason == "nothing to retry"


def test_every_vocabulary_entry_gets_a_decision() -> None:
    """Each error type in the fixed vocabulary maps to a definite answer with a reason."""
    for error in ERROR_TYPES:
        d = decide(error_type=error)
        assert isinstance(d.retry, bool) and d.reason


def test_read_timeouts_can_be_switched_off() -> None:
    """retry_read_timeouts=False stops read timeouts but not resets."""
    p = RetryPolicy(retry_read_timeouts=False)
    assert decide(p, error_type="read_timeout").reason == "read timeouts are not retried"
    assert decide(p, error_type="reset").retry


def test_error_wins_over_status() -> None:
    """An error while reading the body is judged by the error, not the status line."""
    assert decide(status=200, error_type="reset").retry
    assert not decide(status=503, error_type="tls_error").retry


def test_attempts_exhausted() -> None:
    """retry_number beyond attempts - 1 stops with 'attempts exhausted'."""
    assert decide(retry_number=2, status=503).retry
    d = decide(retry_number=3, status=503)
    assert not d.retry and d.reason == "attempts exhausted"


def test_body_not_replayable() -> None:
    """A one-shot body is not resent, even after a connection error."""
    d = decide(error_type="connect_refused", replayable=False)
    assert not d.retry and d.reason == "body not replayable"


def test_deadline_already_passed() -> None:
    """No retry once nothing remains of the deadline."""
    assert decide(status=503, remaining=0.0).reason == "deadline exceeded"
    assert decide(status=503, remaining=-1.0).reason == "deadline exceeded"


@given(
    retry_number=st.integers(min_value=1, max_value=9),
    remaining=st.floats(min_value=1e-6, max_value=100.0),
)
def test_delay_fits_in_remaining(retry_number: int, remaining: float) -> None:
    """A retry's delay is never negative and always strictly less than the time left."""
    p = RetryPolicy(attempts=10, backoff_base=1.0, backoff_cap=30.0)
    d = decide(p, retry_number=retry_number, error_type="connect_refused", remaining=remaining)
    assert d.retry
    assert 0.0 <= d.delay < remaining
    assert d.delay <= min(30.0, 2.0 ** (retry_number - 1))


def test_backoff_cut_to_half_of_remaining() -> None:
    """A jittered draw that would eat the deadline is cut to half of the time left."""
    p = RetryPolicy(backoff_base=100.0, backoff_cap=100.0)
    random.seed(7)
    delays = [decide(p, status=503, remaining=1.0).delay for _ in range(50)]
    assert max(delays) == 0.5


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_honoured(status: int) -> None:
    """429 and 503 wait at least Retry-After seconds when it fits in the deadline."""
    d = decide(status=status, response_headers={"Retry-After": "2"}, remaining=5.0)
    assert d.retry and d.delay == 2.0


def test_retry_after_http_date_honoured() -> None:
    """The HTTP-date form is measured from now_wall."""
    headers = {"retry-after": "Tue, 14 Nov 2023 22:13:23 GMT"}  # now_wall + 3 s
    d = decide(status=503, response_headers=headers, remaining=5.0)
    assert d.retry and d.delay == pytest.approx(3.0)


def test_retry_after_case_insensitive_headers() -> None:
    """httpx.Headers (case-insensitive) work as response_headers."""
    headers = httpx.Headers({"RETRY-AFTER": "1"})
    assert decide(status=429, response_headers=headers).delay == 1.0


def test_retry_after_beyond_deadline_stops() -> None:
    """Retry-After longer than (or equal to) the time left means no retry, with a reason."""
    for value in ("5", "30"):
        d = decide(status=503, response_headers={"Retry-After": value}, remaining=5.0)
        assert not d.retry and d.reason == "deadline too short for Retry-After"


def test_retry_after_smaller_than_backoff_keeps_backoff() -> None:
    """delay = max(backoff, Retry-After): a '0' does not shorten the backoff."""
    p = RetryPolicy(backoff_base=1.0, backoff_cap=1.0)
    random.seed(3)
    delays = {decide(p, status=503, response_headers={"Retry-After": "0"}).delay for _ in range(20)}
    assert len(delays) > 1 and max(delays) > 0.0


def test_retry_after_ignored_for_other_statuses_and_when_disabled() -> None:
    """Retry-After is read only for 429/503 and only if respect_retry_after is on."""
    headers: Mapping[str, str] = {"Retry-After": "3"}
    assert decide(status=502, response_headers=headers).delay <= 0.05
    p = RetryPolicy(respect_retry_after=False)
    assert decide(p, status=503, response_headers=headers).delay <= 0.05


@pytest.mark.parametrize("value", ["soon", "-3", "", "1e9", "Mon, 99 Foo 2024"])
def test_unparsable_retry_after_is_absent(value: str) -> None:
    """Garbage Retry-After is treated as absent: a normal backoff retry."""
    d = decide(status=503, response_headers={"Retry-After": value})
    assert d.retry and d.delay <= 0.05


def test_decision_is_frozen_with_slots() -> None:
    """RetryDecision is immutable and has no __dict__."""
    d = RetryDecision(True, 0.1, "status 503")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.retry = False  # type: ignore[misc]
    assert not hasattr(d, "__dict__")


@pytest.mark.parametrize(
    ("method", "keyed", "opt_in", "replayable", "ok"),
    [
        ("GET", False, None, True, True),
        ("get", False, None, True, True),  # methods compare upper-cased, everywhere
        ("POST", False, None, True, False),
        ("POST", True, None, True, True),  # the idempotency header
        ("POST", False, True, True, True),  # the caller opted in
        ("GET", False, False, True, False),  # retry=False
        ("GET", False, None, False, False),  # a one-shot body
    ],
)
def test_may_resend_is_the_one_idempotency_rule(
    method: str, keyed: bool, opt_in: bool | None, replayable: bool, ok: bool
) -> None:
    """Retries and hedges ask the policy the same question and get the same answer."""
    assert RetryPolicy().may_resend(method, keyed, opt_in, replayable) is ok
