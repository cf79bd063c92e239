"""ServiceClient's cookie store: httpx's behaviour, minus reading responses that set none."""

from __future__ import annotations

from http.cookiejar import CookieJar

import httpx
import pytest

from svcclient import AsyncServiceClient, ServiceClient

URL = "http://cookie-svc.test:3000"


def _handler(request: httpx.Request) -> httpx.Response:
    headers = {"x-cookie-seen": request.headers.get("cookie", "")}
    if request.url.path == "/login":
        headers["set-cookie"] = "sid=abc; Path=/"
    if request.url.path == "/old-style":
        headers["set-cookie2"] = 'legacy=1; Version="1"; Path="/"'
    if request.url.path == "/logout":
        headers["set-cookie"] = "sid=; Max-Age=0; Path=/"
    return httpx.Response(200, headers=headers)


def _client() -> ServiceClient:
    return ServiceClient("cookie-svc", url=URL, transport=httpx.MockTransport(_handler))


def test_cookies_set_by_a_response_are_kept_and_sent_then_cleared() -> None:
    """Set-Cookie stores, the next request sends it, an expiring Set-Cookie removes it."""
    with _client() as client:
        assert client.get("/login").status_code == 200
        assert dict(client.cookies) == {"sid": "abc"}
        assert client.get("/me").headers["x-cookie-seen"] == "sid=abc"
        client.get("/logout")
        assert dict(client.cookies) == {}
        assert client.get("/me").headers["x-cookie-seen"] == ""


def test_a_response_without_cookie_headers_never_reaches_the_jar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Responses with no Set-Cookie/Set-Cookie2 skip the jar; the others still reach it."""
    calls: list[str] = []
    real = CookieJar.extract_cookies

    def spy(self: CookieJar, response: object, request: object) -> None:
        calls.append("extract")
        real(self, response, request)  # type: ignore[arg-type]

    monkeypatch.setattr(CookieJar, "extract_cookies", spy)
    with _client() as client:
        for _ in range(5):
            client.get("/plain")
        assert calls == []
        client.get("/login")
        client.get("/old-style")
        assert calls == ["extract", "extract"]


def test_the_cookies_setter_and_per_request_cookies_work_as_in_httpx() -> None:
    """``client.cookies = ...`` replaces the store (still skipping cookie-less responses);
    ``cookies=`` on a request (deprecated by httpx) is merged for that request only."""
    with _client() as client:
        client.cookies = {"a": "1"}
        assert type(client.cookies) is not httpx.Cookies  # the fast store stays
        assert client.get("/x").headers["x-cookie-seen"] == "a=1"
        with pytest.warns(DeprecationWarning, match="per-request cookies"):
            seen = client.get("/x", cookies={"b": "2"}).headers["x-cookie-seen"]
        assert sorted(seen.split("; ")) == ["a=1", "b=2"]
        assert dict(client.cookies) == {"a": "1"}
        client.get("/login")
        assert dict(client.cookies) == {"a": "1", "sid": "abc"}
        client.cookies.clear()
        assert client.get("/x").headers["x-cookie-seen"] == ""


def test_old_style_set_cookie2_is_still_read() -> None:
    """The skip looks for both header names, so a Set-Cookie2 response still reaches the
    jar as it would in httpx (whose policy then decides, as it does for bare httpx)."""
    bare = httpx.Client(base_url=URL, transport=httpx.MockTransport(_handler))
    bare.get("/old-style")
    with _client() as client:
        client.get("/old-style")
        assert dict(client.cookies) == dict(bare.cookies)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_async_client_keeps_cookies_too(anyio_backend: str) -> None:
    async with AsyncServiceClient(
        "cookie-svc", url=URL, transport=httpx.MockTransport(_handler)
    ) as client:
        await client.get("/plain")
        assert dict(client.cookies) == {}
        await client.get("/login")
        assert (await client.get("/me")).headers["x-cookie-seen"] == "sid=abc"
