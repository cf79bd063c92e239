"""Test mode: no backoff sleeps (and optionally fewer attempts), like stamina's ``set_testing``.

Theory of operation
-------------------
One module-level switch, read by the transports only on the retry path (never on a
first attempt that succeeds), so it costs nothing in production:

* ``guard_sleep(sleep)`` / ``guard_async_sleep(sleep)`` wrap a transport's sleep once, at
  construction; the wrapper skips the sleep while test mode is on.  Because the flag is
  read at sleep time, clients created *before* test mode was switched on (a module-level
  ``users = ServiceClient("user-service")``) are covered too.
* ``attempts_cap()`` is the cap on attempts per call while test mode is on (``None``:
  the policy's own number).  ``allow_retry(retry_number)`` is the one-line check the
  pipeline makes before scheduling retry number ``retry_number`` (1-based).

* ``mock_host(host)`` / ``unmock_host(host)`` name hosts that ``svcclient.testing``
  mocks (``mock_service``): a client skips DNS for them and sends to the host itself,
  where respx answers. Read by the runtime only when a DNS refresh is due, and only while
  some host is mocked (one empty-dict test otherwise).

The public switches live in :mod:`svcclient.testing` (``set_testing``, ``no_retry_sleeps``).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = [
    "MOCKED_HOSTS",
    "allow_retry",
    "attempts_cap",
    "guard_async_sleep",
    "guard_sleep",
    "is_mocked",
    "is_testing",
    "mock_host",
    "set_state",
    "unmock_host",
]

_UNLIMITED: Final = None


class _State:
    """The switch; one instance, mutated in place so readers need one attribute load."""

    __slots__ = ("active", "attempts")

    def __init__(self) -> None:
        self.active = False
        self.attempts: int | None = _UNLIMITED


STATE: Final = _State()


def set_state(active: bool, attempts: int | None = None) -> tuple[bool, int | None]:
    """Switch test mode; returns the previous ``(active, attempts)`` so it can be restored."""
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ValueError(f"attempts must be an integer >= 1 or None, not {attempts!r}")
    previous = (STATE.active, STATE.attempts)
    STATE.active = bool(active)
    STATE.attempts = attempts if active else _UNLIMITED
    return previous


def is_testing() -> bool:
    """True while test mode is on."""
    return STATE.active


def attempts_cap() -> int | None:
    """The most attempts a call may make while test mode is on; None means no cap."""
    return STATE.attempts if STATE.active else None


def allow_retry(retry_number: int) -> bool:
    """May the pipeline schedule retry ``retry_number`` (1 = the second attempt)?

    Always True outside test mode or without a cap.
    """
    cap = STATE.attempts
    return cap is None or not STATE.active or retry_number < cap


def guard_sleep(sleep: Callable[[float], None]) -> Callable[[float], None]:
    """Wrap a transport's ``sleep`` so it does nothing while test mode is on."""

    def backoff_sleep(seconds: float) -> None:
        if not STATE.active:
            sleep(seconds)

    return backoff_sleep


def guard_async_sleep(
    sleep: Callable[[float], Awaitable[None]],
) -> Callable[[float], Awaitable[None]]:
    """Async twin of :func:`guard_sleep`."""

    async def backoff_sleep(seconds: float) -> None:
        if not STATE.active:
            await sleep(seconds)

    return backoff_sleep


MOCKED_HOSTS: Final[dict[str, int]] = {}
"""Hosts mocked by ``mock_service`` (lower case, no trailing dot) -> how many routers."""
_mock_lock: Final = threading.Lock()


def _host_key(host: str) -> str:
    return host.rstrip(".").lower()


def mock_host(host: str) -> None:
    """Answer DNS for ``host`` with the host itself while a mock is active (counted)."""
    key = _host_key(host)
    with _mock_lock:
        MOCKED_HOSTS[key] = MOCKED_HOSTS.get(key, 0) + 1


def unmock_host(host: str) -> None:
    """Undo one :func:`mock_host`."""
    key = _host_key(host)
    with _mock_lock:
        left = MOCKED_HOSTS.get(key, 0) - 1
        if left > 0:
            MOCKED_HOSTS[key] = left
        else:
            MOCKED_HOSTS.pop(key, None)


def is_mocked(host: str) -> bool:
    """True while ``host`` is mocked."""
    return bool(MOCKED_HOSTS) and _host_key(host) in MOCKED_HOSTS
