"""``svcclient config check FILE``: validate a TOML config and show the effective settings.

``load_config`` stops at the first error. To report *every* error, the check builds each
service on its own, and after an error drops the offending key and builds again (a
bounded loop), so one run lists all the bad keys of all services. File errors and
environment-override errors are told apart, so a user knows which one to fix.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from .._config.env import override_variable
from .._config.model import ServiceConfig, deep_merge
from .._exceptions import ConfigError
from .._redact import redact_text, redact_value
from .output import Cell, Palette, dumps, palette_for, table

__all__ = ["ConfigProblem", "ServiceReport", "check_file", "flatten", "run"]

_MAX_ROUNDS = 64  # more errors than this in one service is not worth listing


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One invalid setting: where it came from (``file`` or ``env``), service, key, value."""

    source: str
    service: str | None
    key: str
    value: Any
    reason: str


@dataclass(slots=True)
class ServiceReport:
    """The effective configuration of one service and where each value came from."""

    name: str
    settings: dict[str, Any]
    origins: dict[str, str]


def flatten(config: ServiceConfig) -> dict[str, Any]:
    """``{"timeout": 2.0, "retry.attempts": 3, "breaker": None, ...}`` (fallback left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name == "fallback":
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for sub in dataclasses.fields(value):
                if sub.init:
                    out[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            out[f.name] = value
    return out


def _drop(data: dict[str, Any], key: str) -> bool:
    """Remove ``key`` (``"retry.attempts"`` or ``"timeout"``) from a service table."""
    head, _, rest = key.partition(".")
    if rest and isinstance(data.get(head), dict) and rest in data[head]:
        del data[head][rest]
        return True
    if head in data:
        del data[head]
        return True
    return False


def _env_var(name: str, key: str) -> str:
    return override_variable(name, key)


def _build_file(name: str, table_: dict[str, Any]) -> tuple[ServiceConfig, list[ConfigProblem]]:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in table_.items()}
    problems: list[ConfigProblem] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return ServiceConfig.from_mapping(name, data), problems
        except ConfigError as exc:
            problems.append(ConfigProblem("file", name, exc.key, exc.value, exc.reason))
            if not _drop(data, exc.key):
                break
    return ServiceConfig(name), problems


def _build_env(
    name: str, base: ServiceConfig, environ: Mapping[str, str]
) -> tuple[ServiceConfig, list[ConfigProblem]]:
    env = dict(environ)
    problems: list[ConfigProblem] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return ServiceConfig.from_env(name, base, env), problems
        except ConfigError as exc:
            var = exc.key if exc.key in env else _env_var(name, exc.key)
            problems.append(ConfigProblem("env", name, var, exc.value, exc.reason))
            if env.pop(var, None) is None:
                break
    return base, problems


def check_file(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[list[ServiceReport], list[ConfigProblem]]:
    """Validate ``path``; return the effective config per service and every problem found."""
    env = os.environ if environ is None else environ
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        return [], [ConfigProblem("file", None, "path", os.fspath(path), str(exc.strerror))]
    except tomllib.TOMLDecodeError as exc:
        return [], [ConfigProblem("file", None, "path", os.fspath(path), f"invalid TOML: {exc}")]
    problems: list[ConfigProblem] = []
    for key in sorted(set(data) - {"defaults", "services"}):
        problems.append(
            ConfigProblem(
                "file", None, key, data[key], "unknown top-level table (defaults, services)"
            )
        )
    defaults = data.get("defaults", {})
    services = data.get("services", {})
    if not isinstance(defaults, dict):
        problems.append(ConfigProblem("file", None, "defaults", defaults, "must be a table"))
        defaults = {}
    if not isinstance(services, dict):
        problems.append(ConfigProblem("file", None, "services", services, "must be a table"))
        services = {}
    if not services and not problems:
        problems.append(ConfigProblem("file", None, "services", {}, "no [services.<name>] table"))
    reports: list[ServiceReport] = []
    for name, entry in services.items():
        if not isinstance(entry, dict):
            problems.append(ConfigProblem("file", name, "services", entry, "must be a table"))
            continue
        from_file, file_problems = _build_file(name, deep_merge(defaults, entry))
        effective, env_problems = _build_env(name, from_file, env)
        problems += file_problems + env_problems
        reports.append(_report(name, from_file, effective))
    return reports, problems


def _report(name: str, from_file: ServiceConfig, effective: ServiceConfig) -> ServiceReport:
    default = flatten(ServiceConfig(name))
    file_values = flatten(from_file)
    settings = flatten(effective)
    origins = {}
    for key, value in settings.items():
        if value != file_values.get(key):
            origins[key] = "env"
        elif value != default.get(key):
            origins[key] = "file"
        else:
            origins[key] = "default"
    return ServiceReport(name, settings, origins)


def _runs(numbers: list[int]) -> str:
    """``[429, 500, 501, ..., 599]`` -> ``"429, 500-599"`` (status-code sets are long)."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def show(value: Any) -> str:
    """A setting as a user would write it."""
    if isinstance(value, frozenset | set):
        items = sorted(value)
        if items and all(isinstance(v, int) for v in items):
            return f"[{_runs(items)}]"
        return "[" + ", ".join(str(v) for v in items) + "]"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(
    path: str, reports: list[ServiceReport], problems: list[ConfigProblem], pal: Palette
) -> str:
    """The human-readable report."""
    lines: list[str] = []
    rows: list[list[Cell]]
    if problems:
        lines.append(pal.bad(f"{path}: {len(problems)} error(s)"))
        rows = [
            [p.source, p.service or "-", p.key, redact_value(p.value), (p.reason, "bad")]
            for p in problems
        ]
        lines.append(table(rows, ["source", "service", "key", "value", "reason"], palette=pal))
        return redact_text("\n".join(lines))
    lines.append(pal.ok(f"{path}: OK, {len(reports)} service(s)"))
    for report in reports:
        lines.append("")
        lines.append(pal.head(f"[services.{report.name}]"))
        rows = []
        for key, value in report.settings.items():
            origin = report.origins[key]
            style = {"env": "warn", "file": "ok"}.get(origin, "dim")
            rows.append([key, show(value), (origin, style)])
        lines.append(table(rows, ["key", "value", "from"], palette=pal))
    return redact_text("\n".join(lines))


def run(path: str, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """``config check``: print the report; 0 when valid, 1 on any error."""
    stream = out or sys.stdout
    reports, problems = check_file(path)
    if as_json:
        doc = {
            "file": path,
            "ok": not problems,
            "errors": problems,
            "services": {r.name: {"settings": r.settings, "from": r.origins} for r in reports},
        }
        print(dumps(doc), file=stream)
    else:
        print(render(path, reports, problems, palette_for(stream)), file=stream)
    return 1 if problems else 0
