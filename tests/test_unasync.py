"""scripts/unasync.py: the sync I/O modules are generated from the async ones, and stay so."""

from __future__ import annotations

import dis
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module
    spec.loader.exec_module(module)
    return module


unasync = _load()


def convert(text: str) -> str:
    """``text`` (an async module) as unasync writes it, without the header or formatting."""
    out = unasync.unasync_source(text, "x.py", set())
    return "".join(out.splitlines(keepends=True)[2:])


def test_the_sync_modules_are_current() -> None:
    """Every module in svcclient/_transports/_sync is exactly what the script generates
    from its async source, and the replacement table has no unused entry (what CI's
    `python scripts/unasync.py --check` checks)."""
    used: set[int] = set()
    wanted = unasync.expected(ROOT, used)
    assert unasync.stale(ROOT, wanted) == []
    assert unasync.unused(used) == []
    assert {p.name for p in wanted} == {"connection_age.py", "pinned.py", "pool.py"}


def test_names_are_replaced_as_whole_words() -> None:
    """Async names become their sync twins; other words that contain them do not."""
    source = (
        "async def f(s: httpcore.AsyncNetworkStream, p: _AsyncStream) -> AsyncIterator[bytes]:\n"
        "    await s.aclose()\n"
        "    await p.handle_async_request(AsyncHTTP11Pool, AgedAsyncBackend, aopened)\n"
        "    async for x in p.__aiter__():\n"
        "        yield x\n"
        "    return aclosed, MyAsyncThing, httpcore.AnyIOBackend()\n"
    )
    assert convert(source) == (
        "def f(s: httpcore.NetworkStream, p: _Stream) -> Iterator[bytes]:\n"
        "    s.close()\n"
        "    p.handle_request(HTTP11Pool, AgedBackend, opened)\n"
        "    for x in p.__iter__():\n"
        "        yield x\n"
        "    return aclosed, MyAsyncThing, httpcore.SyncBackend()\n"
    )


def test_a_replacement_of_none_drops_the_line() -> None:
    """`import anyio` has no sync twin: the line goes."""
    assert convert("import anyio\nimport httpcore\n") == "import httpcore\n"


def test_an_async_block_keeps_only_its_else_dedented() -> None:
    """`if True:  # async` ... `else:` ... becomes the else body, one level less
    indented; blank lines inside stay; without an else the block goes."""
    source = (
        "def f():\n"
        "    if True:  # async: why\n"
        "        a()\n"
        "    else:\n"
        "        with lock:\n"
        "            b()\n"
        "\n"
        "            c()\n"
        "\n"
        "    if True:  # async\n"
        "        d()\n"
        "    e()\n"
    )
    assert convert(source) == ("def f():\n    with lock:\n        b()\n\n        c()\n\n    e()\n")


def test_async_blocks_nest() -> None:
    """A block inside an else body is converted too."""
    source = (
        "if True:  # async\n"
        "    a()\n"
        "else:\n"
        "    if True:  # async\n"
        "        b()\n"
        "    else:\n"
        "        c()\n"
    )
    assert convert(source) == "c()\n"


@pytest.mark.parametrize(
    "source",
    [
        "if True:  # async\nx = 1\n",  # no body
        "if True:  # async\n    a()\nelif x:\n    b()\n",
        "if True:  # async\n    a()\nelse:\nb()\n",  # empty else
    ],
)
def test_a_malformed_block_is_an_error(source: str) -> None:
    """No body, an `elif`, or an empty `else` is refused, not guessed at."""
    with pytest.raises(unasync.UnasyncError):
        convert(source)


def test_cpython_compiles_the_async_test_away() -> None:
    """`if True:` costs the async code nothing: no test, no jump, and the else branch
    is not compiled at all (the pool's hot path relies on this)."""

    def pooled() -> int:
        if True:  # async
            x = 1
        else:
            x = 2
        return x

    ops = [i.opname for i in dis.get_instructions(pooled)]
    assert not any("JUMP" in op for op in ops), ops
    assert 2 not in pooled.__code__.co_consts


def test_check_reports_a_hand_edit_and_an_orphan(tmp_path: Path) -> None:
    """On a copy of the repo's I/O packages: a sync module edited by hand, and one with
    no async source, each fail the check; regenerating fixes the first."""
    for package in ("_async", "_sync"):
        shutil.copytree(
            ROOT / "svcclient/_transports" / package, tmp_path / "svcclient/_transports" / package
        )
    sync = tmp_path / "svcclient/_transports/_sync"
    (sync / "pool.py").write_text((sync / "pool.py").read_text().replace("def ", "def  ", 1))
    (sync / "orphan.py").write_text("")
    wanted = unasync.expected(tmp_path, set())
    problems = unasync.stale(tmp_path, wanted)
    assert len(problems) == 2
    assert "orphan.py: no async source" in problems[0]
    assert "_sync/pool.py (on disk)" in problems[1]
    (sync / "pool.py").write_text(wanted[Path("svcclient/_transports/_sync/pool.py")])
    assert len(unasync.stale(tmp_path, wanted)) == 1
