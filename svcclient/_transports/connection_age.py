"""``max_connection_age``: retire a pooled connection between requests once it is old.

Why
---
A ClusterIP Service is one virtual IP; kube-proxy picks a pod when a connection opens.
With keep-alive a client keeps its connections for ever, so it stays on the pods it
first reached: after a scale-up the new pods get no traffic from existing clients, and a
rolling restart piles clients onto the pods that came up first. gRPC's
``MAX_CONNECTION_AGE`` and Envoy's ``max_connection_duration`` fix this the same way:
a connection older than the age is closed, *between* requests, and the next request
opens a new one, which kube-proxy spreads over the current pods.

How (public httpcore interfaces only)
-------------------------------------
Every stream the pool's network backend opens gets a retirement time,
``max_age`` times a random factor in ``[1 - jitter, 1 + jitter]`` (default ±10 %, so the
connections of many clients opened together do not all reconnect in the same instant).
httpcore asks an idle HTTP/1.1 connection's stream ``get_extra_info("is_readable")``
before reusing it — a readable idle socket means the server hung up — and closes the
connection when it says yes. Past its retirement time the wrapped stream says yes, so
httpcore closes that connection and dials a new one. A request in flight is never
interrupted: the question is asked only of idle connections. (HTTP/2 connections do not
ask; they keep their age.)

The backends are written once, async (:mod:`._async.connection_age`), and the sync ones
generated from them (:mod:`._sync.connection_age`, by ``scripts/unasync.py``); the
retirement time itself is :mod:`.retirement`'s.

svcclient's pools (:mod:`.pinned`) keep the retirement time on the stream wrapper that
also caps each socket operation, so a read or write passes one wrapper, not two; the
backends here wrap streams that are not capped (HTTP/2 pools) and any other backend.
"""

from __future__ import annotations

from ._async.connection_age import AgedAsyncBackend
from ._sync.connection_age import AgedBackend
from .retirement import DEFAULT_JITTER, Retirement

__all__ = ["DEFAULT_JITTER", "AgedAsyncBackend", "AgedBackend", "Retirement"]
