"""Route templates for metric labels: ``/users/42/orders`` becomes ``/users/{id}/orders``.

Why not the raw URL: every distinct label value is a separate time series that Prometheus
keeps in memory for hours. A label holding ``/users/42`` creates one series per user and
one per query string, and a busy client can create millions, which takes down the
monitoring stack long before anyone looks at the dashboard. A route template has a small,
fixed set of values; a hard cap per service (:class:`RouteTable`) bounds it even when the
normaliser cannot recognise an id.

Theory of operation:

* :func:`normalize_route` is pure: it drops the query string and fragment, then replaces
  each path segment that looks like an identifier with ``{id}``. A segment is an
  identifier when it is all digits, a UUID, a hex string of 16+ characters (object ids,
  hashes), or a URL-safe base64-ish token of 24+ characters that mixes letters and digits.
* :class:`RouteTable` (one per target service) caches path → route so the hot path is one
  dict lookup, and admits at most ``max_routes`` distinct routes; later new routes are
  reported as ``"other"``. The path cache is bounded too (it is cleared when full), since
  raw paths are unbounded by nature.
"""

from __future__ import annotations

import re
import threading
from typing import Final

from .._exceptions import ConfigError

__all__ = ["OTHER_ROUTE", "RouteTable", "normalize_route"]

OTHER_ROUTE: Final = "other"
"""The route reported once a service has ``max_routes`` distinct routes."""

ID_PLACEHOLDER: Final = "{id}"

_UUID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_LONG_HEX: Final = re.compile(r"[0-9a-f]{16,}", re.IGNORECASE)
# Opaque tokens (base64/base64url ids, JWT-like parts). Requiring both a digit and a letter
# keeps long readable slugs such as "list-all-pending-invoices" intact.
_TOKEN: Final = re.compile(r"[A-Za-z0-9_\-]{24,}={0,2}")
_HAS_DIGIT: Final = re.compile(r"\d")
_HAS_ALPHA: Final = re.compile(r"[A-Za-z]")

# Bound on the path -> route cache; raw paths carry ids so this dict would grow forever.
_PATH_CACHE_MAX: Final = 10_000


def _is_id(segment: str) -> bool:
    if segment.isdigit():
        return True
    n = len(segment)
    if n < 16:
        return False
    if n == 36 and _UUID.fullmatch(segment):
        return True
    if _LONG_HEX.fullmatch(segment):
        return True
    return bool(
        n >= 24
        and _TOKEN.fullmatch(segment)
        and _HAS_DIGIT.search(segment)
        and _HAS_ALPHA.search(segment)
    )


def normalize_route(path: str) -> str:
    """Return the route template of ``path``: ids become ``{id}``, the query string goes.

    >>> normalize_route("/users/42/orders?page=2")
    '/users/{id}/orders'
    >>> normalize_route("/v1/items/3f2b9c1e-8a4d-4c5e-9f00-1234567890ab")
    '/v1/items/{id}'
    """
    cut = len(path)
    for sep in ("?", "#"):
        i = path.find(sep, 0, cut)
        if i != -1:
            cut = i
    if cut != len(path):
        path = path[:cut]
    if not path:
        return "/"
    segments = path.split("/")
    changed = False
    for i, seg in enumerate(segments):
        if seg and _is_id(seg):
            segments[i] = ID_PLACEHOLDER
            changed = True
    return "/".join(segments) if changed else path


class RouteTable:
    """Route templates of one service, with a cap on how many distinct routes it reports.

    ``route(path)`` normalises ``path`` (cached) and ``route(path, explicit)`` uses the
    caller's template as given (minus any query string). Once ``max_routes`` distinct
    routes were seen, any new one is reported as ``"other"``; routes already admitted keep
    their name. Thread-safe; a cache hit is one dict lookup.

    Default: ``max_routes=100``. Example::

        table = RouteTable()
        table.route("/users/42")                 # '/users/{id}'
        table.route("/anything", "/users/{id}")  # '/users/{id}'
    """

    __slots__ = ("_admitted", "_cache", "_lock", "max_routes")

    def __init__(self, max_routes: int = 100) -> None:
        if not isinstance(max_routes, int) or isinstance(max_routes, bool) or max_routes < 1:
            raise ConfigError(None, "max_routes", max_routes, "must be an int >= 1")
        self.max_routes = max_routes
        self._cache: dict[str, str] = {}
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def route(self, path: str, explicit: str | None = None) -> str:
        """The route label for a request to ``path`` (or for the caller's ``explicit`` one)."""
        if explicit is not None:
            if explicit in self._admitted:
                return explicit
            if "?" in explicit or "#" in explicit:
                explicit = explicit.split("?", 1)[0].split("#", 1)[0] or "/"
            return self._admit(explicit)
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        route = self._admit(normalize_route(path))
        with self._lock:
            if len(self._cache) >= _PATH_CACHE_MAX:
                self._cache.clear()
            self._cache[path] = route
        return route

    def _admit(self, route: str) -> str:
        if route in self._admitted:
            return route
        with self._lock:
            if route in self._admitted:
                return route
            if len(self._admitted) >= self.max_routes:
                return OTHER_ROUTE
            self._admitted.add(route)
            return route

    @property
    def routes(self) -> frozenset[str]:
        """The routes admitted so far (at most ``max_routes``)."""
        return frozenset(self._admitted)

    def __repr__(self) -> str:
        return f"RouteTable(max_routes={self.max_routes}, routes={len(self._admitted)})"
