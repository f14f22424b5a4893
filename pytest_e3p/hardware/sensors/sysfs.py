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
    """A numeric sysfs value, read once; a missing file or garbage is a SensorFault naming the file."""
    attr = Attribute(p)
    try:
        return attr.read_number()
    finally:
        attr.close()


class Attribute:
    """A sysfs attribute kept open and re-read with pread at offset 0, as a sampler needs 100 times a
    second: about 9 us a read instead of 140 us for open/read/close (scripts/bench_sampling.py).
    When the device goes away the kernel fails the read (ENODEV), which is a SensorFault."""

    def __init__(self, p: Path):
        self.path = p
        self._fd: int | None = None

    def read_number(self) -> float:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            raw = os.pread(self._fd, 64, 0)
        except FileNotFoundError:
            raise SensorFault(f"{self.path} vanished during the run") from None
        except PermissionError:
            raise
        except OSError as exc:
            raise SensorFault(f"{self.path} cannot be read any more ({exc.strerror})") from None
        text = raw.decode(errors="replace").strip()
        try:
            return float(text)
        except ValueError:
            raise SensorFault(f"{self.path} returned {text[:40]!r}, not a number") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
