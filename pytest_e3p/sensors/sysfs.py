"""Reading sysfs files under a configurable root.

`E3P_SYSFS_ROOT` (default `/`) prefixes every absolute path the sysfs backends read, so the same code
reads a real board or a directory tree that a test or a user's fixture built.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import SensorFault


def root() -> Path:
    return Path(os.environ.get("E3P_SYSFS_ROOT", "/"))


def path(absolute: str) -> Path:
    """`/sys/...` under the configured root."""
    return root() / absolute.lstrip("/")


def read_text(p: Path) -> str:
    with open(p) as fh:
        return fh.read().strip()


def read_number(p: Path) -> float:
    """A numeric sysfs value; a missing file or garbage is a SensorFault naming the file."""
    try:
        text = read_text(p)
    except FileNotFoundError as exc:
        raise SensorFault(f"{p} vanished during the run") from exc
    except PermissionError:
        raise
    except OSError as exc:
        raise SensorFault(f"{p}: {exc}") from exc
    try:
        return float(text)
    except ValueError:
        raise SensorFault(f"{p} returned {text[:40]!r}, not a number") from None
