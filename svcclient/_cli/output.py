"""Terminal output for the CLI: aligned tables, colour only on a TTY, and JSON.

Colour follows the common conventions: only when the stream is a terminal, never with
``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``; ``FORCE_COLOR`` forces it.

Everything printed goes through the redactor: table cells and JSON strings lose URL
credentials, query values and tokens (``svcclient._redact``), so a report can be pasted
into a ticket.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any, Final, TextIO

from .._redact import redact_text

__all__ = ["Cell", "Palette", "dumps", "ms", "palette_for", "table"]

_CODES: Final = {
    "ok": "32",  # green
    "warn": "33",  # yellow
    "bad": "31",  # red
    "dim": "2",
    "bold": "1",
    "head": "1;36",  # bold cyan
}


class Palette:
    """Wraps text in ANSI colours, or leaves it alone when colour is off."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def paint(self, style: str | None, text: str) -> str:
        """``text`` in ``style`` (``ok``, ``warn``, ``bad``, ``dim``, ``bold``, ``head``)."""
        if not self.enabled or not style or not text:
            return text
        return f"\x1b[{_CODES[style]}m{text}\x1b[0m"

    def ok(self, text: str) -> str:
        """Green."""
        return self.paint("ok", text)

    def warn(self, text: str) -> str:
        """Yellow."""
        return self.paint("warn", text)

    def bad(self, text: str) -> str:
        """Red."""
        return self.paint("bad", text)

    def dim(self, text: str) -> str:
        """Faint."""
        return self.paint("dim", text)

    def head(self, text: str) -> str:
        """A section heading."""
        return self.paint("head", text)


def palette_for(stream: TextIO) -> Palette:
    """Colour on for a terminal (see the module docstring for the overrides)."""
    env = os.environ
    if env.get("NO_COLOR"):
        return Palette(False)
    if env.get("FORCE_COLOR"):
        return Palette(True)
    isatty = getattr(stream, "isatty", None)
    return Palette(bool(isatty and isatty()) and env.get("TERM") != "dumb")


Cell = str | tuple[str, str | None]
"""A table cell: plain text, or ``(text, style)`` to colour it after alignment."""


def table(
    rows: Sequence[Sequence[Cell]],
    header: Sequence[str] | None = None,
    *,
    palette: Palette | None = None,
    indent: str = "  ",
) -> str:
    """Rows as left-aligned columns (widths from the plain text, so colour never skews them).

    >>> print(table([["a", "1"], ["bb", "22"]], header=["name", "n"]))
      name  n
      a     1
      bb    22
    """
    pal = palette or Palette(False)
    cells: list[list[tuple[str, str | None]]] = []
    if header is not None:
        cells.append([(h, "bold") for h in header])
    for row in rows:
        cells.append(
            [
                (redact_text(c[0]), c[1]) if isinstance(c, tuple) else (redact_text(c), None)
                for c in row
            ]
        )
    if not cells:
        return ""
    ncols = max(len(r) for r in cells)
    widths = [0] * ncols
    for r in cells:
        for i, (text, _) in enumerate(r):
            widths[i] = max(widths[i], len(text))
    lines = []
    for r in cells:
        parts = []
        for i, (text, style) in enumerate(r):
            pad = "" if i == len(r) - 1 else " " * (widths[i] - len(text))
            parts.append(pal.paint(style, text) + pad)
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)


def ms(seconds: float | None) -> str:
    """``0.00213`` -> ``"2.1 ms"``; under 1 ms in microseconds; None -> ``"-"``."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 10:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {redact_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    return redact_text(str(value))


def dumps(value: Any) -> str:
    """JSON for ``--json``: dataclasses, sets and tuples become objects and lists;
    infinite floats become ``"inf"`` (JSON has no infinity); strings are redacted."""
    return json.dumps(_plain(value), indent=2, sort_keys=False)
