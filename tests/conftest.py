"""Shared fixtures: isolated breaker registry, anyio backend, recording observer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from svcclient import breakers
from tests.helpers import Recorder


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """Breakers are shared by service name; each test starts with none."""
    breakers.clear()
    yield
    breakers.clear()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
