"""ServiceClient's memo of merged request URLs gives exactly httpx's URLs."""

from __future__ import annotations

import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient import AsyncServiceClient, ServiceClient
from svcclient._shortcuts import _MERGED_MAX

BASE = "http://user-service:3000/api"
PATHS = [
    "/users/1",
    "users/1",
    "/users/1/",
    "/",
    "",
    "/a%20b",
    "/a b",
    "/ü/ñ",
    "/x#frag",
    "//other-host/x",
    "http://elsewhere:81/y",
    "/users?id=1",
    "http://user:secret@elsewhere/z",
    "../up",
]


def _client(base: str = BASE) -> ServiceClient:
    return ServiceClient("url-memo", url=base, transport=httpx.MockTransport(_ok))


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=str(request.url))


@pytest.mark.parametrize("path", PATHS)
def test_merged_url_is_httpx_s_cold_and_warm(path: str) -> None:
    """First and second time alike, the request URL is the one bare httpx builds."""
    expected = httpx.Client(base_url=BASE).build_request("GET", path).url
    with _client() as client:
        first = client.build_request("GET", path).url
        second = client.build_request("GET", path).url
    assert first == expected and second == expected
    assert str(second) == str(expected) and second.raw_path == expected.raw_path


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
def test_any_path_merges_as_httpx_merges_it(path: str) -> None:
    """Property: for any text, the memo's answer (twice) equals httpx's, error or URL."""
    bare = httpx.Client(base_url=BASE)
    with _client() as client:
        try:
            expected: object = bare.build_request("GET", path).url
        except Exception as exc:  # httpx refuses some text: so must we
            with pytest.raises(type(exc)):
                client.build_request("GET", path)
            return
        assert client.build_request("GET", path).url == expected
        assert client.build_request("GET", path).url == expected


def test_query_strings_and_userinfo_are_never_remembered() -> None:
    """No secret stays in the memo: URLs with a query or userinfo are merged each time."""
    with _client() as client:
        client.get("/users?token=s3cret")
        client.get("http://user:pw@user-service:3000/x")
        client.get("/plain")
        _, memo = client._merged
    assert list(memo) == ["/plain"]


def test_params_still_merge_into_a_remembered_path() -> None:
    """``params=`` is added to the request, never to the remembered URL."""
    with _client() as client:
        assert client.get("/p", params={"a": "1"}).text.endswith("/api/p?a=1")
        assert client.get("/p").text.endswith("/api/p")
        assert client.get("/p", params={"b": "2"}).text.endswith("/api/p?b=2")


def test_a_new_base_url_is_used_at_once() -> None:
    """Setting ``base_url`` starts the memo afresh: no request goes to the old base."""
    with _client() as client:
        assert client.get("/u").text == "http://user-service:3000/api/u"
        client.base_url = "http://other:9/v2"
        assert client.get("/u").text == "http://other:9/v2/u"


def test_the_memo_is_bounded_and_the_oldest_makes_room() -> None:
    """Thousands of distinct paths never hold more than _MERGED_MAX URLs; when full, the
    oldest goes and the newest stays (a steady size, not a saw-tooth)."""
    with _client() as client:
        for i in range(5 * _MERGED_MAX):
            assert client.build_request("GET", f"/items/{i}").url.path == f"/api/items/{i}"
            assert len(client._merged[1]) == min(i + 1, _MERGED_MAX)
        memo = client._merged[1]
        last = 5 * _MERGED_MAX - 1
        assert list(memo) == [f"/items/{i}" for i in range(last - _MERGED_MAX + 1, last + 1)]


def test_threads_sharing_a_client_get_their_own_urls() -> None:
    """8 threads, 200 distinct paths each, base URL switched meanwhile: every request
    goes to a URL httpx would build for the base URL of that moment or the one before."""
    bases = ["http://user-service:3000/api", "http://other:9/v2"]
    errors: list[str] = []
    with _client() as client:

        def work(t: int) -> None:
            for i in range(200):
                path = f"/t{t}/{i % 40}"
                url = str(client.build_request("GET", path).url)
                if url not in {f"{b}{path}" for b in bases}:
                    errors.append(url)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for i in range(20):
            client.base_url = bases[i % 2]
        for thread in threads:
            thread.join(timeout=30)
        client.base_url = bases[0]
        assert str(client.build_request("GET", "/t0/1").url) == f"{bases[0]}/t0/1"
    assert errors == []


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_async_client_remembers_too(anyio_backend: str) -> None:
    """The async client shares the memo code: same URL as bare httpx, remembered."""
    async with AsyncServiceClient(
        "url-memo", url=BASE, transport=httpx.MockTransport(_ok)
    ) as client:
        assert (await client.get("/users/7")).text == "http://user-service:3000/api/users/7"
        assert (await client.get("/users/7")).text == "http://user-service:3000/api/users/7"
        assert "/users/7" in client._merged[1]
