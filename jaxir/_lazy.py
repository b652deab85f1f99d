"""PEP 562 lazy attributes for a package ``__init__``: names load from their submodule on first
use, so importing the package imports no jax (the command line's ``--help`` stays fast)."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, table: dict[str, str], namespace: dict):
    """``(__getattr__, __dir__)`` for the package ``package`` whose attribute ``name`` is
    ``getattr(import_module("." + table[name], package), name)``; a loaded value is cached in
    ``namespace`` (the package's ``globals()``). An unknown name is an `AttributeError`."""

    def __getattr__(name: str):
        mod = table.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{mod}", package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
