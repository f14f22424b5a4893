"""A run that is cancelled, runs out of disk or shares its machine: nothing lost without a word,
nothing left behind, nothing of another user's loaded; and the CI device runners never run a fork's code."""

from __future__ import annotations

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
