"""Small text helpers shared by every layer: the first line of an error, and a name made safe for a
file name or an HTML id."""

from __future__ import annotations

import re


def first_line(value: object, limit: int | None = None) -> str:
    """The first line of str(value) (an exception's message, a command's output), stripped of the
    blank lines around it and cut to `limit` characters; "" when there is none."""
    lines = str(value).strip().splitlines()
    return lines[0].strip()[:limit] if lines else ""


def error_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one line, "TypeName: first line of its message": what a skip reason or a
    failed case shows, without the traceback or the advice some libraries append."""
    return f"{type(exc).__name__}: {first_line(exc, limit)}"


def slug(text: str, keep: str = "-_") -> str:
    """`text` made safe for a file name or an HTML id: every character other than an ASCII letter, a
    digit or one of `keep` becomes "_"."""
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]", "_", text)
