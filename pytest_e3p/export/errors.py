"""The two ways an export fails that its line explains: a library not installed, or a cause with its fix."""

from __future__ import annotations

import importlib
from types import ModuleType


class ExportError(Exception):
    """An export that could not be written; the message names the cause and the fix, in one line."""


class MissingExtra(ExportError):
    """The export's library is not installed: the extra that brings it."""

    def __init__(self, library: str, extra: str):
        super().__init__(f"needs {library}: pip install 'pytest-e3p[{extra}]'")
        self.library, self.extra = library, extra


def require(module: str, library: str, extra: str) -> ModuleType:
    """Import an optional library, or MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(library, extra) from None
