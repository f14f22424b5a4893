"""Run the README's example command lines and fail on a traceback or a skipped case nobody meant.

Every `pytest ...` and `python -m pytest_e3p ...` line of the README's example blocks (indented or
fenced) is found, then run, in order, in one temporary folder holding a copy of `benchmarks/` and the
repository's conftest.py (so an example that writes a baseline leaves it for the next one):

- a `pytest benchmarks/` run gets the short options of tests/fakes/runs.py appended (random weights,
  2 passes of 2 rounds of 50 ms, no warm-up, no idle window but for the edgevit protocol); with --quick, also `--e3p-models
  test_vit` where the example names no models;
- a device this machine lacks (`--device tx2` here) becomes `--device cpu`, and the line says so;
- the placeholders of the command-line examples (BASELINE, RESULTS, a.json, b.json) become files
  the earlier examples wrote;
- lines that cannot run here are listed, with why, and not run: the project's own test suite, and
  `finetune` (a CIFAR-10 copy and hours of training).

An example fails on a Python traceback (or pytest's INTERNALERROR), on an option the command does
not know, and on a skipped case unless its line ends with the comment `# shows a skip` (which then
must show one). Any other non-zero exit (a dataset folder this machine does not have) is reported
as not checked here, with its last line; --strict fails on those too.

Usage: python scripts/check_readme_examples.py [README.md] [--list] [--quick] [--only N] [--strict]
Exit status: 0 every example that ran was clean; 1 one failed; 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOWS_A_SKIP = "# shows a skip"
# the profiles that need hardware this machine may lack; cpu and auto run anywhere
GPU_DEVICES = re.compile(r"^(cuda(:\d+)?|rtx3050)$")
JETSON_DEVICES = {"tx2", "xavier-nx", "orin-nano", "orin-nx", "agx-orin", "jetson"}
# placeholders of the command-line examples -> what the earlier examples wrote
PLACEHOLDERS = {
    "BASELINE": "benchmarks/baselines/rtx3050.json",
    "RESULTS": ".e3p/results.json",
    "a.json": ".e3p/results.json",
    "b.json": "benchmarks/baselines/rtx3050.json",
}
NOT_RUN = {
    "finetune": "needs a CIFAR-10 copy and trains for hours",
}


@dataclass
class Example:
    """One command line of the README: its words (comment and shell prefix removed)."""

    line_no: int
    text: str  # as written, comment included
    argv: list[str]
    shows_skip: bool

    @property
    def kind(self) -> str:
        """'benchmarks' (a pytest run of benchmarks/), 'suite' (pytest on anything else), 'cli'."""
        if self.argv[:3] == ["python", "-m", "pytest_e3p"]:
            return "cli"
        return "benchmarks" if any(a.rstrip("/") == "benchmarks" for a in self.argv) else "suite"


@dataclass
class Outcome:
    example: Example
    status: str  # ok, FAILED, not checked, not run
    why: str = ""
    notes: list[str] = field(default_factory=list)


def example_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line in an indented (4 spaces) or fenced code block."""
    out, fenced = [], False
    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and line.strip()):
            out.append((i, line.strip()))
    return out


def _command(segment: str) -> list[str] | None:
    """The segment's words as `pytest ...` or `python -m pytest_e3p ...`, None for anything else;
    `.venv/bin/pytest`, `python3 -m pytest`, `.venv/bin/python -m pytest` count as pytest."""
    try:
        words = shlex.split(segment)
    except ValueError:
        return None
    if not words:
        return None
    exe = Path(words[0]).name
    if exe == "pytest":
        return ["pytest", *words[1:]]
    if re.fullmatch(r"python(3(\.\d+)?)?", exe) and len(words) >= 3 and words[1] == "-m":
        if words[2] == "pytest":
            return ["pytest", *words[3:]]
        if words[2] == "pytest_e3p":
            return ["python", "-m", "pytest_e3p", *words[3:]]
    return None


def find_examples(text: str) -> list[Example]:
    """Every pytest / python -m pytest_e3p command line of the README's example blocks, in order."""
    found = []
    for line_no, line in example_blocks(text):
        code, _, comment = line.partition(" #")
        shows_skip = SHOWS_A_SKIP in f"#{comment}" if comment else False
        for segment in re.split(r"&&|;|\|\|", code):
            argv = _command(segment.strip())
            if argv is not None:
                found.append(Example(line_no, line, argv, shows_skip))
    return found


def has_device(name: str) -> bool:
    """Whether this machine can run the device profile `name` at all."""
    if name in ("cpu", "auto"):
        return True
    if GPU_DEVICES.match(name):
        return Path("/dev/nvidiactl").exists()
    if name in JETSON_DEVICES:
        try:
            return b"nvidia," in Path("/proc/device-tree/compatible").read_bytes()
        except OSError:
            return False
    return True  # unknown to this script: let the plugin say what it thinks of it


def short_options() -> list[str]:
    """tests/fakes/runs.py's SHORT, without its device (the example's, or its substitute, is kept)."""
    namespace: dict = {}
    exec(compile((ROOT / "tests/fakes/runs.py").read_text(), "tests/fakes/runs.py", "exec"), namespace)
    return [a for a in namespace["SHORT"] if not a.startswith("--e3p-device")]


def prepared(example: Example, quick: bool) -> tuple[list[str], list[str]]:
    """The argv to run (with this interpreter) and the notes saying what was changed."""
    argv, notes = list(example.argv), []
    for i, word in enumerate(argv):
        flag, eq, value = word.partition("=")
        if flag in ("--device", "--e3p-device") and example.kind != "cli":
            j, name = (i, value) if eq else (i + 1, argv[i + 1] if i + 1 < len(argv) else "")
            if name and not has_device(name):
                argv[j] = f"{flag}=cpu" if eq else "cpu"
                notes.append(f"--device {name} -> cpu (no {name} on this machine)")
        if word in PLACEHOLDERS and example.kind == "cli":
            argv[i] = PLACEHOLDERS[word]
            notes.append(f"{word} -> {PLACEHOLDERS[word]}")
    if example.kind == "benchmarks":
        short = short_options()
        if "edgevit" in argv and "--e3p-idle-s=0" in short:  # that protocol subtracts an idle window: it needs one
            short[short.index("--e3p-idle-s=0")] = "--e3p-idle-s=0.2"
            notes.append("edgevit protocol: --e3p-idle-s=0.2 (it subtracts an idle window; 0 is refused)")
        argv += short
        if quick and not any(a.startswith("--e3p-models") for a in argv):
            argv.append("--e3p-models=test_vit")
            notes.append("--quick: --e3p-models test_vit")
    head = [sys.executable, "-m", "pytest"] if argv[0] == "pytest" else [sys.executable, "-m", "pytest_e3p"]
    return head + argv[1 if argv[0] == "pytest" else 3 :], notes


SKIPPED_COUNT = re.compile(r"\b(\d+) skipped\b")


def judge(example: Example, returncode: int, output: str) -> tuple[str, str]:
    """(status, why) of one example's run."""
    if "Traceback (most recent call last)" in output or "INTERNALERROR" in output:
        tail = next((line for line in reversed(output.splitlines()) if line.strip() and not line.startswith(" ")), "")
        return "FAILED", f"a traceback: {tail}"
    if "unrecognized arguments" in output or "error: argument" in output or "invalid choice" in output:
        return "FAILED", next(line for line in output.splitlines() if "error" in line)
    skipped = sum(int(n) for n in SKIPPED_COUNT.findall(output.splitlines()[-1] if output.strip() else ""))
    if skipped and not example.shows_skip:
        reasons = [line for line in output.splitlines() if line.startswith("SKIPPED")]
        return "FAILED", f"{skipped} case(s) skipped, and the example does not say `{SHOWS_A_SKIP}`: " + "; ".join(reasons[:3])
    if example.shows_skip and example.kind == "benchmarks" and not skipped:
        return "FAILED", f"says `{SHOWS_A_SKIP}` but no case was skipped"
    if returncode not in (0, 1) or (returncode == 1 and example.kind == "benchmarks" and "failed" in output.splitlines()[-1]):
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        return "not checked", f"exit {returncode}: {last.strip()}"
    return "ok", ""


def run_examples(examples: list[Example], quick: bool, timeout_s: float) -> list[Outcome]:
    outcomes = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    with tempfile.TemporaryDirectory(prefix="e3p-readme-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "benchmarks", work / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "conftest.py", work / "conftest.py")  # the suite's --device alias
        for ex in examples:
            if ex.kind == "suite":
                outcomes.append(Outcome(ex, "not run", "the project's own test suite: CI runs it"))
                continue
            if ex.kind == "cli" and len(ex.argv) > 3 and ex.argv[3] in NOT_RUN:
                outcomes.append(Outcome(ex, "not run", NOT_RUN[ex.argv[3]]))
                continue
            argv, notes = prepared(ex, quick)
            # -rs: the reason of each skip in the output, for the failure line
            if ex.kind == "benchmarks":
                argv.append("-rs")
            print(f"--- README line {ex.line_no}: {' '.join(argv[1:])}" + (f"  ({'; '.join(notes)})" if notes else ""), flush=True)
            try:
                proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                outcomes.append(Outcome(ex, "not checked", f"still running after {timeout_s:g} s", notes))
                continue
            status, why = judge(ex, proc.returncode, proc.stdout + proc.stderr)
            outcomes.append(Outcome(ex, status, why, notes))
            print(f"    {status}{': ' + why if why else ''}", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("readme", nargs="?", default=str(ROOT / "README.md"), help="the README to check (default: this repository's)")
    parser.add_argument("--list", action="store_true", help="only list the command lines found (default: off)")
    parser.add_argument("--quick", action="store_true", help="benchmark runs that name no models measure test_vit only (default: off)")
    parser.add_argument(
        "--only", type=int, action="append", default=[], metavar="LINE", help="run only the example on this README line (repeatable; default: all)"
    )
    parser.add_argument("--strict", action="store_true", help="an example that could not be checked here fails too (default: off)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="longest run of one example, seconds (default: 900)")
    args = parser.parse_args(argv)
    try:
        text = Path(args.readme).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.readme}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    examples = find_examples(text)
    if args.only:
        examples = [e for e in examples if e.line_no in args.only]
    if args.list:
        for e in examples:
            print(f"{e.line_no:4d} {e.kind:10s} {' '.join(e.argv)}" + ("  [shows a skip]" if e.shows_skip else ""))
        return 0
    if not examples:
        print(f"error: no example command line found in {args.readme}", file=sys.stderr)
        return 2
    outcomes = run_examples(examples, args.quick, args.timeout_s)
    print(f"\n{len(outcomes)} example lines of {args.readme}:")
    for o in outcomes:
        print(f"  line {o.example.line_no:4d} {o.status:12s} {' '.join(o.example.argv)}" + (f"\n{'':24s}{o.why}" if o.why else ""))
    failed = [o for o in outcomes if o.status == "FAILED" or (args.strict and o.status == "not checked")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
