"""Rendezvous (highest-random-weight) hashing with a stable, fast score.

Theory of operation
-------------------
Every endpoint gets a fixed multiplier ``w`` derived from its ``host:port`` text with
BLAKE2b; every affinity key gets a value ``h`` the same way. The score of a key on an
endpoint is ``(h * w) mod P`` where ``P`` is the prime ``sys.hash_info.modulus``
(2**61 - 1 on 64-bit CPython), and the key goes to the endpoint with the highest score.

Because a key's score on one endpoint never depends on the other endpoints, removing an
endpoint moves only the keys that were on it and adding one moves only the keys it now
wins: about 1/N of them either way (rendezvous hashing's defining property).

Why this score: Python's ``hash()`` of a non-negative int is *defined* as the value
mod ``sys.hash_info.modulus`` (unlike ``hash()`` of ``str``, it is not randomised per
process), so ``map(hash, map(h.__mul__, weights))`` scores every endpoint in C with no
per-endpoint Python bytecode. A multiplicative hash modulo a large prime with random
multipliers spreads keys evenly and makes the runner-up independent of the winner
(checked with chi-square tests while designing it; see tests/test_balancing.py for the
spread test). Results are identical across processes and hosts of the same word size, so
several client replicas send one key to the same pod.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from hashlib import blake2b

__all__ = ["MODULUS", "endpoint_weight", "key_hash", "rendezvous_index", "rendezvous_order"]

MODULUS: int = sys.hash_info.modulus
"""The prime all scores are reduced by (2**61 - 1 on 64-bit builds)."""


def _digest(text: str, person: bytes) -> int:
    raw = blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, person=person)
    return int.from_bytes(raw.digest(), "little")


def key_hash(key: str) -> int:
    """Stable hash of an affinity key, in ``[1, MODULUS)``.

    >>> key_hash("user-42") == key_hash("user-42")
    True
    """
    # Zero would score 0 on every endpoint and always pick the first one; map it to 1.
    return _digest(key, b"svc-key") % MODULUS or 1


def endpoint_weight(endpoint_key: str) -> int:
    """Stable multiplier for one endpoint (its ``host:port`` text), in ``[1, MODULUS)``."""
    return _digest(endpoint_key, b"svc-endpoint") % MODULUS or 1


def rendezvous_index(h: int, weights: Sequence[int], skip: int = -1) -> int:
    """Index of the highest-scoring weight for key hash ``h`` (``-1`` if none).

    ``skip`` excludes one index (the runner-up is then returned), so a retry can go to the
    key's second choice. Ties, which need two equal 61-bit scores, go to the lower index.

    >>> ws = [endpoint_weight(f"10.0.0.{i}:80") for i in range(3)]
    >>> rendezvous_index(key_hash("a"), ws) == rendezvous_index(key_hash("a"), ws[:])
    True
    """
    scores = list(map(hash, map(h.__mul__, weights)))
    if 0 <= skip < len(scores):
        scores[skip] = -1
    best = max(scores, default=-1)
    return scores.index(best) if best >= 0 else -1


def rendezvous_order(h: int, weights: Sequence[int]) -> list[int]:
    """Indexes of ``weights`` from the key's first choice to its last (for tests, tools)."""
    scores = list(map(hash, map(h.__mul__, weights)))
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
