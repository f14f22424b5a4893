"""A str Enum whose members print, format and serialise as their value.

Python 3.11's enum.StrEnum does this; the project still runs on 3.10, where a `(str, Enum)` member
prints as `Status.OK` in an f-string. Records hold these members, and their files and tables must
read exactly as the plain strings they replace ("ok", "measured", "regressed").
"""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """Members are str: they compare equal to their value, and json writes the value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
