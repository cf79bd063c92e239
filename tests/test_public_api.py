"""The curated public surface of svcclient."""

from __future__ import annotations

import importlib
import pkgutil

import svcclient


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and each name resolves."""
    names = list(svcclient.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.startswith("_"), n))
    for name in names:
        assert hasattr(svcclient, name), name


def test_public_objects_come_from_private_modules() -> None:
    """Implementation lives in _modules; the package root only re-exports."""
    for name in svcclient.__all__:
        obj = getattr(svcclient, name)
        module = getattr(obj, "__module__", "svcclient")
        assert module == "svcclient" or module.startswith("svcclient._"), (name, module)


def test_every_module_imports_cleanly() -> None:
    """No module has import-time errors or cycles."""
    for info in pkgutil.iter_modules(svcclient.__path__):
        importlib.import_module(f"svcclient.{info.name}")


def test_package_is_typed() -> None:
    """py.typed ships with the package (PEP 561)."""
    from importlib.resources import files

    assert files("svcclient").joinpath("py.typed").is_file()
