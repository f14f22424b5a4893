"""Small text helpers shared by every layer: the first line of an error, and a name made safe for a
file name or an HTML id."""

from __future__ import annotations

import re
import unicodedata


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


def _escape_char(ch: str) -> str:
    code = ord(ch)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: object) -> str:
    """A recorded string (a branch name, a model, a file name) made safe to print: every control
    character (C0, DEL, C1, and the format characters such as bidi overrides that reorder what a
    terminal shows) is written as its Python escape, so `\\x1b[2J` in a branch name is read, not obeyed."""
    return "".join(_escape_char(ch) if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in str(text))


def markdown_cell(text: object) -> str:
    """A recorded string made safe inside a Markdown table cell or heading: `&`, `<` and `>` as
    entities (no raw HTML reaches a renderer), `|` escaped (it would end the cell), line breaks as
    spaces (they would end the row) and other control characters escaped as in `terminal_safe`."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return terminal_safe(re.sub(r"\r\n|[\r\n]", " ", s))
