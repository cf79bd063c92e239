"""One network endpoint of a service: an address and a port."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address (IP literal or host name) and port that serves a service.

    ``key`` is the stable ``host:port`` text used in logs, hashing and metrics.
    """

    host: str
    port: int
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "key", f"{host}:{self.port}")

    def __str__(self) -> str:
        return self.key
