"""What observers get: values built by the Call (CallInfo, AttemptInfo), complete,
immutable, and never the pipeline's own objects."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from svcclient import ServiceClient
from svcclient._observability.hooks import FIELD_ORDER, AttemptInfo, CallInfo, Hooks
from svcclient._pipeline.attempt import Attempt
from svcclient._pipeline.call import Call


class _Snapshot(Hooks):
    """Every field's value as the observer sees it, per event (AttributeError if unset)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object, dict[str, Any]]] = []

    def _keep(self, event: str, info: CallInfo | AttemptInfo) -> None:
        values = {name: getattr(info, name) for name in FIELD_ORDER[type(info)]}
        self.seen.append((event, info, values))

    def on_request_start(self, call: CallInfo) -> None:
        self._keep("request_start", call)

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self._keep("attempt_start", attempt)

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        self._keep("attempt_end", attempt)

    def on_request_end(self, call: CallInfo) -> None:
        self._keep("request_end", call)


def test_observers_get_complete_values_never_the_pipelines_objects() -> None:
    """Each event's value has every field (the outcome only at the end), shares its
    call's and attempt's state, and is neither the Call nor the Attempt."""
    snap = _Snapshot()
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with ServiceClient("objects", url="http://objects:80", transport=transport, hooks=[snap]) as c:
        c.get("/x")
    events = [event for event, _, _ in snap.seen]
    assert events == ["request_start", "attempt_start", "attempt_end", "request_end"]
    (_, call, start), (_, a0, a0v), (_, a1, a1v), (_, end_call, end) = snap.seen
    for info in (call, a0, a1, end_call):
        assert type(info) in (CallInfo, AttemptInfo)
        assert not isinstance(info, Call | Attempt)
        with pytest.raises(AttributeError, match="immutable"):
            info.started = 0.0  # type: ignore[misc]
    assert (start["service"], start["method"], start["route"]) == ("objects", "GET", "/x")
    assert (start["attempts"], start["status_code"], start["error_type"]) == (0, None, None)
    assert (end["attempts"], end["status_code"], end["error_type"]) == (1, 200, None)
    assert end["duration"] >= 0 and end["state"] is start["state"]
    assert a0v["call"] is call and a1v["call"] is call and a0v["number"] == 0
    assert a0v["status_code"] is None and a1v["status_code"] == 200
    assert a0v["state"] is a1v["state"]
    assert a0v["endpoint"] is not None and a0v["endpoint"].port == 80


def test_info_values_are_immutable_and_printable() -> None:
    """Setting or deleting a field raises; repr shows every field (also for a client with
    no observers, whose calls make no value at all)."""
    call = CallInfo("svc", "GET", "/x", httpx.Request("GET", "http://svc/x"), 1.0)
    attempt = AttemptInfo(call, 0, None, call.request, 1.0)
    for info, name in ((call, "status_code"), (attempt, "duration")):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(info, name, 1)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(info, name)
    assert call.state == {} and attempt.state == {} and call.state is not attempt.state
    assert repr(call).startswith("CallInfo(service='svc', method='GET', route='/x'")
    assert "state={}" in repr(attempt) and "trace_context=None" in repr(call)
    with ServiceClient(
        "bare",
        url="http://bare:80",
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        hooks=[],
    ) as client:
        assert client.get("/x").status_code == 200


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


def test_calls_and_their_values_leave_no_garbage() -> None:
    """Neither a success nor a retried failure leaves the call, an attempt or an
    observer's value in a reference cycle (the call and its attempts refer to each other
    only while the attempt is in flight). httpx's own request and response do form one;
    that is not ours."""
    import gc

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
            ours = [o for o in gc.garbage if isinstance(o, Call | Attempt | CallInfo | AttemptInfo)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert ours == []
