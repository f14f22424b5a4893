"""The catalogue of bad inputs and faults, tried as a user meets them (issue 25).

Each case runs in a fresh folder, by the plugin (`pytest` on a one-test benchmark file, random
weights, short rounds) or by a command (`python -m pytest_e3p ...`), under a time limit. One row per
case: what was tried, the exit status, the last line the run said about it, and whether the outcome is
what a user must get (one clear line, no traceback, nothing lost, no code run, no hang). Exit status 1
when any case misses.

    python scripts/audit_inputs.py             # every case (about 10 min on 2 cores)
    python scripts/audit_inputs.py -k history  # the cases whose name contains "history"
    python scripts/audit_inputs.py --list

Cases that need what this machine may not allow (a small tmpfs for the full disk needs root) say
"not run" and why, and do not count as a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import runpy
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PY = sys.executable
BENCH = "def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n"
ROOT = Path(__file__).resolve().parent.parent
# the short options of the test suite's plugin runs (random weights, no idle window, 50 ms rounds),
# read from their one definition, and one small model
SHORT = [*runpy.run_path(str(ROOT / "tests" / "fakes" / "runs.py"))["SHORT"], "--e3p-models=levit_128s", "-p", "no:randomly"]
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR: a bad option or input named at the start
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED: SIGINT, and SIGTERM handled the same way


@dataclass
class Outcome:
    rc: int | None  # None: killed at the time limit
    output: str
    seconds: float


@dataclass
class Case:
    name: str
    what: str
    run: Callable[[Path], Outcome]  # sets up in the folder, runs, returns what happened
    check: Callable[[Path, Outcome], str]  # "" when the outcome is right, else what is wrong
    notes: list[str] = field(default_factory=list)


class NotRun(Exception):
    """The case needs something this machine does not allow; the message says what."""


def _run(argv: list[str], cwd: Path, timeout_s: float = 300, env: dict[str, str] | None = None) -> Outcome:
    t0 = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, env=full_env)
        return Outcome(done.returncode, done.stdout + done.stderr, time.monotonic() - t0)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        return Outcome(None, out, time.monotonic() - t0)


def pytest_run(folder: Path, *options: str, timeout_s: float = 300, env: dict[str, str] | None = None) -> Outcome:
    (folder / "test_b.py").write_text(BENCH)
    return _run([PY, "-m", "pytest", "test_b.py", "-q", *SHORT, *options], folder, timeout_s, env)


def command(folder: Path, *args: str, timeout_s: float = 120) -> Outcome:
    return _run([PY, "-m", "pytest_e3p", *args], folder, timeout_s)


def _said(out: Outcome) -> str:
    """The most telling line: pytest's error detail or a refusal, skip or warning line if there is
    one (never a separator line of _ = -), else the last line."""
    progress = re.compile(r"^[.EFsxX]+\s*\[\s*\d+%\]$")  # pytest -q's dots: "E   [100%]" is no error detail
    lines = [
        ln.strip()
        for ln in out.output.splitlines()
        if ln.strip() and not ln.strip().startswith(("_", "=", "-", "[e3p] pass ")) and not progress.match(ln.strip())
    ]
    for starts in (("ERROR:", "error:", "E "), ("SKIPPED", "[e3p]", "warning")):
        for line in lines:
            if line.startswith(starts):
                return line.removeprefix("E ").strip()
    keys = ("refuse", "not written", "skipped", "not a ", "cannot")
    for line in lines:
        if any(k in line.lower() for k in keys):
            return line
    return lines[-1] if lines else ""


def clean(out: Outcome, rcs: set[int] | None = None) -> str:
    """The common demands: finished in time, no traceback, an exit status among rcs."""
    if out.rc is None:
        return f"still running after {out.seconds:.0f} s (hang)"
    if "Traceback (most recent call last)" in out.output or "INTERNALERROR" in out.output:
        return "a traceback reached the user"
    if rcs is not None and out.rc not in rcs:
        return f"exit status {out.rc}, expected {sorted(rcs)}"
    return ""


def both(*problems: str) -> str:
    return "; ".join(p for p in problems if p)


# -- datasets, checkpoints, sizes ------------------------------------------------------------------


class _RunsCode:
    """A pickle that runs a shell command when loaded: what a hostile CIFAR-10 batch holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_cifar(folder: Path) -> Outcome:
    batches = folder / "data" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ("test_batch", "data_batch_1", "batches.meta"):
        with open(batches / name, "wb") as fh:
            pickle.dump({b"data": _RunsCode(folder / "CODE_RAN"), b"labels": [0]}, fh, protocol=2)
    return pytest_run(folder, "--e3p-dataset=cifar10=data")


def _check_hostile_cifar(folder: Path, out: Outcome) -> str:
    ran = "the pickle's command ran" if (folder / "CODE_RAN").exists() else ""
    named = "" if "test_batch" in out.output or "batches.meta" in out.output else "no line names the file"
    return both(ran, clean(out), named, "" if out.rc != 0 else "the run passed on a hostile dataset")


def _png_bomb(folder: Path) -> Outcome:
    from PIL import Image

    cls = folder / "data" / "cat"
    cls.mkdir(parents=True)
    Image.new("1", (20000, 20000)).save(cls / "huge.png")  # 400 Mpixel: over 2x PIL's limit, a bomb
    Image.new("RGB", (32, 32)).save(cls / "small.png")
    return pytest_run(folder, "--e3p-dataset=folder=data")


def _check_names(*needles: str) -> Callable[[Path, Outcome], str]:
    def check(folder: Path, out: Outcome) -> str:
        missing = [n for n in needles if n not in out.output]
        return both(clean(out), f"no line names {', '.join(missing)}" if missing else "")

    return check


def _folder_link_loop(folder: Path) -> Outcome:
    from PIL import Image

    cls = folder / "data" / "cat"
    cls.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(cls / "a.png")
    os.symlink("loop2.png", cls / "loop1.png")
    os.symlink("loop1.png", cls / "loop2.png")
    os.symlink("..", cls / "up")  # a directory link back to the dataset root
    return pytest_run(folder, "--e3p-dataset=folder=data", timeout_s=180)


def _custom_class_checkpoint(folder: Path) -> Outcome:
    import torch

    ckpts = folder / "ckpts"
    ckpts.mkdir()
    torch.save({"state_dict": {}, "config": argparse.Namespace(lr=0.1)}, ckpts / "levit_128s_synthetic.pth")
    (folder / "test_b.py").write_text(BENCH)
    options = [o for o in SHORT if o != "--e3p-weights=random"]
    return _run([PY, "-m", "pytest", "test_b.py", "-q", *options, "--e3p-checkpoints=ckpts"], folder)


class _CallsFunction:
    """A checkpoint object that reduces to a function call (harmless here: os.getpid), the form torch's
    weights-only loader refuses as a blocked module global, with its own advice to load unsafely."""

    def __reduce__(self):
        return (os.getpid, ())


def _function_checkpoint(folder: Path) -> Outcome:
    import torch

    ckpts = folder / "ckpts"
    ckpts.mkdir()
    torch.save({"state_dict": {}, "x": _CallsFunction()}, ckpts / "levit_128s_synthetic.pth")
    (folder / "test_b.py").write_text(BENCH)
    options = [o for o in SHORT if o != "--e3p-weights=random"]
    return _run([PY, "-m", "pytest", "test_b.py", "-q", *options, "--e3p-checkpoints=ckpts"], folder)


def _check_function_checkpoint(folder: Path, out: Outcome) -> str:
    unsafe = "advises loading unsafely" if "weights_only set to False" in out.output or "likely succeed" in out.output else ""
    named = "" if "getpid" in out.output else "the blocked global (posix.getpid) is not named"
    return both(clean(out), unsafe, named)


def _check_checkpoint(folder: Path, out: Outcome) -> str:
    unsafe = "advises loading unsafely" if "weights_only set to False" in out.output or "likely succeed" in out.output else ""
    named = "" if "Namespace" in out.output else "the blocked global (argparse.Namespace) is not named"
    return both(clean(out), unsafe, named)


# -- options ----------------------------------------------------------------------------------------


def _usage(*options: str) -> Callable[[Path], Outcome]:
    return lambda folder: pytest_run(folder, *options, timeout_s=120)


def _check_usage(needle: str) -> Callable[[Path, Outcome], str]:
    def check(folder: Path, out: Outcome) -> str:
        return both(clean(out, {USAGE_ERROR}), "" if needle in out.output else f"no line names {needle!r}")

    return check


def _check_threads_warning(folder: Path, out: Outcome) -> str:
    warned = any("1000" in line and ("cpu" in line.lower() or "core" in line.lower()) for line in out.output.splitlines())
    return both(clean(out), "" if warned else "no warning that 1000 threads exceed the CPUs")


def _history_loop(folder: Path) -> Outcome:
    os.symlink("loop", folder / "loop")
    return pytest_run(folder, "--e3p-history=loop/runs", timeout_s=120)


def _check_history_loop(folder: Path, out: Outcome) -> str:
    early = "" if out.seconds < 60 and "passed" not in out.output else "the loop was found only after the run"
    return both(clean(out, {USAGE_ERROR}), early)


# -- history, dashboard, compare ----------------------------------------------------------------------

_SEED: dict[str, Path] = {}


def _seed_history(folder: Path) -> Path:
    """One real run's history file (made once, copied into each case's folder)."""
    if "run" not in _SEED:
        seed = Path(tempfile.mkdtemp(prefix="e3p-audit-seed-"))
        out = pytest_run(seed, "--e3p-history=hist", "--e3p-results=results.json", "--e3p-save-baseline=baseline.json")
        files = sorted((seed / "hist").glob("*.json"))
        if out.rc != 0 or not files:
            raise NotRun(f"the seed run failed (exit {out.rc}): {_said(out)}")
        _SEED["run"], _SEED["results"], _SEED["baseline"] = files[0], seed / "results.json", seed / "baseline.json"
    hist = folder / "hist"
    hist.mkdir()
    return Path(shutil.copy(_SEED["run"], hist / _SEED["run"].name))


def _variant_of(run: Path, name: str, change: Callable[[dict], None]) -> None:
    data = json.loads(run.read_text())
    change(data)
    (run.parent / name).write_text(json.dumps(data))


def _malformed_history(folder: Path) -> Outcome:
    run = _seed_history(folder)

    def set_commit(key, value):
        return lambda d: d.setdefault("commit", {}).__setitem__(key, value)

    _variant_of(run, "20991231T000001Z-cpu-a.json", set_commit("sha", 12345678))
    _variant_of(run, "20991231T000002Z-cpu-b.json", set_commit("branch", ["main"]))
    _variant_of(run, "20991231T000003Z-cpu-c.json", lambda d: d["device"].__setitem__("identity", "hw"))
    _variant_of(run, "20991231T000004Z-cpu-d.json", lambda d: [c.__setitem__("batch_size", [16]) for c in d["cases"].values()])
    _variant_of(run, "20991231T000005Z-cpu-e.json", set_commit("sha", "$x^{2$"))
    (run.parent / "20991231T000006Z-cpu-f.json").write_text("[" * 100_000)
    site = command(folder, "dashboard", "hist", "--out", "site")
    listing = command(folder, "history", "hist")
    return Outcome(
        None if None in (site.rc, listing.rc) else max(site.rc or 0, listing.rc or 0),
        site.output + listing.output,
        site.seconds + listing.seconds,
    )


def _check_site(folder: Path, out: Outcome) -> str:
    built = "" if (folder / "site" / "index.html").is_file() else "no site was written"
    return both(clean(out, {0}), built)


def _special_files(folder: Path) -> Outcome:
    run = _seed_history(folder)
    os.symlink("/dev/zero", run.parent / "zero.json")
    os.mkfifo(run.parent / "fifo.json")
    listing = command(folder, "history", "hist", timeout_s=60)
    site = command(folder, "dashboard", "hist", "--out", "site", timeout_s=120)
    return Outcome(None if None in (site.rc, listing.rc) else max(site.rc or 0, listing.rc or 0), listing.output + site.output, listing.seconds + site.seconds)


def _prune_foreign(folder: Path) -> Outcome:
    _seed_history(folder)
    shutil.copy(_SEED["results"], folder / "hist" / "results.json")
    shutil.copy(_SEED["baseline"], folder / "hist" / "baseline.json")
    return command(folder, "history", "hist", "--prune-keep", "1")


def _check_prune(folder: Path, out: Outcome) -> str:
    gone = [n for n in ("results.json", "baseline.json") if not (folder / "hist" / n).exists()]
    return both(clean(out, {0}), f"deleted files it did not write: {', '.join(gone)}" if gone else "")


HOSTILE = '<script>document.title="1337"</script>'


def _hostile_strings(folder: Path) -> Outcome:
    run = _seed_history(folder)

    def hostile(d):
        d["commit"].update({"branch": HOSTILE, "sha": "abc<img src=x onerror=alert(1)>", "subject": HOSTILE})
        d["cases"] = {k.replace("levit", "levit" + HOSTILE): {**c, "model": c["model"] + HOSTILE} for k, c in d["cases"].items()}

    _variant_of(run, "20991231T000001Z-cpu-h.json", hostile)
    return command(folder, "dashboard", "hist", "--out", "site")


def _check_hostile_strings(folder: Path, out: Outcome) -> str:
    page = folder / "site" / "index.html"
    if not page.is_file():
        return both(clean(out), "no site was written")
    html = page.read_text(errors="replace")
    raw = [s for s in ("<script>document.title", "<img src=x") if s in html]
    return both(clean(out, {0}), f"raw in the page: {raw}" if raw else "")


def _compare_deep(folder: Path) -> Outcome:
    (folder / "deep.json").write_text("[" * 100_000)
    return command(folder, "compare", "deep.json", "deep.json")


def _compare_dev_zero(folder: Path) -> Outcome:
    return command(folder, "compare", "/dev/zero", "/dev/zero", timeout_s=60)


# -- run faults -----------------------------------------------------------------------------------------


def _full_disk(folder: Path) -> Outcome:
    full = folder / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True, text=True)
    if mounted.returncode != 0:
        raise NotRun(f"cannot mount a 64 KiB tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={full}/filler", "bs=4k", "count=64"], capture_output=True)
        return pytest_run(folder, f"--e3p-results={full}/r.json", f"--e3p-history={full}/hist", f"--e3p-report={full}/report")
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def _check_full_disk(folder: Path, out: Outcome) -> str:
    said = "" if "NOT written" in out.output else "the lost outputs are not named"
    return both(clean(out), said, "exit status 0 with outputs lost" if out.rc == 0 else "")


def _sigterm(folder: Path) -> Outcome:
    (folder / "test_b.py").write_text(BENCH)
    tmp = folder / "tmp"
    tmp.mkdir()
    argv = [PY, "-m", "pytest", "test_b.py", "-q", *SHORT, "--e3p-variants=fp32,onnxruntime", "--e3p-passes=5", "--e3p-results=r.json"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(tmp)})
    # wait for the ONNX export's temporary folder (the moment the audit caught leftovers), at most 120 s
    while time.monotonic() - t0 < 120 and not list(tmp.glob("e3p-onnx-*")) and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=120)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        rc = None
    return Outcome(rc, output, time.monotonic() - t0)


def _check_sigterm(folder: Path, out: Outcome) -> str:
    # ours: the export's e3p-onnx-* folders and interrupted atomic writes (*.tmp). ONNX Runtime's native
    # library writes a session-id file `.ses` into TMPDIR on its own, interrupted or not: not ours.
    left = [p.name for p in (folder / "tmp").iterdir() if p.name.startswith("e3p-") or p.name.endswith(".tmp")]
    left += [p.name for p in folder.glob("**/.*.tmp")]
    return both(clean(out, {INTERRUPTED}), f"left behind: {left}" if left else "")


def _shared_compile_cache(folder: Path) -> Outcome:
    tmp = folder / "tmp"
    tmp.mkdir()
    user = os.environ.get("USER") or __import__("getpass").getuser()
    shared = tmp / f"torchinductor_{user}"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (folder / "conftest.py").write_text(
        textwrap.dedent(
            """
            import os
            def pytest_sessionfinish(session):
                print("\\nINDUCTOR_CACHE=" + os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""))
            """
        )
    )
    env = {"TMPDIR": str(tmp)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    return pytest_run(folder, "-s", env=env)


def _check_compile_cache(folder: Path, out: Outcome) -> str:
    line = next((ln for ln in out.output.splitlines() if ln.startswith("INDUCTOR_CACHE=")), "")
    where = line.split("=", 1)[1] if line else ""
    if not where:
        return both(clean(out), "TORCHINDUCTOR_CACHE_DIR is not set: torch uses the shared $TMPDIR/torchinductor_<user>")
    mode = stat.S_IMODE(os.stat(where).st_mode) if os.path.isdir(where) else None
    return both(clean(out), "" if mode == 0o700 else f"the cache {where} has mode {oct(mode) if mode is not None else 'missing'}, not 0700")


def _concurrent_baseline(folder: Path) -> Outcome:
    (folder / "test_b.py").write_text(BENCH)
    argv = [PY, "-m", "pytest", "test_b.py", "-q", *SHORT, "--e3p-save-baseline=b.json", "--e3p-baseline-runs=3"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    return Outcome(max(p.returncode for p in procs), "\n".join(outputs), time.monotonic() - t0)


def _check_concurrent_baseline(folder: Path, out: Outcome) -> str:
    written = out.output.count("baseline written")
    try:
        case = next(iter(json.loads((folder / "b.json").read_text())["cases"].values()))
    except (OSError, ValueError, StopIteration) as exc:
        return f"the baseline cannot be read after two runs: {exc}"
    kept = 1 + len(case.get("earlier_runs") or [])
    return both(clean(out), f"{written} runs said 'baseline written' but the baseline keeps {kept}" if written > kept else "")


def _workflow_forks(folder: Path) -> Outcome:
    text = (ROOT / ".github" / "workflows" / "devices.yml").read_text()
    return Outcome(0, text, 0.0)


def _check_workflow_forks(folder: Path, out: Outcome) -> str:
    guarded = "head.repo.full_name == github.repository" in out.output or "head.repo.fork" in out.output
    return "" if guarded or "pull_request" not in out.output else "pull_request jobs on self-hosted runners are not guarded against forks"


CASES = [
    Case("cifar-pickle-runs-code", "a CIFAR-10 batch whose pickle runs `touch CODE_RAN`", _hostile_cifar, _check_hostile_cifar),
    Case("folder-png-bomb", "a 20000 x 20000 PNG in a folder= dataset", _png_bomb, _check_names("huge.png")),
    Case("folder-link-loops", "two self-linking symlinks and a link to the parent in a folder= dataset", _folder_link_loop, _check_names("loop")),
    Case("checkpoint-blocked-global", "a checkpoint holding an argparse.Namespace", _custom_class_checkpoint, _check_checkpoint),
    Case("checkpoint-blocked-function", "a checkpoint whose pickle calls os.getpid", _function_checkpoint, _check_function_checkpoint),
    Case("image-size-100000", "--e3p-image-size 100000", _usage("--e3p-image-size=100000", "-rs"), _check_names("image size 100000 needs about")),
    Case("batch-size-empty-item", "--e3p-batch-size 1,,2", _usage("--e3p-batch-size=1,,2"), _check_usage("1,,2")),
    Case("threads-1000", "--e3p-threads 1000 on a machine with fewer CPUs", _usage("--e3p-threads=1000", "--e3p-passes=1"), _check_threads_warning),
    Case("history-in-link-loop", "--e3p-history inside a symlink loop", _history_loop, _check_history_loop),
    Case("history-malformed-files", "six malformed run files (int sha, list branch, ...)", _malformed_history, _check_site),
    Case("history-special-files", "a .json link to /dev/zero and a FIFO in the history", _special_files, _check_site),
    Case("history-prune-foreign", "history --prune-keep 1 beside a results.json and a baseline", _prune_foreign, _check_prune),
    Case("dashboard-hostile-strings", "<script> and onerror= in branch, sha, subject, model", _hostile_strings, _check_hostile_strings),
    Case("compare-deep-nesting", "compare on 100,000 nested [", _compare_deep, lambda f, o: clean(o, {2})),
    Case("compare-dev-zero", "compare /dev/zero /dev/zero", _compare_dev_zero, lambda f, o: clean(o, {2})),
    Case("full-disk", "results, history and report on a full filesystem", _full_disk, _check_full_disk),
    Case("sigterm-mid-run", "SIGTERM while an ONNX variant is being prepared", _sigterm, _check_sigterm),
    Case("shared-compile-cache", "a 0777 $TMPDIR/torchinductor_<user> left by another user", _shared_compile_cache, _check_compile_cache),
    Case("concurrent-save-baseline", "two runs saving the same baseline at once", _concurrent_baseline, _check_concurrent_baseline),
    Case("fork-prs-on-device-runners", "devices.yml: pull_request jobs on self-hosted runners", _workflow_forks, _check_workflow_forks),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.k in c.name]
    if args.list:
        for c in cases:
            print(f"{c.name:28} {c.what}")
        return 0
    from tabulate import tabulate

    rows, missed = [], 0
    for case in cases:
        folder = Path(tempfile.mkdtemp(prefix=f"e3p-audit-{case.name}-"))
        try:
            out = case.run(folder)
            problem = case.check(folder, out)
            verdict = "MISSED: " + problem if problem else "held"
            missed += bool(problem)
            rows.append([case.name, "hang" if out.rc is None else out.rc, f"{out.seconds:.0f}", _said(out)[:110], verdict])
        except NotRun as exc:
            rows.append([case.name, "-", "-", "", f"not run: {exc}"])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{case.name}: {rows[-1][-1]}", file=sys.stderr, flush=True)
    print(tabulate(rows, headers=["case", "exit", "s", "what the user read", "outcome"], tablefmt="github"))
    print(f"\n{len(cases) - missed} of {len(cases)} held" + (f"; {missed} MISSED" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
