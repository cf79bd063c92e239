"""svcclient's HTTP/1.1 connection pools: :mod:`.pool_core`'s accounting, driven.

Each pool serves one origin through one network backend (:mod:`.pinned`'s, which dials the
endpoint, caps every socket operation and retires old connections). The connections are
httpcore's own (``httpcore.HTTPConnection``: dial, TLS, then its HTTP/1.1 protocol), so
the wire protocol and its errors are httpcore's; only the pool around them is ours. The
drivers do the I/O only: dialling (inside the connection's first request), closing what
the core says to close, waking and waiting. They are written once, async
(:mod:`._async.pool`); the sync pool (:mod:`._sync.pool`) is generated from it by
``scripts/unasync.py``. The wait for a connection is bounded by
the request's ``pool`` timeout and by the bound (:data:`.bound.BOUND`) like every socket
operation. HTTP/2 pools stay on httpcore's pool.
"""

from __future__ import annotations

from ._async.pool import AsyncHTTP11Pool
from ._sync.pool import HTTP11Pool

__all__ = ["AsyncHTTP11Pool", "HTTP11Pool"]
