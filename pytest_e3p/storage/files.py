"""Reading and writing the project's files: every results, baseline and history file is read here
(parsed, upgraded to the current schema version and checked), and every file is written here,
atomically.

A reader sees the old file or the new one, never half of one: the bytes go to a temporary file in
the same folder, are synced, and the file is renamed over the old one (`write_atomic`), or linked to
a name nobody has taken yet (`exclusive=True`, for history files, which are never replaced).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there are not made concurrent by CI
    fcntl = None  # type: ignore[assignment]

from .schema import ResultsFileError, upgrade

_UMASK_LOCK = threading.Lock()  # reading the umask means setting it: two threads at once could leave it 0


@dataclass
class ResultsData:
    """A results file's JSON, upgraded to the current schema version, and the version it was written in."""

    data: dict[str, Any]
    source: str  # the path it was read from, for messages
    written_version: int


# The largest results file read: about 60,000 cases of a full run. A bigger file, a device (a link to
# /dev/zero) or a FIFO would exhaust memory or block the reader, so they are refused before reading.
MAX_RESULTS_BYTES = 256 * 2**20


def _check_readable_file(path: Path) -> None:
    """ResultsFileError unless `path` (links followed) is a regular file of at most MAX_RESULTS_BYTES."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ResultsFileError(f"{path} does not exist") from None
    except OSError as exc:  # a symlink loop (ELOOP), a permission denied on a parent folder...
        raise ResultsFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ResultsFileError(f"{path} is not a regular file (a device, FIFO or folder): not a results file")
    if st.st_size > MAX_RESULTS_BYTES:
        raise ResultsFileError(f"{path} is {st.st_size / 2**20:.0f} MiB, over the {MAX_RESULTS_BYTES // 2**20} MiB a results file may have: not a results file")


def read_results(path: str | Path) -> ResultsData:
    """Parse, upgrade and check a results, baseline or history file; ResultsFileError says in one
    line what is wrong with it."""
    path = Path(path)
    _check_readable_file(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(
            f"{path} is not UTF-8 text (byte {exc.start}): not a results file, or corrupt; restore it from version control or save a new one"
        ) from None
    except FileNotFoundError:
        raise ResultsFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise ResultsFileError(f"{path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{path} is not valid JSON (corrupt or truncated at line {exc.lineno}): restore it from version control or save a new one"
        ) from None
    except RecursionError:  # JSON nested thousands deep: Python's parser recurses per level
        raise ResultsFileError(f"{path} is JSON nested too deeply to be a results file") from None
    version = upgrade(data, str(path))
    return ResultsData(data, str(path), version)


def encode(data: dict[str, Any]) -> str:
    """The text of a results file: sorted keys, one value a line, so a refreshed baseline is a small diff."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _new_file_mode() -> int:
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, data: str | bytes, *, exclusive: bool = False) -> None:
    """Write to path so that readers see the old file or the new one, never half of one.

    exclusive: publish only under a name no file has (FileExistsError otherwise), never replacing one.
    The new file gets the mode of the file it replaces, or what the umask gives a new file (a
    temporary file is created 0600, and a rename would keep that); the folder is synced after the
    rename so the new name survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            _link_new(Path(tmp), path, payload)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone after a rename; the spare name after a link or a failure
    _sync_folder(path.parent)


def _link_new(tmp: Path, path: Path, payload: bytes) -> None:
    """Give the complete temporary file its final name, failing if that name exists."""
    try:
        os.link(tmp, path)  # atomic and exclusive: readers never see half a file
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links (some network and FAT mounts): exclusive create, then write.
        # A reader may glimpse a partial file here; history.load_history skips files that do not parse.
        with open(path, "xb") as out:
            out.write(payload)


def _sync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a folder that cannot be opened for sync (some network filesystems): the rename stands
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s hidden lock file (`.<name>.lock` beside it) while a
    read-modify-write of it runs: a second run waits, then reads the first's file, so neither run is
    lost. The lock file is left in place: removing it would let a waiting run lock a name that a third
    run has already replaced with a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, _new_file_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed, or when the process dies
        yield
    finally:
        os.close(fd)
