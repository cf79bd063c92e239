"""Shortcuts through httpx's client work, taken by the service clients where they give
httpx's own result.

httpx's ``Client`` does the same work for every request whatever it needs: it parses the
path and the merged URL, copies and re-normalises the client's headers three times,
runs an auth flow and a redirect loop (an async generator and two coroutines), and reads
a body already in memory through three nested generators. On the aiohttp wire that is
more than half a request's instructions. Each shortcut here is taken only where httpx's
steps have nothing to decide; everything else goes through httpx unchanged:

* :meth:`HttpxShortcuts._merge_url`: the merged URL of a plain path, remembered;
* :meth:`HttpxShortcuts.build_request`: a request with nothing but a method, a URL and
  extensions gets the header list httpx built for the same method, host and client
  headers (remembered, checked against the client's headers on every request);
* :meth:`HttpxShortcuts._sends_plainly` and the clients' ``_send_plain``: with no auth,
  no redirect to follow and no event hook, one exchange and the read;
* :func:`take_body`: a body the attempt already read is handed over, not iterated;
* :class:`Cookies`: a response that sets no cookie never reaches the jar.

``tests/test_client_send.py``, ``tests/test_client_urls.py`` and
``tests/test_client_cookies.py`` compare each with httpx's own path, and
``tests/test_httpx_private.py`` pins the httpx internals they rely on.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx
from httpx._client import ClientState

from ._transports.memory_body import InMemoryBody

if TYPE_CHECKING:
    from httpx._client import UseClientDefault
    from httpx._types import AuthTypes, CookieTypes

__all__ = ["OTEL_INSTRUMENTED", "Cookies", "HttpxShortcuts", "take_body"]

USE_CLIENT_DEFAULT = httpx.USE_CLIENT_DEFAULT

# Set on a client by opentelemetry-instrumentation-httpx's ``instrument_client``, which
# wraps the client's transport (our pipeline) in one CLIENT span per *call*. svcclient
# already makes one CLIENT span per attempt, so while such a client sends, the wrapper is
# told to stand aside (OpenTelemetry's suppress-HTTP-instrumentation context key).
OTEL_INSTRUMENTED = "_is_instrumented_by_opentelemetry"

# How many request URLs a client remembers merged with its base URL (see _merge_url).
_MERGED_MAX = 256
# How many (method, host) header lists a client remembers (see build_request).
_HEADERS_MAX = 64

# httpx's header list: (raw name, lowercased name, value), all bytes
_HeaderList = list[tuple[bytes, bytes, bytes]]


class Cookies(httpx.Cookies):
    """httpx's cookie store, without the work of reading a response that sets no cookie.

    httpx hands every response to ``extract_cookies``, which wraps the request and the
    response in two urllib adapter objects and takes the jar's lock: about a tenth of a
    request on the aiohttp wire. A response with neither a ``Set-Cookie`` nor a
    ``Set-Cookie2`` header gives the jar nothing, so it is not read at all.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


# The body streams httpx's read would only join: in memory already (see take_body).
_IN_MEMORY = (httpx.ByteStream, InMemoryBody)


def take_body(response: httpx.Response) -> bool:
    """Give ``response`` its content as httpx's ``read()`` would, without iterating: True
    when done (the caller then closes it, which sets ``elapsed``), False to read it.

    A body the attempt already read is one ``bytes`` object in an in-memory stream,
    inside httpx's bound stream (``response.stream._stream``); with no
    ``Content-Encoding`` to decode, httpx's read is three nested generators that hand
    that object on unchanged. What the read leaves on the response is set here: the
    content, the raw byte count, the stream consumed.
    """
    inner = getattr(response.stream, "_stream", None)
    if (
        type(inner) not in _IN_MEMORY
        or hasattr(response, "_content")  # built as read (``content=``): httpx's read keeps it
        or "content-encoding" in response.headers
    ):
        return False
    raw: bytes = inner._stream  # type: ignore[union-attr]
    response.is_stream_consumed = True
    response._num_bytes_downloaded = len(raw)
    response._content = raw
    return True


class HttpxShortcuts:
    """The shortcuts (see the module), as a base of both service clients (which are
    ``httpx.Client`` / ``httpx.AsyncClient`` subclasses: ``self`` is one of them)."""

    # (the base URL, {path: merged URL}): one attribute, so that a thread reading it
    # never pairs one base URL with another one's memo
    _merged: tuple[httpx.URL | None, dict[str, httpx.URL]] = (None, {})
    # (the client's header list they were built from, {(method, host): header list})
    _plain_headers: tuple[_HeaderList | None, dict[tuple[str, bytes], _HeaderList]] = (None, {})

    _cookies: httpx.Cookies  # httpx's attribute behind the ``cookies`` property

    @property
    def cookies(self) -> httpx.Cookies:
        """Cookie values to include when sending requests (httpx's ``cookies``)."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        self._cookies = Cookies(cookies)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        """httpx's merge of a request URL with the client's base URL, remembered for the
        plain paths a service client sends again and again (``"/users/1"``).

        httpx parses the path, then the merged URL, on every request: about 30 µs, a fifth
        of a whole ``get`` on an in-process transport. A merged ``httpx.URL`` is immutable,
        so one can serve every request for the same path and base URL. Only strings
        without a query or userinfo are remembered (no secret stays in the memo, and
        query strings rarely repeat); at most ``_MERGED_MAX`` of them, the oldest making room
        for a new one (so memory stays flat however many paths a client sends), and the
        memo starting afresh when ``base_url`` changes.
        """
        merge = super()._merge_url  # type: ignore[misc]
        if type(url) is not str or "?" in url or "@" in url:
            return merge(url)  # type: ignore[no-any-return]
        base = self.base_url  # type: ignore[attr-defined]
        for_base, memo = self._merged
        if for_base is not base:
            memo = {}
            self._merged = (base, memo)
        merged = memo.get(url)
        if merged is None:
            merged = merge(url)
            if len(memo) >= _MERGED_MAX:
                # the oldest goes (dicts keep insertion order); if another thread changed
                # the memo meanwhile, that thread made the room
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                    del memo[next(iter(memo))]
            memo[url] = merged
        return merged

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        timeout: Any = USE_CLIENT_DEFAULT,
        extensions: Any = None,
    ) -> httpx.Request:
        """httpx's ``build_request``; a request with no body, params, headers, cookies or
        timeout of its own (and a client with no params or cookies) is built directly.

        httpx copies the client's headers into the request, normalises them again to
        add ``Host`` (and ``Content-Length: 0`` for POST, PUT, PATCH), and re-encodes
        them on each lookup: about a tenth of a request on the aiohttp wire. Such a
        request's header list depends only on its method, its URL's host and the
        client's headers, so it is built once by httpx itself (``httpx.Request``) and
        copied for each request; the list is built anew whenever the client's headers
        changed. The request carries what httpx's would: method, URL, headers,
        extensions with the client's timeout, an empty body already read.
        """
        client: Any = self  # an httpx.Client or httpx.AsyncClient
        if (
            content is not None
            or data is not None
            or files is not None
            or json is not None
            or params is not None
            or headers is not None
            or cookies is not None
            or timeout is not USE_CLIENT_DEFAULT
            or client._params
            or client._cookies
        ):
            return super().build_request(  # type: ignore[misc,no-any-return]
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                timeout=timeout,
                extensions=extensions,
            )
        merged = self._merge_url(url)
        method = method.upper()
        client_headers: httpx.Headers = client._headers
        built_from, lists = self._plain_headers
        if built_from != client_headers._list:
            lists = {}
            self._plain_headers = (list(client_headers._list), lists)
        key = (method, merged.netloc)
        header_list = lists.get(key)
        if header_list is None:
            model = httpx.Request(method, merged, headers=client_headers)
            header_list = model.headers._list
            if len(lists) >= _HEADERS_MAX:
                lists.clear()
            lists[key] = header_list
        request_headers = httpx.Headers.__new__(httpx.Headers)
        request_headers._list = list(header_list)
        request_headers._encoding = None
        if extensions is None:
            extensions = {}
        if "timeout" not in extensions:
            extensions = dict(**extensions, timeout=client._timeout.as_dict())
        request = httpx.Request.__new__(httpx.Request)
        request.method = method
        request.url = merged
        request.headers = request_headers
        request.extensions = dict(extensions)
        request.stream = httpx.ByteStream(b"")
        request._content = b""
        return request

    def _sends_plainly(
        self,
        request: httpx.Request,
        auth: AuthTypes | UseClientDefault | None,
        follow_redirects: bool | UseClientDefault,
    ) -> bool:
        """Whether httpx's ``send`` of a buffered ``request`` would be one exchange and a
        read: no auth (none given, none on the client, no userinfo in the URL), no
        redirect to follow, no event hook, no OpenTelemetry client wrapper. httpx's
        auth and redirect loops then have nothing to do, and the clients' ``_send_plain``
        (httpx's own single exchange, then the read) does the rest.
        """
        client: Any = self
        hooks = client._event_hooks
        return (
            auth is USE_CLIENT_DEFAULT
            and client._auth is None
            and (
                follow_redirects is False
                or (follow_redirects is USE_CLIENT_DEFAULT and not client.follow_redirects)
            )
            and client.max_redirects >= 0
            and not hooks["request"]
            and not hooks["response"]
            and not request.url.userinfo
            and not getattr(self, OTEL_INSTRUMENTED, False)
        )

    def _opened(self, request: httpx.Request) -> None:
        """httpx's ``send`` before the exchange: refuse on a closed client, mark it open,
        give the request the client's timeout."""
        client: Any = self
        if client._state is ClientState.CLOSED:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        client._state = ClientState.OPENED
        client._set_timeout(request)

    def _not_followed(self, request: httpx.Request, response: httpx.Response) -> None:
        """httpx's redirect step when redirects are not followed: no history, and a
        redirect's next request noted on the response."""
        response.history = []
        if response.has_redirect_location:
            client: Any = self
            response.next_request = client._build_redirect_request(request, response)
