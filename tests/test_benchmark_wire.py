"""benchmarks.callgrind_wire: every contender answers, and the table reads right."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import callgrind_wire as cw

pytest.importorskip("aiohttp")


def test_every_contender_gets_a_200_from_the_canned_server() -> None:
    """What the callgrind child counts works outside valgrind: one GET per contender."""
    from benchmarks._servers import ServerProcess

    async def each(url: str) -> list[int]:
        statuses = []
        for name in cw.CONTENDERS:
            get, close = await cw._make(name, url)
            statuses.append(await get())
            await close()
        return statuses

    with ServerProcess([{"kind": "canned", "host": "127.0.0.1"}]) as srv:
        assert asyncio.run(each(srv.urls[0])) == [200] * len(cw.CONTENDERS)


def test_render_gives_each_contender_its_ratio_to_bare_httpx() -> None:
    per = {name: 1000.0 * (i + 1) for i, name in enumerate(cw.CONTENDERS)}
    result = {"instructions": per, "ratio_to_bare_httpx": {k: v / 1000.0 for k, v in per.items()}}
    table = cw.render(result)
    assert "| bare httpx.AsyncClient | 1,000 | 1.000 |" in table
    assert f"| {cw.CONTENDERS[-1]} | 5,000 | 5.000 |" in table
    assert f"| {cw.CONTENDERS[3]} | 4,000 | 4.000 (bound 0.30) |" in table


def test_the_guard_names_each_client_over_its_bound() -> None:
    """broken() lists exactly the service clients whose ratio is above their bound."""
    ratios = dict.fromkeys(cw.CONTENDERS, 0.1)
    assert cw.broken({"ratio_to_bare_httpx": ratios}) == []
    ratios[cw.CONTENDERS[3]] = 0.31
    assert cw.broken({"ratio_to_bare_httpx": ratios}) == [cw.CONTENDERS[3]]
