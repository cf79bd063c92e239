"""The per-request objects the Call builds field by field (no dataclass __init__) are
complete: every field of CallInfo and AttemptInfo is set, with the dataclass defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from svcclient import ServiceClient
from svcclient._observability.hooks import AttemptInfo, CallInfo, Hooks
from svcclient._pipeline.call import Attempt


class _Snapshot(Hooks):
    """Every field's value as the observer first sees it (AttributeError if unset)."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, dict[str, Any]]] = []

    def _keep(self, info: CallInfo | AttemptInfo) -> None:
        values = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
        self.seen.append((info, values))

    def on_request_start(self, call: CallInfo) -> None:
        self._keep(call)

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self._keep(attempt)


def _defaults(cls: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_call_and_attempt_info_have_every_field_at_its_default() -> None:
    """At start, CallInfo and the Attempt (an AttemptInfo) hold every dataclass field,
    the defaulted ones at their defaults; the attempt knows its call and endpoint."""
    snap = _Snapshot()
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with ServiceClient("objects", url="http://objects:80", transport=transport, hooks=[snap]) as c:
        c.get("/x")
    (call, call_values), (attempt, attempt_values) = snap.seen
    assert isinstance(call, CallInfo) and isinstance(attempt, Attempt)
    for values, cls in ((call_values, CallInfo), (attempt_values, AttemptInfo)):
        defaults = _defaults(cls)
        assert defaults and {k: values[k] for k in defaults} == defaults
    assert (call_values["service"], call_values["method"]) == ("objects", "GET")
    assert attempt_values["call"] is call and attempt_values["number"] == 0
    assert attempt.endpoint is not None and attempt.endpoint.port == 80


class _Raising(Hooks):
    def on_request_start(self, call: CallInfo) -> None:
        raise RuntimeError("observer bug")

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        raise RuntimeError("observer bug")


class _Counting(Hooks):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_request_start(self, call: CallInfo) -> None:
        self.events.append("request_start")

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        self.events.append("attempt_end")

    def on_request_end(self, call: CallInfo) -> None:
        self.events.append("request_end")


def test_compiled_dispatch_logs_a_raising_observer_and_runs_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising observer (first of two, or one of three) is logged and skipped; the
    others still see every event and the call succeeds."""
    for extra in ((), (_Counting(),)):
        counting = _Counting()
        hooks = [_Raising(), counting, *extra]
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        with ServiceClient("raising", url="http://r:80", transport=transport, hooks=hooks) as c:
            assert c.get("/x").status_code == 200
        assert counting.events == ["request_start", "attempt_end", "request_end"]
        assert caplog.text.count("svcclient hook") >= 2
        caplog.clear()


def test_compile_dispatch_shapes() -> None:
    """No methods: None; one, two and more are each called once, in order."""
    from svcclient._observability.hooks import compile_dispatch

    assert compile_dispatch(()) is None
    for n in (1, 2, 3):
        seen: list[tuple[int, object]] = []
        methods = tuple(lambda arg, i=i: seen.append((i, arg)) for i in range(n))
        dispatch = compile_dispatch(methods)
        assert dispatch is not None
        dispatch("x")
        assert seen == [(i, "x") for i in range(n)]


def test_the_call_is_its_own_call_info_and_leaves_no_garbage() -> None:
    """Observers get the Call itself as the CallInfo (one object per call), and neither
    a success nor a retried failure leaves the call or an attempt in a reference cycle
    (they refer to each other only while the attempt is in flight). httpx's own request
    and response do form one; that is not ours."""
    import gc

    from svcclient._pipeline.call import Attempt, Call

    snap = _Snapshot()
    answers = iter([200, 503, 200, 200])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers)))
    with ServiceClient(
        "objects", url="http://objects:80", transport=transport, hooks=[snap], sleep=lambda s: None
    ) as client:
        client.get("/warm")
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            assert client.get("/x").status_code == 200  # a 503, then a 200
            assert client.get("/y").status_code == 200
            gc.collect()
            ours = [o for o in gc.garbage if isinstance(o, Call | Attempt)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert ours == []
    assert all(isinstance(info, Call) for info, _ in snap.seen if isinstance(info, CallInfo))
