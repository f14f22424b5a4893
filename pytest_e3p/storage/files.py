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


# The largest results file read: about 50,000 cases (a case is 4-5 KiB). A results, baseline or history
# file is refused unread above it, so a huge or endless file cannot exhaust memory.
MAX_RESULTS_BYTES = 256 * 2**20

_KIND_OF_MODE = [
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
]


def _not_regular(mode: int) -> str:
    return next((name for test, name in _KIND_OF_MODE if test(mode)), "not a regular file")


def read_regular(path: str | Path, limit: int = MAX_RESULTS_BYTES, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (256 MiB); ResultsFileError otherwise.

    A file may be anything under a .json name: a device (a link to /dev/zero would be read until memory
    ran out), a FIFO (a blocking read would wait for a writer forever), or too large to be a results
    file; none of them is read. follow_symlinks: True for a file the user named (a baseline, whose link
    is theirs: what it points to must still be a regular file under the cap); False for the entries of a
    folder on a shared disk (the history), where a link is not followed at all."""
    path = Path(path)
    try:
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except FileNotFoundError:
        raise ResultsFileError(f"{path} does not exist") from None
    except OSError as exc:  # a symlink loop (ELOOP), a permission denied on a parent folder...
        raise ResultsFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ResultsFileError(f"{path} is not a regular file ({_not_regular(st.st_mode)}): not a results file")
    if st.st_size > limit:
        raise ResultsFileError(f"{path} is larger than the {limit >> 20} MiB a results file may be: not read")
    try:
        # O_NOFOLLOW and O_NONBLOCK: the entry may have been swapped for a link or a FIFO since the stat
        nofollow = 0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ResultsFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ResultsFileError(f"{path} is not a regular file ({_not_regular(st.st_mode)}): not a results file")
        data = fh.read(limit + 1)  # the file may have grown since the stat
    if len(data) > limit:
        raise ResultsFileError(f"{path} is larger than the {limit >> 20} MiB a results file may be: not read")
    return data


def read_results(path: str | Path, follow_symlinks: bool = True) -> ResultsData:
    """Parse, upgrade and check a results, baseline or history file (read_regular: a regular file
    under the size cap); ResultsFileError says in one line what is wrong with it."""
    source = str(path)
    raw = read_regular(path, follow_symlinks=follow_symlinks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(
            f"{source} is not UTF-8 text (byte {exc.start}): not a results file, or corrupt; restore it from version control or save a new one"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{source} is not valid JSON (corrupt or truncated at line {exc.lineno}): restore it from version control or save a new one"
        ) from None
    except RecursionError:  # JSON nested about a thousand deep: the parser recurses per level; no results file has ten
        raise ResultsFileError(f"{source} is not a results file (JSON nested too deeply)") from None
    version = upgrade(data, source)
    return ResultsData(data, source, version)


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
