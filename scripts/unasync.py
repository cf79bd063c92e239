"""Generate svcclient's sync I/O code from its async source, or check that it is current.

The async twins are written once, in ``svcclient/_transports/_async/``; each module there
has a sync twin in ``svcclient/_transports/_sync/`` that this script writes: the same code
with the replacements of ``SUBS`` applied line by line (``async def`` -> ``def``,
``AsyncNetworkStream`` -> ``NetworkStream``, ...), then formatted by ``ruff format`` (a line
that got shorter may fit where its async original did not). httpcore generates its
``_sync/`` the same way.

Where the two worlds differ by more than names, the async source says so in place::

    if True:  # async
        ...  # what only the async code does
    else:
        ...  # what the sync code does instead (the else is optional)

CPython compiles ``if True:`` away (the async code runs the first branch with no test),
and the generated sync code keeps only the ``else`` branch, dedented.

``python scripts/unasync.py`` writes the sync modules; ``--check`` (in CI, ``.ci/run``)
writes nothing and exits 1 when a sync module is not what this script would write (it was
edited by hand, or its async source changed without regenerating) or when a sync module
has no async source. Either way a replacement that no module uses fails the run, so the
table holds only what is needed.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ((Path("svcclient/_transports/_async"), Path("svcclient/_transports/_sync")),)

# (regex, replacement), applied in this order to every line; a regex matches whole
# words only. A replacement of None drops the line.
SUBS: tuple[tuple[str, str | None], ...] = (
    (r"import anyio", None),
    (r"AnyIOBackend", "SyncBackend"),
    (r"AgedAsyncBackend", "AgedBackend"),
    (r"AsyncIterator", "Iterator"),
    (r"_Async([A-Z]\w*)", r"_\1"),
    (r"Async([A-Z]\w*)", r"\1"),
    (r"async def", "def"),
    (r"async for", "for"),
    (r"await ", ""),
    (r"handle_async_request", "handle_request"),
    (r"aclose", "close"),
    (r"aopened", "opened"),
    (r"__aiter__", "__iter__"),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
)
_WORD_END = r"(?!\w)"
_COMPILED = [
    (re.compile(r"(?<!\w)" + regex + ("" if regex.endswith(" ") else _WORD_END)), repl)
    for regex, repl in SUBS
]
_MARKER = re.compile(r"^(?P<indent> *)if True:  # async\b.*$")
_HEADER = (
    "# Generated from {source} by scripts/unasync.py: do not edit.\n"
    "# Edit the source and run `python scripts/unasync.py` (CI's `--check` fails on drift).\n"
)


class UnasyncError(Exception):
    """The async source cannot be turned into sync code (a malformed ``if True:`` block)."""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blocks(lines: list[str]) -> Iterable[str]:
    """``lines`` with each ``if True:  # async`` block replaced by its ``else`` body."""
    i = 0
    while i < len(lines):
        found = _MARKER.match(lines[i].rstrip("\n"))
        if found is None:
            yield lines[i]
            i += 1
            continue
        depth = len(found["indent"])
        i += 1
        i, body = _body(lines, i, depth)
        if not body:
            raise UnasyncError(f"line {i}: an `if True:  # async` block with no body")
        if i < len(lines) and lines[i].strip() == "else:" and _indent(lines[i]) == depth:
            i, other = _body(lines, i + 1, depth)
            if not other:
                raise UnasyncError(f"line {i}: an `else:` with no body")
            for line in _blocks(other):
                yield line[4:] if line.strip() else line
        elif i < len(lines) and lines[i].lstrip().startswith(("elif", "else")):
            raise UnasyncError(f"line {i + 1}: only `else:` may follow `if True:  # async`")


def _body(lines: list[str], i: int, depth: int) -> tuple[int, list[str]]:
    """(the index after the block starting at ``i``, the block's lines): the lines
    indented deeper than ``depth``, and blank lines between them."""
    body: list[str] = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > depth):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():  # trailing blank lines belong to what follows
        body.pop()
        i -= 1
    return i, body


def unasync_line(line: str, used: set[int]) -> str | None:
    """``line`` with every replacement applied (None: the line is dropped)."""
    for index, (regex, repl) in enumerate(_COMPILED):
        if regex.search(line) is None:
            continue
        used.add(index)
        if repl is None:
            return None
        line = regex.sub(repl, line)
    return line


def unasync_source(text: str, source: str, used: set[int]) -> str:
    """The sync module for the async module ``text`` (not yet formatted)."""
    out = [_HEADER.format(source=source)]
    for line in _blocks(text.splitlines(keepends=True)):
        converted = unasync_line(line, used)
        if converted is not None:
            out.append(converted)
    return "".join(out)


def ruff_format(text: str, filename: str) -> str:
    """``text`` as ``ruff format`` (the project's settings) would write it."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", filename, "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise UnasyncError(f"ruff format failed on the sync {filename}:\n{proc.stderr}")
    return proc.stdout


def expected(root: Path, used: set[int]) -> dict[Path, str]:
    """Every sync module (path relative to ``root``) and the text it should have."""
    wanted: dict[Path, str] = {}
    for async_dir, sync_dir in PAIRS:
        for source in sorted((root / async_dir).glob("*.py")):
            if source.name == "__init__.py":  # each package says what it is itself
                continue
            rel = source.relative_to(root)
            target = sync_dir / source.name
            text = unasync_source(source.read_text(), rel.as_posix(), used)
            wanted[target] = ruff_format(text, target.as_posix())
    return wanted


def stale(root: Path, wanted: dict[Path, str]) -> list[str]:
    """What differs between the sync modules on disk and ``wanted`` (empty: current)."""
    problems: list[str] = []
    for async_dir, sync_dir in PAIRS:
        for path in sorted((root / sync_dir).glob("*.py")):
            if path.name != "__init__.py" and path.relative_to(root) not in wanted:
                problems.append(f"{path.relative_to(root)}: no async source in {async_dir}")
    for target, text in wanted.items():
        path = root / target
        have = path.read_text() if path.exists() else ""
        if have != text:
            diff = difflib.unified_diff(
                have.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{target} (on disk)",
                f"{target} (generated)",
            )
            problems.append("".join(diff) or f"{target}: missing")
    return problems


def unused(used: set[int]) -> list[str]:
    """The replacements no module used."""
    return [SUBS[i][0] for i in range(len(SUBS)) if i not in used]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    args = parser.parse_args(argv)
    used: set[int] = set()
    try:
        wanted = expected(ROOT, used)
    except UnasyncError as exc:
        print(f"unasync: {exc}", file=sys.stderr)
        return 1
    if args.check:
        problems = stale(ROOT, wanted)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("unasync: the sync modules are stale: run python scripts/unasync.py")
    else:
        problems = []
        for target, text in wanted.items():
            path = ROOT / target
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"unasync: wrote {target}")
    if left := unused(used):
        print(f"unasync: replacements no module uses (remove them): {left}", file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
