"""Route normaliser and the per-service route table."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from svcclient import ServiceClient
from svcclient._exceptions import ConfigError
from svcclient._observability import routes as _routes
from svcclient._observability.routes import (
    OTHER_ROUTE,
    RouteTable,
    normalize_route,
    route_table,
)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/42", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{id}"),
        ("/v1/items/3F2B9C1E-8A4D-4C5E-9F00-1234567890AB", "/v1/items/{id}"),
        ("/objects/507f1f77bcf86cd799439011", "/objects/{id}"),
        ("/blobs/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/blobs/{id}"),
        ("/tokens/dGhpcyBpcyBhIHNlY3JldCB0b2tlbjEy", "/tokens/{id}"),
        ("/tokens/aGVsbG8gd29ybGQgMTIzNDU2Nzg5MA==", "/tokens/{id}"),
        ("/users/42?page=2&token=abc", "/users/{id}"),
        ("/users/42#frag", "/users/{id}"),
        ("/users/", "/users/"),
        ("/", "/"),
        ("", "/"),
        ("?q=1", "/"),
        ("/users/u123/orders", "/users/{id}/orders"),
        ("/orders/order-42", "/orders/{id}"),
        ("/invoices/INV_2024_0017", "/invoices/{id}"),
        ("/days/2026-12-01", "/days/{id}"),
        (
            "/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpM",
            "/reset/{id}",
        ),
    ],
)
def test_ids_become_placeholders(path: str, route: str) -> None:
    """Digits, slug ids, dates, UUIDs, hex, JWTs and tokens become {id}; query and fragment go."""
    assert normalize_route(path) == route


@pytest.mark.parametrize(
    "path",
    [
        "/v2/users",
        "/api/v1/health",
        "/cafe/deadbeef",
        "/list-all-pending-invoices-for-customers",
        "/users/me",
        "/files/report.pdf",
        "/v12/users",
        "/hash/sha256",
        "/page2",
    ],
)
def test_meaningful_segments_are_kept(path: str) -> None:
    """Words, versions, short hex-looking words and long readable slugs stay as they are."""
    assert normalize_route(path) == path


@given(st.text(alphabet="abc019/?=&#-_", max_size=40))
def test_normalised_route_never_has_query(path: str) -> None:
    """Whatever the input, the route holds no query string or fragment and keeps its shape."""
    route = normalize_route(path)
    assert "?" not in route
    assert "#" not in route
    stripped = path.split("?", maxsplit=1)[0].split("#", maxsplit=1)[0]
    assert route.count("/") == (stripped.count("/") if stripped else 1)


def test_table_normalises_and_caches() -> None:
    """A second lookup of the same path is served from the cache, not re-normalised."""
    table = RouteTable()
    assert table.route("/users/42") == "/users/{id}"
    assert table._cache["/users/42"] == "/users/{id}"
    table._cache["/users/42"] = "/sentinel"
    assert table.route("/users/42") == "/sentinel"


def test_explicit_route_wins_and_loses_query() -> None:
    """An explicit template is used as given, minus any query string."""
    table = RouteTable()
    assert table.route("/users/42", "/users/{user_id}") == "/users/{user_id}"
    assert table.route("/x", "/search?q={q}") == "/search"


def test_cap_reports_other_after_max_routes() -> None:
    """Past max_routes distinct routes new ones are 'other'; admitted ones keep their name."""
    table = RouteTable(max_routes=3)
    assert [table.route(f"/r{i}") for i in range(5)] == ["/r0", "/r1", "/r2", "other", "other"]
    assert table.route("/r1") == "/r1"
    assert table.route("/x", "/explicit") == OTHER_ROUTE
    assert table.routes == frozenset({"/r0", "/r1", "/r2"})


def test_ids_do_not_count_against_the_cap() -> None:
    """A thousand user ids are one route, so the cap is not consumed by ids."""
    table = RouteTable(max_routes=2)
    routes = {table.route(f"/users/{i}") for i in range(1000)}
    assert routes == {"/users/{id}"}
    assert table.route("/orders") == "/orders"


def test_path_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path cache is cleared when full instead of growing with every raw path."""
    monkeypatch.setattr(_routes, "_PATH_CACHE_MAX", 10)
    table = RouteTable()
    for i in range(35):
        table.route(f"/users/{i}")
    assert len(table._cache) <= 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_routes_is_a_config_error(bad: object) -> None:
    """max_routes must be a positive int."""
    with pytest.raises(ConfigError):
        RouteTable(max_routes=bad)  # type: ignore[arg-type]


def test_cap_is_per_service_across_clients() -> None:
    """Three clients of one service, 150 routes each: 100 route series plus other, not 301."""
    registry = CollectorRegistry()
    name = "routes-shared-cap"
    clients = [
        ServiceClient(
            name,
            url="http://127.0.0.1:9",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            registry=registry,
            resolve="system",
        )
        for _ in range(3)
    ]
    for k, client in enumerate(clients):
        for i in range(150):
            assert client.get(f"/{_word(k * 150 + i)}").status_code == 200
    routes = {
        s.labels["route"]
        for m in registry.collect()
        if m.name == "http_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    }
    assert len(routes) == 101 and OTHER_ROUTE in routes
    assert clients[0].resilient.runtime.routes is clients[2].resilient.runtime.routes
    for client in clients:
        client.close()


def test_route_table_is_bounded_in_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the service cap, new service names share the 'other' table."""
    monkeypatch.setattr(_routes, "_tables", {})
    monkeypatch.setattr(_routes, "_MAX_SERVICES", 2)
    a, b = route_table("svc-a"), route_table("svc-b")
    assert a is not b
    assert route_table("svc-c") is route_table("svc-d")
    assert set(_routes._tables) == {"svc-a", "svc-b", OTHER_ROUTE}


def _word(i: int) -> str:
    return "r" + format(i, "b").replace("0", "a").replace("1", "b")


def test_raw_path_cache_is_bounded_and_gives_the_decoded_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """route_raw() labels by the decoded path, remembers it under the raw one, bounded."""
    monkeypatch.setattr(_routes, "_PATH_CACHE_MAX", 10)
    table = RouteTable()
    assert table.route_raw("/a%20b/42", "/a b/42") == table.route("/a b/42")
    assert table.by_raw_path["/a%20b/42"] == table.route("/a b/42")
    for i in range(35):
        table.route_raw(f"/users/{i}", f"/users/{i}")
    assert len(table.by_raw_path) <= 10


def test_percent_encoded_paths_get_the_route_of_their_decoded_path() -> None:
    """Through a client: a percent-encoded path is labelled as its decoded form, first
    request (cache miss) and later ones (hits on the raw-path cache) alike."""
    registry = CollectorRegistry()
    client = ServiceClient(
        "routes-raw-path",
        url="http://127.0.0.1:9",
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        registry=registry,
        resolve="system",
    )
    expected = client.resilient.runtime.routes.route("/files/a b/42")
    for _ in range(3):
        assert client.get("/files/a%20b/42").status_code == 200
    routes = {
        s.labels["route"]: s.value
        for m in registry.collect()
        if m.name == "http_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    }
    assert routes == {expected: 3.0}
    client.close()
