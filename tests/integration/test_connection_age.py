"""max_connection_age behind a ClusterIP (issue 13): a pod that joins gets its share.

Pods are FaultServers on 127.0.0.2-4; the Service is a KubeProxy stand-in on 127.0.0.10
choosing a backend per new connection (round robin, as IPVS does). Six clients (six
replicas of a calling service) share the proxy. The clients' clock is a real clock plus
an offset the test moves, so ages pass without waiting; counts are asserted, not times.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from svcclient import ServiceClient
from svcclient.testing import FaultServer
from svcclient.testing._kubeproxy import KubeProxy

AGE = 10.0
CLIENTS = 6
TICKS_PER_AGE = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class SteppedClock:
    """time.monotonic() plus an offset the test advances."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def _scale_up(
    fault_server: Callable[..., FaultServer], max_age: float | None
) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, int], int]]:
    p1 = fault_server("127.0.0.2")
    p2 = fault_server("127.0.0.3", p1.port)
    p3 = fault_server("127.0.0.4", p1.port)
    pods = {"p1": p1, "p2": p2, "p3": p3}
    clock = SteppedClock()
    with KubeProxy("127.0.0.10", backends=[(p1.host, p1.port), (p2.host, p2.port)]) as vip:
        clients = [
            ServiceClient(
                f"cluster-ip-{i}",
                url=f"http://127.0.0.10:{vip.port}",
                max_connection_age=max_age,
                clock=clock,
                hooks=[],
            )
            for i in range(CLIENTS)
        ]
        try:

            def phase(path: str, ages: float) -> None:
                for _ in range(int(ages * TICKS_PER_AGE)):
                    for c in clients:
                        assert c.get(path).status_code == 200
                    clock.offset += AGE / TICKS_PER_AGE

            phase("/before", 1.0)
            vip.set_backends([(p.host, p.port) for p in pods.values()])  # p3 joins
            phase("/early", 1.0)
            phase("/late", 1.0)
        finally:
            for c in clients:
                c.close()
        connections = dict(vip.connections)
    early = {k: p.count(path="/early") for k, p in pods.items()}
    late = {k: p.count(path="/late") for k, p in pods.items()}
    return early, late, connections


def test_a_pod_that_joins_gets_a_fair_share_within_two_ages(
    fault_server: Callable[..., FaultServer],
) -> None:
    """With max_connection_age, the new pod serves >= 20 % of the second age after joining."""
    early, late, connections = _scale_up(fault_server, AGE)
    share_late = late["p3"] / sum(late.values())
    share_window = (early["p3"] + late["p3"]) / (sum(early.values()) + sum(late.values()))
    print(f"p3 share: {share_window:.0%} over 2 ages after joining, {share_late:.0%} in the 2nd")
    assert share_late >= 0.20
    assert share_window > 0.0
    assert len(connections) == 3


def test_without_an_age_keep_alive_pins_clients_for_ever(
    fault_server: Callable[..., FaultServer],
) -> None:
    """max_connection_age=None: the pod that joined after the clients connected gets nothing."""
    early, late, _ = _scale_up(fault_server, None)
    assert early["p3"] == late["p3"] == 0


@pytest.mark.anyio
async def test_async_connections_retire_too(
    fault_server: Callable[..., FaultServer], anyio_backend: str
) -> None:
    """The async pool retires an old connection between requests the same way."""
    from svcclient import AsyncServiceClient

    p1 = fault_server("127.0.0.2")
    p2 = fault_server("127.0.0.3", p1.port)
    clock = SteppedClock()
    with KubeProxy("127.0.0.10", backends=[(p1.host, p1.port)]) as vip:
        async with AsyncServiceClient(
            "cluster-ip-async",
            url=f"http://127.0.0.10:{vip.port}",
            max_connection_age=AGE,
            clock=clock,
            hooks=[],
        ) as client:
            await client.get("/one")
            vip.set_backends([(p2.host, p2.port)])
            await client.get("/two")  # same connection: still p1
            clock.offset += AGE * 1.2
            await client.get("/three")  # retired: a new connection, to p2
    assert (p1.count(path="/two"), p2.count(path="/three")) == (1, 1)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), True, "soon"])
def test_bad_max_connection_age_is_config_error(bad: object) -> None:
    """max_connection_age is seconds > 0 or None; anything else names the key."""
    from svcclient import ConfigError, ServiceConfig

    with pytest.raises(ConfigError) as info:
        ServiceConfig("x", max_connection_age=bad)  # type: ignore[arg-type]
    assert info.value.key == "max_connection_age"


def test_retirement_times_are_jittered_within_ten_percent() -> None:
    """Connections opened together retire spread over [0.9, 1.1] x the age."""
    import random

    from svcclient._transports.connection_age import Retirement

    r = Retirement(100.0, 0.1, lambda: 0.0, random.Random(7))
    times = [r.at() for _ in range(200)]
    assert 90.0 <= min(times) < 92.0 and 108.0 < max(times) <= 110.0


class _RawStream:
    """A socket stand-in: says whatever httpcore asks is False."""

    def get_extra_info(self, info: str) -> object:
        return False


def test_one_wrapper_caps_and_retires_a_pooled_http1_socket() -> None:
    """An HTTP/1.1 pool's socket is wrapped once: the capping stream also says
    is_readable (retire me) once its age is past, and not before."""
    import random

    from svcclient._transports._sync import pinned
    from svcclient._transports.connection_age import AgedBackend, Retirement

    now = [0.0]
    retire = Retirement(AGE, 0.0, lambda: now[0], random.Random(1))
    stream = pinned._Stream(_RawStream(), retire, retire.at())  # type: ignore[arg-type]
    assert stream.get_extra_info("is_readable") is False
    now[0] = AGE
    assert stream.get_extra_info("is_readable") is True
    assert stream.get_extra_info("other") is False
    assert pinned._Stream(_RawStream()).get_extra_info("is_readable") is False  # type: ignore[arg-type]
    # Capped pools keep the age on their own stream; HTTP/2 pools (not capped) get the
    # connection_age wrapper instead, and pools without an age get neither.
    assert not isinstance(pinned._Backend(None, True, AGE)._inner, AgedBackend)
    assert isinstance(pinned._Backend(None, False, AGE)._inner, AgedBackend)
    assert not isinstance(pinned._Backend(None, False)._inner, AgedBackend)
