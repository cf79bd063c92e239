"""The curated public surface of svcclient."""

from __future__ import annotations

import importlib
import pkgutil
import types

import svcclient


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and each name resolves."""
    names = list(svcclient.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.startswith("_"), n))
    for name in names:
        assert hasattr(svcclient, name), name


def test_all_matches_the_public_names_of_the_package() -> None:
    """Every public, non-module name in dir(svcclient) is in __all__ and vice versa (dir
    lists the names imported on first access too)."""
    public = {
        name
        for name in dir(svcclient)
        if not name.startswith("_") and not isinstance(getattr(svcclient, name), types.ModuleType)
    }
    public.discard("annotations")  # from __future__
    assert public == set(svcclient.__all__) - {"__version__"}


def test_public_objects_come_from_private_modules() -> None:
    """Implementation lives in _modules; the package root only re-exports."""
    for name in svcclient.__all__:
        obj = getattr(svcclient, name)
        module = getattr(obj, "__module__", "svcclient")
        assert module == "svcclient" or module.startswith("svcclient._"), (name, module)


def test_every_module_and_subpackage_imports_cleanly() -> None:
    """Every module, subpackages included, imports on its own (no import-time errors)."""
    names = [info.name for info in pkgutil.walk_packages(svcclient.__path__, "svcclient.")]
    assert "svcclient._policies.breaker.machine" in names
    for name in names:
        importlib.import_module(name)


def test_package_is_typed() -> None:
    """py.typed ships with the package (PEP 561)."""
    from importlib.resources import files

    assert files("svcclient").joinpath("py.typed").is_file()
