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
  identifier when it is all digits, a slug id (a short word and a number of 2+ digits:
  ``u123``, ``order-42``; not an API version such as ``v2``), numbers joined by
  separators (``2026-12-01``), or a token as the redactor sees it
  (:func:`svcclient._redact.is_token`: UUIDs, JWTs, long hex, base64/base64url), so a
  route label never holds what a span would redact.
* :class:`RouteTable` (one per target service *per process*: :func:`route_table` hands
  every client of a service the same table, so three clients of one service still
  report at most ``max_routes`` routes, not three times as many) caches path -> route
  so the hot path is one dict lookup, and admits at most ``max_routes`` distinct routes;
  later new routes are reported as ``"other"``. The path cache is bounded too (it is
  cleared when full), since raw paths are unbounded by nature.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Final

from .._redact import is_token
from .._validate import check_count

__all__ = ["OTHER_ROUTE", "RouteTable", "normalize_route", "route_table"]

OTHER_ROUTE: Final = "other"
"""The route reported once a service has ``max_routes`` distinct routes."""

ID_PLACEHOLDER: Final = "{id}"

# Patterns are compiled on first use, not at import (each costs import time).
# Slug ids: a short word and a number ("u123", "order-42", "INV_2024_0017"), or numbers
# joined by separators (dates, "12-7"). API versions ("v1", "v12") are routes, not ids.
_SLUG_ID: Final = functools.cache(
    lambda: re.compile(r"(?:[A-Za-z]{1,12}[-_.:]?)?\d{2,}(?:[-_.:]\d+)*|\d+(?:[-_.:]\d+)+")
)
_VERSION: Final = functools.cache(lambda: re.compile(r"v\d{1,3}", re.IGNORECASE))
_NOT_IDS: Final = frozenset({"sha224", "sha256", "sha384", "sha512", "base64", "x86_64"})

# Bound on the path -> route cache; raw paths carry ids so this dict would grow forever.
_PATH_CACHE_MAX: Final = 10_000


def _is_id(segment: str) -> bool:
    if segment.isdigit():
        return True
    if (
        segment[-1:].isdigit()
        and _SLUG_ID().fullmatch(segment)
        and not _VERSION().fullmatch(segment)
        and segment.lower() not in _NOT_IDS
    ):
        return True
    return is_token(segment)


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

    __slots__ = ("_admitted", "_cache", "_lock", "by_raw_path", "max_routes")

    def __init__(self, max_routes: int = 100) -> None:
        self.max_routes = check_count("max_routes", max_routes)
        self._cache: dict[str, str] = {}
        # The same cache keyed on the URL's raw (still percent-encoded) path: the hot path
        # looks a request's route up here without decoding its path (``url.path`` costs
        # two Python calls). Filled by route_raw(); read directly by the Call.
        self.by_raw_path: dict[str, str] = {}
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

    def route_raw(self, raw_path: str, path: str) -> str:
        """``route(path)``, remembered in :attr:`by_raw_path` under ``raw_path`` (the
        request URL's path before percent-decoding, which decodes to ``path``)."""
        route = self.route(path)
        with self._lock:
            if len(self.by_raw_path) >= _PATH_CACHE_MAX:
                self.by_raw_path.clear()
            self.by_raw_path[raw_path] = route
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


# Distinct service names with their own table; more (a client following arbitrary hosts)
# share one, so this dict is bounded like everything else on the label path.
_MAX_SERVICES: Final = 10_000
_tables: dict[str, RouteTable] = {}
_tables_lock = threading.Lock()


def route_table(service: str) -> RouteTable:
    """The process-wide :class:`RouteTable` of ``service``, shared by all its clients.

    >>> route_table("user-service") is route_table("user-service")
    True
    """
    table = _tables.get(service)
    if table is not None:
        return table
    with _tables_lock:
        table = _tables.get(service)
        if table is None:
            key = service if len(_tables) < _MAX_SERVICES else OTHER_ROUTE
            table = _tables.get(key)
            if table is None:
                table = _tables[key] = RouteTable()
            if key == service:
                return table
        return table
