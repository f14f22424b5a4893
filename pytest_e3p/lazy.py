"""Lazy exports of a package: a subpackage's __init__ names its public interface, while what needs
torch or timm is imported on first use, so `import pytest_e3p` and `pytest --help` stay cheap."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lazy_attribute(package: str, where: Mapping[str, str], name: str) -> Any:
    """`name` from the submodule of `package` that `where` maps it to; AttributeError for any other
    name, so `from package import submodule` still finds the submodule. Nothing is cached: a test
    that assigns the package attribute replaces it, and the import system keeps the submodules."""
    if name in where:
        return getattr(importlib.import_module(f".{where[name]}", package), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
