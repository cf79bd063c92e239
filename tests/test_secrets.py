"""Secrets never leave: planted credentials appear in no channel svcclient writes to.

Planted: a password in URL userinfo, a query token, an ``Authorization`` header and a JWT
path segment. Run: successes, 500s, refused connections, an open breaker, a DNS failure,
bad configuration, and the CLI (``doctor`` and ``config check``, text and ``--json``).
Grepped: the Prometheus exposition, every span (name, attributes, events, status) from the
OpenTelemetry SDK's in-memory exporter, every log record at DEBUG (svcclient's loggers;
httpx's own INFO line prints full URLs, see the README), ``str`` and ``repr`` of every
exception raised (with its causes) and the CLI output.

Only the public API is used, so the same test measures a tree without the redactor
(``SVCCLIENT_SECRETS_REPORT=1`` prints the hits per channel instead of asserting).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from svcclient import (
    BreakerPolicy,
    PrometheusHooks,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
    TracingHooks,
)
from svcclient.__main__ import main
from svcclient.testing._faultserver import Fault, FaultServer
from svcclient.testing._localdns import LocalDns

USER = "svcuser"
PASSWORD = "pw-Hunter2xQ7"
QUERY_TOKEN = "qtok9Zr4Lm8Wd"
AUTH_TOKEN = "authBearer5Tk8Yp3"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWT = ".".join(
    [
        _b64(b'{"alg":"HS256","typ":"JWT"}'),
        _b64(b'{"sub":"reset-1234567890","exp":1999999999}'),
        _b64(b"signature-bytes-0123456789abcdef"),
    ]
)
SECRETS = {"password": PASSWORD, "query": QUERY_TOKEN, "authorization": AUTH_TOKEN, "jwt": JWT}


def _hits(texts: list[str]) -> dict[str, int]:
    return {
        kind: sum(text.count(secret) for text in texts)
        for kind, secret in SECRETS.items()
        if any(secret in text for text in texts)
    }


def _exception_texts(exc: BaseException) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out += [str(cur), repr(cur)]
        cur = cur.__cause__ or cur.__context__
    return out


def _span_texts(span: ReadableSpan) -> list[str]:
    out = [span.name, json.dumps(dict(span.attributes or {}), default=str)]
    out.append(str(span.status.description or ""))
    for event in span.events:
        out += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    return out


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("svcclient")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _record_texts(handler: _Records) -> list[str]:
    out = []
    for r in handler.records:
        out.append(r.getMessage())
        if r.exc_info and r.exc_info[1] is not None:
            out += _exception_texts(r.exc_info[1])
    return out


def _cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit:
            pass
    return out.getvalue() + err.getvalue()


def _collect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: _Records
) -> dict[str, list[str]]:
    """Run every scenario and return what each channel holds."""
    for var in list(os.environ):
        if var.startswith(("SVCCLIENT_", "SECRETS_")):
            monkeypatch.delenv(var)
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = [PrometheusHooks(registry), TracingHooks(provider)]
    errors: list[BaseException] = []
    path = f"/reset/{JWT}?token={QUERY_TOKEN}"
    headers = {"Authorization": f"Bearer {AUTH_TOKEN}"}

    with FaultServer("127.0.0.2", name="secrets") as server, LocalDns() as dns:
        base = f"http://{USER}:{PASSWORD}@127.0.0.2:{server.port}"
        config = ServiceConfig(
            "secrets-svc",
            url=base,
            resolve="system",
            retry=RetryPolicy(attempts=2, backoff_base=0.001, backoff_cap=0.002),
            breaker=BreakerPolicy(
                window="count", window_size=4, volume_threshold=2, reset_timeout=60.0
            ),
        )
        with ServiceClient(config, hooks=hooks) as client:
            for _ in range(2):  # successes
                assert client.get(path, headers=headers).status_code == 200
            server.set_fault(Fault.status(500))  # failures, then the breaker opens
            server.refuse()  # refused connections too
            for _ in range(6):
                try:
                    client.get(path, headers=headers)
                except Exception as exc:
                    errors.append(exc)
        assert any(type(e).__name__ == "CircuitOpenError" for e in errors)

        # A DNS failure for a service whose URL (with credentials) came from the env.
        monkeypatch.setenv("SECRETS_DNS_URL", f"http://{USER}:{PASSWORD}@nx.secrets.test:80")
        dns_config = ServiceConfig(
            "secrets-dns", resolve="dns", dns_nameservers=(dns.nameserver,), dns_timeout=0.5
        )
        with ServiceClient(dns_config, hooks=hooks) as dns_client:
            try:
                dns_client.get(path, headers=headers)
            except Exception as exc:
                errors.append(exc)
        assert any(type(e).__name__ == "DiscoveryError" for e in errors)

        # Bad configuration that holds secrets.
        for bad in (
            {"url": f"{base}/x?token={QUERY_TOKEN}"},
            {"url": f"http://{USER}:{PASSWORD}@h:99999"},
            {"url": f"{base}/reset/{JWT}#frag"},
        ):
            try:
                ServiceConfig("secrets-bad", **bad)  # type: ignore[arg-type]
            except Exception as exc:
                errors.append(exc)
        assert len(errors) >= 9

        # The CLI against a config file holding the same secrets.
        toml = tmp_path / "svc.toml"
        toml.write_text(
            f'[services.secrets-svc]\nurl = "{base}"\nresolve = "system"\n'
            f'[services.secrets-broken]\nurl = "{base}/x?token={QUERY_TOKEN}"\n'
        )
        good = tmp_path / "good.toml"
        good.write_text(f'[services.secrets-svc]\nurl = "{base}"\nresolve = "system"\n')
        server.resume()
        server.set_fault(Fault.ok())
        cli = [
            _cli("config", "check", str(toml)),
            _cli("config", "check", str(toml), "--json"),
            _cli("config", "check", str(good)),
            _cli("config", "check", str(good), "--json"),
            _cli("doctor", "secrets-svc", "--config", str(good), "--timeout", "1"),
            _cli("doctor", "secrets-svc", "--config", str(good), "--timeout", "1", "--json"),
            _cli("doctor", base, "--timeout", "1"),
            _cli("doctor", base, "--timeout", "1", "--json"),
        ]
    assert all(cli), "every CLI run printed something"
    return {
        "prometheus": [generate_latest(registry).decode()],
        "spans": [t for span in exporter.get_finished_spans() for t in _span_texts(span)],
        "logs": _record_texts(records),
        "exceptions": [t for exc in errors for t in _exception_texts(exc)],
        "cli": cli,
    }


def test_no_secret_in_any_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: _Records
) -> None:
    """Metrics, spans, logs, exception messages and CLI output hold none of the secrets."""
    report = os.environ.get("SVCCLIENT_SECRETS_REPORT")
    channels = _collect(tmp_path, monkeypatch, records)
    assert channels["spans"], "tracing recorded spans"
    hits = {name: _hits(texts) for name, texts in channels.items()}
    if report:
        print("\nsecrets found per channel:", json.dumps(hits))
        return
    assert hits == {name: {} for name in channels}
