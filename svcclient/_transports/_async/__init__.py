"""svcclient's I/O written once, for async callers (any anyio backend: asyncio, trio).

Each module here has a sync twin in :mod:`.._sync` that ``scripts/unasync.py`` generates
(``async def`` -> ``def``, ``AsyncNetworkStream`` -> ``NetworkStream``, ...); CI's
``python scripts/unasync.py --check`` fails when a twin is edited by hand or out of date.
Where the two worlds differ by more than names (a lock for threads, a cancel scope for
tasks), the code says so in place with an ``if True:  # async`` block whose ``else`` is
the sync code (see the script's docs).
"""
