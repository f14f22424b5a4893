"""A run that is cancelled, runs out of disk or shares its machine: nothing lost without a word,
nothing left behind, nothing of another user's loaded; and the CI device runners never run a fork's code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

# -- fork pull requests on the self-hosted device runners ----------------------------------------

_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|(&&|\|\||==|!=|!|\(|\))|([A-Za-z_][\w.\-]*)(\(\))?)")


def _condition(expression: str, context: dict[str, str]) -> bool:
    """A job's `if:` evaluated as GitHub does for the operators the workflows use (strings, ==, !=,
    !, &&, ||, parentheses, always()), in `context`; an unknown name fails the test instead of guessing."""
    expression = expression.strip()
    if expression.startswith("${{") and expression.endswith("}}"):
        expression = expression[3:-2]
    out, pos = [], 0
    while pos < len(expression.rstrip()):
        m = _TOKEN.match(expression, pos)
        assert m and m.end() > pos, f"cannot read {expression[pos:]!r}"
        pos = m.end()
        literal, op, name, call = m.groups()
        if literal is not None:
            out.append(repr(literal[1:-1].replace("''", "'")))
        elif op is not None:
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(op, op))
        elif call:
            assert name in ("always", "success"), f"function {name}() in {expression!r}"
            out.append("True")
        else:
            assert name in context, f"{name} in {expression!r}: add it to the test's context"
            out.append(repr(context[name]))
    return bool(eval("".join(out)))  # only literals and operators are left


def _pull_request(head_repo: str) -> dict[str, str]:
    # the names of GitHub's `github` context for a pull_request event (docs: "Contexts", "Events
    # that trigger workflows: pull_request"); a fork's head repository has another full name
    return {
        "github.event_name": "pull_request",
        "github.repository": "lab/pytest-e3p",
        "github.event.pull_request.head.repo.full_name": head_repo,
        "github.event.pull_request.head.repo.fork": head_repo != "lab/pytest-e3p",
        "github.ref": "refs/pull/7/merge",
        "inputs.refresh_baseline": "",
        "vars.E3P_LAB_DEVICES_FILE": "lab.toml",  # the boards job's switch, set: the fork guard must still hold
    }


def _self_hosted_pr_jobs():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
        if "pull_request" not in (triggers if isinstance(triggers, (dict, list)) else [triggers]):
            continue
        for name, job in workflow["jobs"].items():
            # runs-on may name the labels itself or a matrix value that does
            if "self-hosted" in repr(job.get("runs-on")) + repr(job.get("strategy")):
                yield path.name, name, job


def test_the_workflows_have_self_hosted_jobs_triggered_by_pull_requests():
    # the guard test below would pass vacuously if the device jobs moved or were renamed
    assert {(f, n) for f, n, _ in _self_hosted_pr_jobs()} >= {("devices.yml", "gate"), ("devices.yml", "refresh-baseline")}


@pytest.mark.parametrize("workflow, name, job", list(_self_hosted_pr_jobs()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_fork_pull_request_never_runs_on_a_self_hosted_runner(workflow, name, job):
    # GitHub, "Self-hosted runner security": forks of a public repository can run dangerous code on a
    # self-hosted runner through a pull request. Each such job must skip a fork's pull request.
    condition = job.get("if")
    assert condition is not None, f"{workflow}: job {name} runs on a self-hosted runner for any pull request, a fork's included: add a fork guard"
    assert not _condition(str(condition), _pull_request("someone/pytest-e3p")), f"{workflow}: job {name} runs a fork's pull request on a self-hosted runner"


def test_a_pull_request_from_a_branch_of_the_repository_is_still_measured_on_the_devices():
    gate = next(job for f, n, job in _self_hosted_pr_jobs() if (f, n) == ("devices.yml", "gate"))
    assert _condition(gate["if"], _pull_request("lab/pytest-e3p"))
    push = {**_pull_request("lab/pytest-e3p"), "github.event_name": "push"}
    assert _condition(gate["if"], push)


# -- a requested output that cannot be written -------------------------------------------------

FULL_DISK = """
import errno

import pytest

import pytest_e3p.report.figures
import pytest_e3p.report.markdown
import pytest_e3p.storage.files
import pytest_e3p.storage.results

_UNDO = pytest.StashKey[pytest.MonkeyPatch]()


def _full(path, data, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def pytest_configure(config):
    patch = config.stash[_UNDO] = pytest.MonkeyPatch()
    # every module that writes through the atomic writer, as each binds it at import
    for module in (pytest_e3p.storage.files, pytest_e3p.storage.results, pytest_e3p.report.markdown, pytest_e3p.report.figures):
        patch.setattr(module, "write_atomic", _full)


def pytest_unconfigure(config):
    config.stash[_UNDO].undo()
"""
BENCH = "def test_energy(e3p):\n    e3p.measure()\n"


def _short(*args):
    from fakes.runs import SCRIPTED, SHORT

    return [*SHORT, *SCRIPTED, "--e3p-batch-size=2", "--e3p-models=test_vit", *args]


def test_a_full_disk_makes_the_run_fail_with_every_lost_output_named_and_the_tables_printed(pytester):
    pytester.makeconftest(FULL_DISK)
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*_short("--e3p-results=out/results.json", "--e3p-history=hist", "--e3p-report=rep", "--e3p-save-baseline=base.json"))
    result.assert_outcomes(passed=1)
    # exit 3 (INTERNAL_ERROR): not 0, and not the regression gate's 1
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "*E3P stage 2 on cpu / synthetic*",  # the table still printed
            "*results NOT written to out/results.json: No space left on device*",
            "*history NOT written to hist: No space left on device*",
            "*baseline NOT written to base.json: No space left on device*",
            "*report NOT written to rep: No space left on device*",
            "*exit status 3: 4 requested output(s) NOT written*",
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_run_whose_outputs_are_written_still_exits_0(pytester):
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*_short("--e3p-results=out/results.json", "--e3p-history=hist"))
    assert result.ret == pytest.ExitCode.OK
    assert (pytester.path / "out/results.json").is_file() and len(list((pytester.path / "hist").glob("*.json"))) == 1


# -- two runs saving one baseline at once ---------------------------------------------------------

MEET_IN_MERGE = """
import os
import time

import pytest

import pytest_e3p.run.session as session

_UNDO = pytest.StashKey[pytest.MonkeyPatch]()


def pytest_configure(config):
    merge = session.merge_runs

    def meet_then_merge(old, new, keep_runs):
        # each run waits here, after reading the old baseline, for the other to arrive (4 s at most):
        # without a lock both have read the same old file and the second write loses the first run
        open(f"arrived-{os.getpid()}", "w").close()
        deadline = time.monotonic() + 4
        while len([n for n in os.listdir() if n.startswith("arrived-")]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return merge(old, new, keep_runs)

    patch = config.stash[_UNDO] = pytest.MonkeyPatch()
    patch.setattr(session, "merge_runs", meet_then_merge)


def pytest_unconfigure(config):
    config.stash[_UNDO].undo()
"""


def _subprocess_env() -> dict[str, str]:
    import os

    # the package from this checkout and the tests' fakes, as the in-process runs see them
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def test_two_runs_saving_one_baseline_at_once_both_end_up_in_it(pytester):
    import subprocess
    import sys

    pytester.makeconftest(MEET_IN_MERGE)
    pytester.makepyfile(test_bench=BENCH)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", *_short(f"--e3p-models={model}", "--e3p-save-baseline=b.json", "--e3p-results=" + model + ".json")],
            cwd=pytester.path,
            env=_subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for model in ("test_vit", "test_vit2")
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, out in zip(runs, outputs):
        assert run.returncode == 0, out
        assert "baseline written to b.json" in out
    saved = json.loads((pytester.path / "b.json").read_text())
    assert sorted(saved["cases"]) == ["test_vit-cpu-synthetic", "test_vit2-cpu-synthetic"]  # neither run lost


# -- the compile cache -----------------------------------------------------------------------------

SHOW_CACHE = """
import os

def test_env(e3p_session):
    print("INDUCTOR=" + os.environ.get("TORCHINDUCTOR_CACHE_DIR", "unset"))
    print("TRITON=" + os.environ.get("TRITON_CACHE_DIR", "unset"))
"""


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """XDG_CACHE_HOME in a temporary folder, and neither compile cache chosen by the user."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    return home / "pytest-e3p"


def _cache_run(pytester, *args):
    pytester.makepyfile(test_env=SHOW_CACHE)
    return pytester.runpytest("-s", *_short(*args))


def test_the_compile_caches_are_private_folders_of_the_user_for_the_run(pytester, cache_home):
    import os
    import stat

    # torch's default, $TMPDIR/torchinductor_<user>, is a name another user can create first
    # (torch/_inductor/runtime/cache_dir_utils.py, default_cache_dir): compiled .so files are loaded from it
    result = _cache_run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*INDUCTOR={cache_home / 'torchinductor'}", f"TRITON={cache_home / 'triton'}"])
    for folder in (cache_home, cache_home / "torchinductor", cache_home / "triton"):
        st = folder.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    # the run's environment is undone at its end
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ and "TRITON_CACHE_DIR" not in os.environ


def test_a_compile_cache_the_user_chose_is_left_alone(pytester, cache_home, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    result = _cache_run(pytester)
    result.stdout.fnmatch_lines([f"*INDUCTOR={tmp_path / 'mine'}", f"TRITON={cache_home / 'triton'}"])


@pytest.mark.parametrize("how", ["writable by others", "another user's"])
def test_a_compile_cache_folder_others_could_write_is_refused_in_one_line(pytester, cache_home, how):
    import os

    planted = cache_home / "torchinductor"
    planted.mkdir(parents=True)
    if how == "writable by others":
        planted.chmod(0o777)
        message = f"*compile cache {planted} is writable by others (mode 0777): another user could plant compiled code there; remove it*"
    else:
        if os.geteuid() != 0:
            pytest.skip("making a folder another user's takes root")
        os.chown(planted, 65534, 65534)  # nobody
        planted.chmod(0o700)
        message = f"*compile cache {planted} is owned by another user (uid 65534)*"
    result = _cache_run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


# -- SIGTERM, as a CI runner sends on cancel -----------------------------------------------------

SLOW_SECOND_CASE = """
import pathlib
import tempfile
import time


def test_energy(e3p, e3p_case):
    e3p.measure()
    if e3p_case.id.startswith("test_vit2"):
        # as the ONNX export does (variants/onnx_runtime.py): a temporary folder in $TMPDIR, removed
        # by its context manager, while a long step runs
        with tempfile.TemporaryDirectory(prefix="e3p-onnx-") as tmp:
            (pathlib.Path(tmp) / "model.onnx").write_bytes(b"x" * 1_000_000)
            pathlib.Path("ready").touch()
            time.sleep(120)
"""


def test_sigterm_stops_the_run_as_ctrl_c_does_cleaning_up_and_writing_what_was_measured(pytester, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    pytester.makepyfile(test_bench=SLOW_SECOND_CASE)
    args = _short("--e3p-models=test_vit,test_vit2", "--e3p-passes=1", "--e3p-results=out/results.json", "--e3p-history=hist")
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=pytester.path,
        env={**_subprocess_env(), "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (pytester.path / "ready").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (pytester.path / "ready").exists(), run.communicate(timeout=60)[0] if run.poll() is not None else "the second case never started"
    run.send_signal(signal.SIGTERM)
    out = run.communicate(timeout=120)[0]
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out  # pytest's own code for Ctrl-C, not -15
    assert "KeyboardInterrupt" in out and "stopped by signal SIGTERM" in out
    assert list(tmpdir.glob("e3p-onnx-*")) == []  # the export's folder was removed
    data = json.loads((pytester.path / "out/results.json").read_text())
    assert data["cases"]["test_vit-cpu-synthetic"]["status"] == "ok"  # the case measured before is kept
    assert data["cases"]["test_vit2-cpu-synthetic"]["status"] == "failed"
    written = [p.name for p in (pytester.path / "hist").iterdir()]
    assert len(written) == 1 and written[0].endswith(".json") and not any(n.endswith(".tmp") for n in os.listdir(pytester.path / "out"))
