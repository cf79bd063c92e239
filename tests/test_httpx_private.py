"""What the private httpx and httpcore names svcclient relies on mean, pinned: an upgrade
that moves one or changes what it holds fails here, loudly, instead of somewhere deep in a
request. That each private name svcclient uses is declared at all (and still exists) is
checked by walking the source in ``tests/test_private_names.py``."""

from __future__ import annotations

import httpx
import pytest


def test_listed_private_types_still_exist() -> None:
    """The private type names svcclient imports for typing are still where it looks."""
    from httpx import _client, _types

    assert type(httpx.USE_CLIENT_DEFAULT) is _client.UseClientDefault
    assert _types.AuthTypes is not None and _types.HeaderTypes is not None


def test_request_slot_behind_the_public_request_property() -> None:
    """httpx keeps an exception's request in ``_request`` (read by ``.request``)."""
    exc = httpx.ConnectError("x")
    assert exc._request is None  # type: ignore[attr-defined]
    request = httpx.Request("GET", "http://a/")
    exc._request = request  # type: ignore[attr-defined]
    assert exc.request is request
    with pytest.raises(RuntimeError):
        _ = httpx.ConnectError("y").request


def test_http_transport_sends_through_its_pool_attribute() -> None:
    """httpx.HTTPTransport.handle_request sends through ``self._pool`` (PinnedTransport
    builds that pool itself, with its own network backend)."""
    import inspect

    assert "self._pool.handle_request" in inspect.getsource(httpx.HTTPTransport.handle_request)
    source = inspect.getsource(httpx.AsyncHTTPTransport.handle_async_request)
    assert "self._pool.handle_async_request" in source
    assert "self._pool.close" in inspect.getsource(httpx.HTTPTransport.close)
    assert "self._pool.__enter__" in inspect.getsource(httpx.HTTPTransport.__enter__)


def test_connection_pool_dials_through_its_network_backend_attribute() -> None:
    """httpcore's ConnectionPool dials every new connection through
    ``self._network_backend`` and keeps ``http2`` in ``self._http2``
    (``cap_caller_transport`` wraps the first for HTTP/1.1 pools)."""
    import inspect

    import httpcore

    source = inspect.getsource(httpcore.ConnectionPool.create_connection)
    assert "network_backend=self._network_backend" in source
    pool = httpx.HTTPTransport(http2=False)._pool
    assert isinstance(pool, httpcore.ConnectionPool)
    assert isinstance(pool._network_backend, httpcore.NetworkBackend)
    assert pool._http2 is False


def test_url_keeps_its_raw_path_in_the_parse_result() -> None:
    """``URL._uri_reference.path`` is the path before percent-decoding (the Call keys its
    route-label cache on it) and decodes to the public ``url.path``."""
    url = httpx.URL("http://a/users/caf%C3%A9/42?x=1")
    assert url._uri_reference.path == "/users/caf%C3%A9/42"
    assert url.path == "/users/café/42"
    assert httpx.URL("http://a")._uri_reference.path == ""
    assert httpx.URL("http://a").path == "/"


def test_url_parse_result_fields_match_the_public_properties() -> None:
    """``URL._uri_reference`` has ``scheme``, ``host`` (IDNA-encoded) and ``port`` (None
    when the default one) as the drivers compare them to tell the service's requests."""
    for text in ("http://User-Service:8080/x", "https://münchen.example/", "http://a"):
        url = httpx.URL(text)
        ref = url._uri_reference
        assert ref.scheme == url.scheme
        assert ref.port == url.port
        assert ref.host == url.raw_host.decode("ascii")
    assert httpx.URL("https://münchen.example/")._uri_reference.host.startswith("xn--")
    assert httpx.URL("http://a:80/").port is None
    assert httpx.URL("http://a:80/")._uri_reference.port is None


def test_byte_stream_keeps_its_bytes_in_stream_attribute() -> None:
    """``ByteStream._stream`` is the body's bytes (the async driver tests it to skip a
    body-less request without a call): empty for a GET, the content otherwise."""
    assert httpx.Request("GET", "http://a/").stream._stream == b""  # type: ignore[union-attr]
    request = httpx.Request("PUT", "http://a/", content=b"abc")
    assert request.stream.__class__ is httpx.ByteStream
    assert request.stream._stream == b"abc" == request.content


def test_what_the_plain_send_reads_and_sets_is_where_httpx_keeps_it() -> None:
    """The service clients' plain send (svcclient._shortcuts) calls httpx's own steps and
    sets what httpx's read sets: each name is still there and means the same."""
    import inspect

    from httpx import _client

    for name in ("_set_timeout", "_send_single_request", "_build_redirect_request"):
        assert callable(getattr(httpx.Client, name)) and callable(getattr(httpx.AsyncClient, name))
    client = httpx.Client()
    assert client._state is _client.ClientState.UNOPENED and client._auth is None
    assert client._event_hooks == {"request": [], "response": []}
    client.close()
    assert client._state is _client.ClientState.CLOSED
    # send(): auth, then the redirect loop; the read afterwards
    send = inspect.getsource(httpx.Client.send)
    assert "_build_request_auth" in send and "_send_handling_auth" in send
    # the single exchange wraps the transport's stream in a bound stream kept in _stream
    single = inspect.getsource(httpx.AsyncClient._send_single_request)
    assert "BoundAsyncStream(" in single and "extract_cookies" in single
    assert "self._stream = stream" in inspect.getsource(_client.BoundAsyncStream.__init__)
    assert httpx.ByteStream(b"abc")._stream == b"abc"
    # what read() leaves on a response
    response = httpx.Response(200, stream=httpx.ByteStream(b"abc"))
    response.read()
    assert response._content == b"abc" and response._num_bytes_downloaded == 3
    assert response.is_stream_consumed and response.is_closed
