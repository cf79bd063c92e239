"""The service clients' build_request: a request with only a method, a URL and extensions
is built from a remembered header list, and is the request httpx would build."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcclient import AsyncServiceClient, ServiceClient
from svcclient._shortcuts import _HEADERS_MAX

BASE = "http://req-svc.test:3000/api"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pair(**client_kw: Any) -> tuple[ServiceClient, httpx.Client]:
    ours = ServiceClient("req-svc", url=BASE, transport=httpx.MockTransport(_ok), **client_kw)
    theirs = httpx.Client(
        base_url=ours.base_url, headers=ours.headers, timeout=ours.timeout, trust_env=False
    )
    return ours, theirs


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def _same(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert sorted(vars(ours)) == sorted(vars(theirs))  # no attribute more or fewer
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert ours.headers.raw == theirs.headers.raw
    assert ours.headers.encoding == theirs.headers.encoding
    assert ours.extensions == theirs.extensions
    assert type(ours.stream) is type(theirs.stream)
    assert ours.read() == theirs.read() == b""


METHODS = ["GET", "get", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH", "post"]
URLS = ["/users/1", "users", "", "/", "http://other.test:8080/x", "https://[::1]:9443/y"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("url", URLS)
def test_a_plain_request_is_the_one_httpx_builds(method: str, url: str) -> None:
    """Method, URL, Host, Content-Length: 0 for POST/PUT/PATCH, client headers, timeout."""
    ours, theirs = _pair()
    with ours, theirs:
        for _ in range(2):  # built, then from the remembered list
            _same(ours.build_request(method, url), theirs.build_request(method, url))


def test_extensions_are_copied_and_a_given_timeout_is_kept() -> None:
    """The caller's extensions are copied (never the caller's dict), with the client's
    timeout unless they carry one."""
    ours, theirs = _pair()
    with ours, theirs:
        ext = {"route": "/users/{id}"}
        built = ours.build_request("GET", "/users/1", extensions=ext)
        _same(built, theirs.build_request("GET", "/users/1", extensions=ext))
        assert built.extensions is not ext and ext == {"route": "/users/{id}"}
        own = {"timeout": {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}}
        _same(
            ours.build_request("GET", "/", extensions=own),
            theirs.build_request("GET", "/", extensions=own),
        )


def test_each_request_gets_headers_of_its_own() -> None:
    """Changing one request's headers changes neither the next request's nor the
    client's; changing the client's headers reaches the next request."""
    ours, theirs = _pair(headers={"x-team": "billing"})
    with ours, theirs:
        first = ours.build_request("GET", "/a")
        first.headers["x-extra"] = "1"
        second = ours.build_request("GET", "/a")
        assert "x-extra" not in second.headers and "x-extra" not in ours.headers
        ours.headers["x-team"] = "payments"
        theirs.headers["x-team"] = "payments"
        _same(ours.build_request("GET", "/a"), theirs.build_request("GET", "/a"))
        ours.headers = {"accept": "text/plain"}
        theirs.headers = {"accept": "text/plain"}
        _same(ours.build_request("GET", "/a"), theirs.build_request("GET", "/a"))
        ours.headers["host"] = "virtual.test"  # a Host of the client's own: no auto Host
        theirs.headers["host"] = "virtual.test"
        _same(ours.build_request("GET", "/a"), theirs.build_request("GET", "/a"))


@pytest.mark.parametrize(
    "kw",
    [
        {"params": {"q": "1"}},
        {"headers": {"x-one": "1"}},
        {"content": b"body"},
        {"json": {"a": 1}},
        {"data": {"a": "1"}},
        {"timeout": 2.5},
    ],
)
def test_anything_more_is_built_by_httpx(kw: dict[str, Any]) -> None:
    """A body, params, headers or a timeout of the request's own: httpx's build_request."""
    ours, theirs = _pair()
    with ours, theirs:
        a, b = ours.build_request("POST", "/x", **kw), theirs.build_request("POST", "/x", **kw)
        assert a.headers.raw == b.headers.raw and a.read() == b.read()
        assert a.extensions == b.extensions and a.url == b.url


def test_client_cookies_and_params_are_sent_as_httpx_sends_them() -> None:
    """With cookies in the jar or params on the client, the request is httpx's."""
    ours, theirs = _pair()
    with ours, theirs:
        ours.cookies.set("sid", "abc", domain="req-svc.test")
        theirs.cookies.set("sid", "abc", domain="req-svc.test")
        _same(ours.build_request("GET", "/me"), theirs.build_request("GET", "/me"))
        assert ours.build_request("GET", "/me").headers["cookie"] == "sid=abc"
        ours.cookies.clear()
        ours.params = {"v": "2"}
        theirs.cookies.clear()
        theirs.params = {"v": "2"}
        assert str(ours.build_request("GET", "/me").url).endswith("/me?v=2")
        _same(ours.build_request("GET", "/me"), theirs.build_request("GET", "/me"))


def test_the_remembered_header_lists_stay_bounded() -> None:
    """Requests to many hosts keep at most _HEADERS_MAX header lists."""
    ours, theirs = _pair()
    with ours, theirs:
        for i in range(_HEADERS_MAX * 3):
            url = f"http://host{i}.test/"
            _same(ours.build_request("GET", url), theirs.build_request("GET", url))
        assert len(ours._plain_headers[1]) <= _HEADERS_MAX


@pytest.mark.anyio
async def test_the_async_client_builds_the_same_requests() -> None:
    """AsyncServiceClient shares the shortcut: its request is httpx's too."""
    transport = httpx.MockTransport(_ok)
    async with AsyncServiceClient("req-svc", url=BASE, transport=transport) as ours:
        async with httpx.AsyncClient(
            base_url=ours.base_url, headers=ours.headers, timeout=ours.timeout
        ) as theirs:
            for method in METHODS:
                _same(ours.build_request(method, "/u"), theirs.build_request(method, "/u"))
            assert (await ours.get("/u")).request.headers["host"] == "req-svc.test:3000"


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    path=st.text(max_size=20),
    header=st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10),
        max_size=3,
    ),
)
def test_any_plain_request_is_the_one_httpx_builds(
    method: str, path: str, header: dict[str, str]
) -> None:
    """Any path text and any client headers: the same request as httpx's, or the same
    error."""
    ours, theirs = _pair(headers=header)
    with ours, theirs:
        try:
            expected = theirs.build_request(method, path)
        except Exception as exc:
            with pytest.raises(type(exc)):
                ours.build_request(method, path)
            return
        _same(ours.build_request(method, path), expected)
