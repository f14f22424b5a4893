"""Run history: one results file per run, appended to a folder, never rewritten.

A history file is an ordinary results file (it loads with `results.load`) with three more top-level
keys: `commit` (sha, branch, dirty flag, where they came from), `machine` (host, OS, CPU, runner) and
`appended` (UTC time of the append). Its name starts with that time, so a plain sort of the folder
is the order of the runs:

    20250102T030405.123456Z-rtx3050-1a2b3c4d-5f6e7d.json
    (time)                  (device) (commit) (random)

The folder is read as untrusted: only regular files of at most 256 MiB (files.MAX_RESULTS_BYTES) are read (no link is
followed, no FIFO opened), every field must have its record's type, and `--prune-keep` deletes only
files with the name and fields append_run gives a run (plus temporary files of writes interrupted
over an hour ago); anything else is listed and left alone.

Several runners may write into one folder (a shared disk, a data branch): the random part makes
names unique, and the file is published with `files.write_atomic(exclusive=True)`, which fails
instead of replacing a file that exists, so no run can clobber another's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..text import slug, terminal_safe
from . import files, results

# CI variables tried in order when git cannot answer (no git, no .git, a tarball checkout).
# (sha variable, branch variables...) per CI system.
CI_COMMIT_VARS: list[tuple[str, str, tuple[str, ...]]] = [
    ("github", "GITHUB_SHA", ("GITHUB_HEAD_REF", "GITHUB_REF_NAME")),  # HEAD_REF: a PR's source branch
    ("gitlab", "CI_COMMIT_SHA", ("CI_COMMIT_REF_NAME", "CI_COMMIT_BRANCH")),
    ("buildkite", "BUILDKITE_COMMIT", ("BUILDKITE_BRANCH",)),
    ("circleci", "CIRCLE_SHA1", ("CIRCLE_BRANCH",)),
    ("azure", "BUILD_SOURCEVERSION", ("SYSTEM_PULLREQUEST_SOURCEBRANCH", "BUILD_SOURCEBRANCHNAME")),
    ("bitbucket", "BITBUCKET_COMMIT", ("BITBUCKET_BRANCH",)),
    ("travis", "TRAVIS_COMMIT", ("TRAVIS_PULL_REQUEST_BRANCH", "TRAVIS_BRANCH")),
    ("drone", "DRONE_COMMIT_SHA", ("DRONE_BRANCH",)),
    ("jenkins", "GIT_COMMIT", ("GIT_BRANCH", "BRANCH_NAME")),
]


@dataclass
class CommitInfo:
    """The code a run measured. `dirty` is None when unknown (CI variables say nothing about it)."""

    sha: str = ""
    branch: str = ""
    dirty: bool | None = None
    time: str = ""  # committer date, ISO 8601, when git is there
    subject: str = ""
    source: str = "unknown"  # "git", a CI name ("github", "gitlab", ...) or "unknown"

    @property
    def short(self) -> str:
        return self.sha[:8] if self.sha else "unknown"

    def label(self) -> str:
        """`1a2b3c4d (main, dirty)`: what a person reads in a list or on an axis."""
        extra = [self.branch] if self.branch else []
        if self.dirty:
            extra.append("dirty")
        return f"{self.short} ({', '.join(extra)})" if extra else self.short

    @classmethod
    def from_dict(cls, data: Any) -> CommitInfo:
        if not isinstance(data, dict):
            return cls()
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_info(cwd: str | Path | None = None, env: Mapping[str, str] | None = None) -> CommitInfo:
    """The commit of the working tree at cwd from git; else from the CI's variables; else unknown.

    git can be present and still refuse (a checkout owned by another user: "dubious ownership"),
    so any failure of git falls through to the CI variables."""
    cwd = Path(cwd or os.getcwd())
    env = os.environ if env is None else env
    sha = _git(["rev-parse", "HEAD"], cwd)
    if sha:
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or ""
        if branch == "HEAD":  # detached, as CI checkouts are: the CI knows the branch
            branch = next((env[v] for _, _, vs in CI_COMMIT_VARS for v in vs if env.get(v)), "")
        # no optional locks: a read that never writes the index, so it cannot collide with the user's git
        status = _git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd)
        meta = (_git(["show", "-s", "--format=%cI%n%s", "HEAD"], cwd) or "").split("\n", 1)
        return CommitInfo(
            sha=sha,
            branch=branch,
            dirty=None if status is None else bool(status),
            time=meta[0] if meta and meta[0] else "",
            subject=meta[1] if len(meta) > 1 else "",
            source="git",
        )
    for ci, sha_var, branch_vars in CI_COMMIT_VARS:
        if env.get(sha_var):
            branch = next((env[v] for v in branch_vars if env.get(v)), "")
            return CommitInfo(sha=env[sha_var], branch=branch.removeprefix("origin/"), source=ci)
    return CommitInfo()


def collect_machine_info() -> dict[str, Any]:
    """What ran the benchmark besides the device itself (the device identity is in `device`)."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "arch": platform.machine(),
        "processor": platform.processor() or "",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    runner = os.environ.get("RUNNER_NAME") or os.environ.get("CI_RUNNER_DESCRIPTION")
    if runner:
        info["runner"] = runner
    return info


def _slug(text: str, limit: int = 40, empty: str = "device") -> str:
    # "." is kept inside a name ("jetson-orin.nx") but never leads it: no hidden file, no ".."
    return slug(text, "_.-").strip("_.")[:limit] or empty


def _stamp(when: dt.datetime) -> str:
    # Fixed width with microseconds: lexical order of names is time order.
    return when.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def append_run(
    results_file: results.ResultsFile,
    folder: Path,
    machine_info: dict | None = None,
    *,
    commit: CommitInfo | None = None,
    when: dt.datetime | None = None,
) -> Path:
    """Write this run into folder as a new file and return its path; never overwrites a file.

    The commit is read from git in the current directory (else the CI's variables) unless given;
    `when` (default: now) is for tests that script a history."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    commit = commit if commit is not None else commit_info()
    machine = machine_info if machine_info is not None else collect_machine_info()
    when = when or dt.datetime.now(dt.timezone.utc)
    data = results_file.to_dict()
    data.update(
        commit=asdict(commit),
        machine=results.json_safe(machine),
        appended=when.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
    )
    text = files.encode(data)
    # every recorded string in the name is slugged: a CI sha or a device name may hold "/" or ".."
    device = _slug(str(results_file.device.get("name", "device")))
    sha = slug(commit.sha[:8], "-") or "nocommit"
    for _ in range(20):
        path = folder / f"{_stamp(when)}-{device}-{sha}-{secrets.token_hex(3)}.json"
        try:
            files.write_atomic(path, text, exclusive=True)
            return path
        except FileExistsError:
            continue  # another runner took this name in the same microsecond: draw again
    raise FileExistsError(f"could not find a free file name in {folder}")


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One history file: the run's results with its commit and machine."""

    path: Path
    time: str  # when it was appended (UTC, ISO 8601)
    commit: CommitInfo
    device: dict[str, Any]
    machine: dict[str, Any]
    protocol: dict[str, Any]
    cases: dict[str, dict[str, Any]]  # every field of each case (CaseResult.to_dict), old files upgraded
    written_version: int = results.SCHEMA_VERSION  # the schema version of the file

    @property
    def device_key(self) -> str:
        """The device as one string: its profile name and, where known, the hardware's name."""
        name = str(self.device.get("name", "?"))
        hw = (self.device.get("identity") or {}).get("name")
        return f"{name} ({hw})" if hw and hw != name else name

    def verdicts(self) -> Counter:
        return Counter(str(c.get("verdict") or "not compared") for c in self.cases.values())


# What an interrupted files.write_atomic leaves: mkstemp(prefix=".<name>.", suffix=".tmp") of a history
# file. Older than STALE_TMP_S it is no write under way (a write takes well under a second).
TMP_NAME = re.compile(r"\.\d{8}T\d{6}\.\d{6}Z-.+\.json\.[A-Za-z0-9_]+\.tmp")
STALE_TMP_S = 3600.0
# The name append_run gives a run: time, device, commit, random part.
RUN_NAME = re.compile(r"\d{8}T\d{6}\.\d{6}Z-.+-[0-9a-f]{6}\.json")


def read_results_file(path: str | Path, follow_symlinks: bool = False) -> results.ResultsFile:
    """A results, baseline or history file read like `results.load` (a regular file under the size
    cap, see files.read_regular), with every field's type checked: a malformed entry is one line."""
    rd = files.read_results(path, follow_symlinks=follow_symlinks)
    problem = _wrong_type(rd.data)
    if problem:
        raise results.ResultsFileError(f"{rd.source} is a results file with a malformed entry: {problem}; restore it from version control or save a new one")
    return results.from_data(rd)


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a record field's annotation ("float | None", "list[int]", ...);
    an annotation naming a record class (checked where it is read) passes anything."""
    annotation = annotation.strip()
    if "|" in annotation and "[" not in annotation.split("|")[0]:
        return any(_type_ok(value, part) for part in annotation.split("|"))
    if annotation == "None":
        return value is None
    if annotation in ("str", "Status", "Top1Source"):
        return isinstance(value, str)
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation.startswith("list["):
        inner = annotation[5:-1]
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if annotation.startswith("dict["):
        inner = annotation[5:-1].split(",", 1)[1]
        return isinstance(value, dict) and all(_type_ok(v, inner) for v in value.values())
    return True


_COMMIT_TYPES = {"sha": "str", "branch": "str", "dirty": "bool | None", "time": "str", "subject": "str", "source": "str"}


def _wrong_type(data: dict[str, Any]) -> str | None:
    """The first field of a run (or results) file whose JSON type is not its record's, or None.
    `schema.malformed` checks what the gate needs; the history readers (the dashboard, `history`)
    print and draw every field, where a list branch or a string batch size would be a traceback."""
    commit = data.get("commit", {})
    if not isinstance(commit, dict):
        return '"commit" must be an object'
    for key, annotation in _COMMIT_TYPES.items():
        if key in commit and not _type_ok(commit[key], annotation):
            return f"commit {key!r} must be of type {annotation}"
    for key in ("appended", "created"):
        if key in data and not isinstance(data[key], str):
            return f"{key!r} must be a string"
    if not isinstance(data.get("machine", {}), dict):
        return '"machine" must be an object'
    identity = data["device"].get("identity", {})
    if not isinstance(identity, dict) or not isinstance(identity.get("name", ""), str):
        return 'device "identity" must be an object with a string "name"'
    annotations = {f.name: str(f.type) for f in fields(results.CaseResult)}  # the case's schema
    for cid, case in data["cases"].items():
        for key, value in case.items():
            if key in annotations and not _type_ok(value, annotations[key]):
                return f"case {cid!r}: {key!r} must be of type {annotations[key]}, not {type(value).__name__}"
            if key == "image_size" and len(value) != 3:
                return f"case {cid!r}: 'image_size' must be [C, H, W]"
    return None


def read_run(path: Path) -> Run:
    """One history file, upgraded to the current schema version; results.ResultsFileError when it is
    not one (also when it is not a regular file, is over 256 MiB, or a field has the wrong type)."""
    rf = read_results_file(path)
    return Run(
        path=Path(path),
        time=str(rf.extra.get("appended") or rf.created),  # a plain results file copied in has no append time
        commit=CommitInfo.from_dict(rf.extra.get("commit")),
        device=rf.device,
        machine=rf.extra.get("machine") or {},
        protocol=rf.protocol,
        cases={cid: case.to_dict() for cid, case in rf.cases.items()},
        written_version=rf.written_version,
    )


def load_history(folder: str | Path) -> tuple[list[Run], list[str]]:
    """The runs of a folder, oldest first, and one line per file that could not be read."""
    runs, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            runs.append(read_run(path))
        except (results.ResultsFileError, OSError) as exc:
            problems.append(f"{path.name}: {exc}")
    runs.sort(key=lambda r: (r.time, r.path.name))
    return runs, problems


def is_run_file(run: Run) -> bool:
    """Whether a file is one that append_run wrote: its name has append_run's pattern and it holds the
    run's own fields (the append time and the commit). Only those are pruned: a results.json or a
    baseline copied into the folder is somebody else's file."""
    data_ok = bool(re.fullmatch(r"\d{4}-\d\d-\d\dT.+", run.time)) and run.path.name.startswith(_stamp_prefix(run.time))
    return bool(RUN_NAME.fullmatch(run.path.name)) and data_ok


def _stamp_prefix(appended: str) -> str:
    try:
        return _stamp(dt.datetime.fromisoformat(appended))
    except ValueError:
        return "\0"  # matches no name


@dataclass
class Pruned:
    """What `prune` removed (or would, dry_run) and what it left alone."""

    runs: list[Path]
    stale_tmp: list[Path]  # temporary files of interrupted writes, older than STALE_TMP_S
    not_runs: list[Path]  # readable results files that append_run did not write


def prune(folder: str | Path, keep: int, dry_run: bool = False, now: float | None = None) -> list[Path]:
    """Delete all but the newest `keep` runs of each device; returns the run files removed.
    `prune_folder` says also what was left alone and removes stale temporary files."""
    return prune_folder(folder, keep, dry_run, now).runs


def prune_folder(folder: str | Path, keep: int, dry_run: bool = False, now: float | None = None) -> Pruned:
    """Delete all but the newest `keep` runs of each device, only files append_run wrote
    (`is_run_file`), and the temporary files an interrupted write left (older than an hour)."""
    if keep < 1:
        raise ValueError("--prune-keep must be at least 1")
    folder = Path(folder)
    runs, _ = load_history(folder)
    by_device: dict[str, list[Run]] = defaultdict(list)
    not_runs = []
    for run in runs:
        if is_run_file(run):
            by_device[run.device_key].append(run)
        else:
            not_runs.append(run.path)
    removed = []
    for device_runs in by_device.values():
        for run in device_runs[:-keep]:  # oldest first
            if not dry_run:
                run.path.unlink(missing_ok=True)  # another pruner may have been first
            removed.append(run.path)
    stale = []
    now = time.time() if now is None else now
    for path in sorted(folder.glob(".*.tmp")):
        try:
            st = os.lstat(path)
        except OSError:
            continue  # its write finished (renamed) meanwhile
        if TMP_NAME.fullmatch(path.name) and stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TMP_S:
            if not dry_run:
                path.unlink(missing_ok=True)
            stale.append(path)
    return Pruned(removed, stale, not_runs)


# -- the command -----------------------------------------------------------------------------


def _verdict_text(counts: Counter) -> str:
    order = ["regressed", "improved", "inconclusive", "unchanged", "not compared"]
    keys = sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "-"


def history_table(runs: list[Run]) -> str:
    from tabulate import tabulate

    rows = [[r.time[:19].replace("T", " "), r.commit.label(), r.device_key, len(r.cases), _verdict_text(r.verdicts()), r.path.name] for r in runs]
    rows = [[terminal_safe(cell) for cell in row] for row in rows]  # recorded strings: shown, never obeyed
    return tabulate(rows, headers=["time (UTC)", "commit", "device", "cases", "verdicts", "file"], tablefmt="simple", disable_numparse=True)


def _history_command(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {terminal_safe(folder)} is not a folder", file=sys.stderr)
        return 2
    if args.prune_keep is not None:
        try:
            pruned = prune_folder(folder, args.prune_keep, dry_run=args.dry_run)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(pruned.runs)} run(s), keeping the newest {args.prune_keep} per device")
        for path in pruned.runs:
            print(f"  {terminal_safe(path.name)}")
        if pruned.stale_tmp:
            print(f"{verb} {len(pruned.stale_tmp)} stale temporary file(s) older than 1 hour (left by interrupted writes)")
        for path in pruned.not_runs:
            print(f"  {terminal_safe(path.name)}: not a run file (left alone)")
    runs, problems = load_history(folder)
    if args.device:
        runs = [r for r in runs if args.device in (r.device.get("name"), r.device_key)]
    for p in problems:
        print(f"skipped: {terminal_safe(p)}", file=sys.stderr)
    upgraded = sum(r.written_version != results.SCHEMA_VERSION for r in runs)
    if upgraded:
        print(
            f"note: {upgraded} run(s) written in an older schema version, read as version {results.SCHEMA_VERSION} (the files are unchanged)", file=sys.stderr
        )
    print(history_table(runs) if runs else f"no runs in {terminal_safe(folder)}")
    return 0


def add_cli(subparsers: Any) -> None:
    """Add `history DIR [--prune-keep N]` to cli.main's subcommands."""
    p = subparsers.add_parser("history", help="list the runs of a history folder (--e3p-history); prune old ones")
    p.add_argument("folder", metavar="DIR", help="the history folder (--e3p-history)")
    p.add_argument("--device", default="", help="only this device (profile name; default: every device)")
    p.add_argument(
        "--prune-keep",
        type=int,
        default=None,
        metavar="N",
        help="delete all but the newest N runs of each device (only files --e3p-history wrote), and temporary files of interrupted writes older than 1 hour; default: delete nothing",
    )
    p.add_argument("--dry-run", action="store_true", help="with --prune-keep: say what would be deleted, delete nothing")
    p.set_defaults(run=_history_command)
