"""Instructions per call, counted by callgrind: the one harness the benchmarks share.

Theory of operation
-------------------
A benchmark module runs itself as a child under valgrind (:func:`per_call`). In the child,
a :class:`Batches` runs each labelled workload twice, ``n`` and then ``2 n`` times, each
batch inside one call of ``functools.reduce``. Callgrind runs with ``--collect-atstart=no
--toggle-collect=functools_reduce --dump-after=functools_reduce``: it counts only inside
those calls and writes one dump per batch, so start-up, set-up and warm-up are never
counted, and ``(count(2 n) - count(n)) / n`` is the cost of one call with every per-batch
constant (the loop's entry, an event loop's start) cancelled out. The cyclic GC is
collected and frozen before each batch, so one workload's heap does not tax the next
one's collections; ``PYTHONHASHSEED=0``. Nothing else in the child may call
``functools.reduce`` while collection is on: the dumps and the labels must pair up.

A count is exact for one heap layout, not across layouts: CPython's method cache and
dict probes follow object addresses, so what was allocated before a workload (the code
loaded, earlier workloads) moves its count by up to some 0.3 %. ``per_call(layout=k)``
makes the child allocate ``k`` filler objects before anything else (:func:`pad_heap`): a
benchmark that counts each workload under a few layouts and reports the median (and the
spread) is not at the mercy of one lucky or unlucky layout.

Needs valgrind and a CPython with symbols (``functools_reduce``), such as pyenv's builds.
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "LABELS_ENV",
    "LAYOUT_ENV",
    "ROOT",
    "Batches",
    "batch",
    "constant_clock",
    "dumps",
    "have_valgrind",
    "pad_heap",
    "pair",
    "per_call",
]

ROOT = Path(__file__).resolve().parent.parent
LABELS_ENV = "SVC_CALLGRIND_LABELS"  # where the child writes its labels (set by per_call)
LAYOUT_ENV = "SVC_CALLGRIND_LAYOUT"  # filler objects the child allocates first (pad_heap)
_FILLER: list[object] = []  # pad_heap's objects, alive for the child's life
_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


# svcclient's clock in counted runs: constant, so no breaker or budget window rolls over
# inside a batch, and a C callable like the default ``time.monotonic`` (a Python function
# would charge each clock read some 400 instructions that production never pays).
constant_clock: Callable[[], float] = itertools.repeat(1000.0).__next__


def have_valgrind() -> bool:
    """True when valgrind is on PATH; else says how to get it (on stderr)."""
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return False
    return True


def pad_heap() -> None:
    """In the child, first thing: allocate ``$SVC_CALLGRIND_LAYOUT`` filler objects (strings
    of assorted sizes, plain objects, a class per 50), so every later object sits at other
    addresses: another heap layout (see the module docstring). 0 or unset: none."""
    k = int(os.environ.get(LAYOUT_ENV, "0") or 0)
    _FILLER.extend("x" * (i % 97) + str(i) for i in range(k))
    _FILLER.extend(object() for _ in range(k))
    _FILLER.extend(type(f"_Filler{i}", (), {}) for i in range(k // 50))


def batch(run: Callable[[], object]) -> None:
    """Run ``run`` inside one ``functools.reduce`` call: callgrind counts exactly that."""
    gc.collect()
    gc.freeze()
    functools.reduce(lambda _acc, _item: run(), (None,), None)
    gc.unfreeze()


class Batches:
    """The child's side: a batch of ``n`` and one of ``2 n`` per label, labels recorded.

    ``measure(label, make)`` calls ``make(count)`` outside the counted region (it may
    prepare keys, warm a cache) and then counts the ``run()`` it returns; ``write()``
    hands the labels to :func:`per_call` when the child is done.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self._labels: list[list[object]] = []

    def measure(self, label: str, make: Callable[[int], Callable[[], object]]) -> None:
        """Count ``make(n)()`` and then ``make(2 n)()``, one dump each."""
        for count in (self.n, 2 * self.n):
            batch(make(count))
            self._labels.append([label, count])

    def write(self) -> None:
        """Write the labels where :func:`per_call` reads them (``$SVC_CALLGRIND_LABELS``)."""
        Path(os.environ[LABELS_ENV]).write_text(json.dumps(self._labels))


def dumps(directory: Path) -> Iterator[int]:
    """Instruction totals of ``cg.out.1``, ``cg.out.2``, ... in order."""
    files = sorted(
        (p for p in directory.glob("cg.out.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
    )
    for path in files:
        found = _TOTALS.search(path.read_bytes())
        if found is None:
            raise RuntimeError(f"no totals in {path.name}")
        yield int(found.group(1))


def per_call(
    module: str, args: Sequence[str], n: int, timeout: float, layout: int = 0
) -> dict[str, float]:
    """Run ``python -m module *args`` under callgrind; instructions per call by label.

    The child measures with ``Batches(n)`` and calls ``write()``; the result keeps the
    order in which it measured. ``layout``: filler objects for the child's
    :func:`pad_heap` (a child that calls it first).
    """
    with tempfile.TemporaryDirectory(prefix="svc-cg-") as tmp:
        out = Path(tmp)
        labels_out = out / "labels.json"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=functools_reduce",
            "--dump-after=functools_reduce",
            f"--callgrind-out-file={out / 'cg.out'}",
            sys.executable,
            "-m",
            module,
            *args,
        ]
        env = {
            **os.environ,
            "PYTHONHASHSEED": "0",
            LABELS_ENV: str(labels_out),
            LAYOUT_ENV: str(layout),
        }
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind child failed:\n{proc.stderr[-3000:]}")
        labels = [(str(label), int(count)) for label, count in json.loads(labels_out.read_text())]
        counts = list(dumps(out))
    return pair(labels, counts, n)


def pair(labels: Sequence[tuple[str, int]], counts: Sequence[int], n: int) -> dict[str, float]:
    """``(count(2 n) - count(n)) / n`` for each label, from the child's labels and dumps."""
    if len(counts) != len(labels):
        raise RuntimeError(
            f"expected {len(labels)} callgrind dumps, got {len(counts)}: something else "
            "called functools.reduce, or this CPython has no symbol functools_reduce"
        )
    by_batch = dict(zip(labels, counts, strict=True))
    names = list(dict.fromkeys(label for label, _ in labels))
    return {name: (by_batch[(name, 2 * n)] - by_batch[(name, n)]) / n for name in names}
