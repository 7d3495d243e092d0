"""Lazy package exports (PEP 562): a package names what it offers, and each name's module is
imported on first use, so `catdog --help` does not pay for numpy, Keras or TensorFlow."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, table: dict[str, list[str]]):
    """(__getattr__, __dir__, __all__) for `package` from {module: [names it exports]}."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, sorted(where)
