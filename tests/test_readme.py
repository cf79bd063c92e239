"""The README's runnable snippets keep working."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    """The first two code blocks are the setup+demo command and the test command."""
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert "python -m svcclient demo" in commands[0]
    assert commands[1].strip() == "python -m pytest"


def test_testing_section_snippet_runs() -> None:
    """The 'Testing your code' example passes as written."""
    block = next(b for b in _blocks() if "mock_service" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_breaker_snippet_runs_offline() -> None:
    """The opossum-style breaker example works around a failing callable."""
    block = next(b for b in _blocks() if "@breaker" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    breaker = namespace["breaker"]
    assert namespace["call_user_service"] is breaker


def test_async_fallback_snippet_runs_offline() -> None:
    """The async fallback example answers a call every pod fails with the fallback's 200."""
    block = next(b for b in _blocks() if "cached_user" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["lookup"] is not None
