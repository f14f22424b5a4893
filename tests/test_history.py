"""The run history: one new file per run with its commit and machine, never overwritten; the command."""

import argparse
import datetime as dt
import json
import shutil
import subprocess
import threading

import pytest
from fakes.results import case_result

from pytest_e3p.storage import history, results
from pytest_e3p.storage.history import CommitInfo, add_cli, append_run, commit_info, load_history, prune

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def run_file(device="rtx3050", hw="NVIDIA GeForce RTX 3050", cases=("a", "b"), verdicts=None):
    verdicts = verdicts or {}
    return results.ResultsFile(
        device={"name": device, "kind": "cuda", "identity": {"name": hw}},
        environment={"torch": "2.5"},
        protocol={},
        cases={
            c: case_result(
                c,
                device=device,
                batch_size=64,
                energy_kind="unavailable",
                energy_mj_per_image=40.0,
                verdict=verdicts.get(c, ""),
            )
            for c in cases
        },
    )


@pytest.fixture
def repo(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    root.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "feature-x")
    (root / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-q", "-m", "Make the model faster")
    monkeypatch.chdir(root)
    return root, git


def test_each_run_is_a_new_file_with_commit_device_and_machine(repo, tmp_path):
    root, git = repo
    folder = tmp_path / "history"
    first = append_run(run_file(), folder, {"hostname": "runner-1"})
    (root / "f.txt").write_text("2")  # an uncommitted change: the run measured a dirty tree
    second = append_run(run_file(), folder)
    assert sorted(folder.iterdir()) == [first, second]  # name order is time order
    assert first.name.endswith(".json") and "-rtx3050-" in first.name and git("rev-parse", "HEAD")[:8] in first.name
    data = json.loads(first.read_text())
    assert data["commit"]["sha"] == git("rev-parse", "HEAD") and data["commit"]["branch"] == "feature-x"
    assert data["commit"]["dirty"] is False and data["commit"]["subject"] == "Make the model faster" and data["commit"]["source"] == "git"
    assert json.loads(second.read_text())["commit"]["dirty"] is True
    assert data["machine"] == {"hostname": "runner-1"}
    assert {"hostname", "os", "cpus", "python"} <= set(json.loads(second.read_text())["machine"])
    assert data["device"]["identity"]["name"] == "NVIDIA GeForce RTX 3050"
    assert results.load(first).cases["a"].energy_mj_per_image == 40.0  # still an ordinary results file


def test_commit_from_the_ci_variables_without_git(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above either
    gh = commit_info(env={"GITHUB_SHA": "f" * 40, "GITHUB_REF_NAME": "main"})
    assert (gh.sha, gh.branch, gh.dirty, gh.source) == ("f" * 40, "main", None, "github")
    pr = commit_info(env={"GITHUB_SHA": "f" * 40, "GITHUB_REF_NAME": "12/merge", "GITHUB_HEAD_REF": "fix-energy"})
    assert pr.branch == "fix-energy"
    gl = commit_info(env={"CI_COMMIT_SHA": "e" * 40, "CI_COMMIT_REF_NAME": "dev"})
    assert (gl.sha, gl.branch, gl.source) == ("e" * 40, "dev", "gitlab")
    assert commit_info(env={}).source == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    monkeypatch.setenv("CI_COMMIT_SHA", "d" * 40)
    path = append_run(run_file(), tmp_path / "h", {})
    assert json.loads(path.read_text())["commit"]["source"] == "gitlab"


def test_earlier_files_are_never_rewritten_and_concurrent_runs_do_not_clobber(tmp_path, monkeypatch):
    folder = tmp_path / "h"
    commit = CommitInfo(sha="a" * 40, branch="main")
    first = append_run(run_file(), folder, {}, commit=commit, when=T0)
    before = first.read_bytes()
    # the same second, the same commit, the same device, from 8 runners at once
    made, errors = [], []

    def runner():
        try:
            for _ in range(10):
                made.append(append_run(run_file(), folder, {}, commit=commit, when=T0))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(made)) == 80
    assert first.read_bytes() == before
    assert len(list(folder.glob("*.json"))) == 81 and not list(folder.glob(".*.tmp"))  # no temporary left
    # a name drawn twice is not overwritten: the writer draws again
    draws = iter(["000000", "000000", "111111"])
    monkeypatch.setattr(history.secrets, "token_hex", lambda n: next(draws))
    a = append_run(run_file(), folder, {}, commit=commit, when=T0)
    a_bytes = a.read_bytes()
    b = append_run(run_file(cases=("z",)), folder, {}, commit=commit, when=T0)
    assert a.name.endswith("-000000.json") and b.name.endswith("-111111.json") and a.read_bytes() == a_bytes


def _history(folder):
    for i in range(4):
        append_run(
            run_file(verdicts={"a": "regressed" if i == 3 else "unchanged"}),
            folder,
            {},
            commit=CommitInfo(sha=f"{i}" * 40, branch="main"),
            when=T0 + dt.timedelta(hours=i),
        )
    for i in range(2):
        append_run(
            run_file("cpu", "Intel Xeon", cases=("c",)),
            folder,
            {},
            commit=CommitInfo(sha=f"{i}" * 40, branch="main", dirty=True),
            when=T0 + dt.timedelta(hours=i, minutes=30),
        )
    return folder


def test_prune_keeps_the_newest_n_per_device(tmp_path):
    folder = _history(tmp_path / "h")
    runs, _ = load_history(folder)
    newest_gpu = [r.path for r in runs if r.device["name"] == "rtx3050"][-2:]
    assert prune(folder, 2, dry_run=True) and len(list(folder.glob("*.json"))) == 6
    removed = prune(folder, 2)
    assert len(removed) == 2
    left, _ = load_history(folder)
    assert [r.path for r in left if r.device["name"] == "rtx3050"] == newest_gpu
    assert len([r for r in left if r.device["name"] == "cpu"]) == 2  # fewer than N: all kept
    with pytest.raises(ValueError):
        prune(folder, 0)


def test_history_command_lists_runs_and_prunes(tmp_path, capsys):
    folder = _history(tmp_path / "h")
    (folder / "junk.json").write_text("{")
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))

    def run(*argv):
        args = parser.parse_args(["history", *argv])
        return args.run(args)

    assert run(str(folder)) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert "time (UTC)" in lines[0] and "verdicts" in lines[0]
    assert len(lines) == 2 + 6  # header, rule, one line per run
    assert "2025-03-01 15:00:00" in lines[-1] and "33333333 (main)" in lines[-1] and "rtx3050 (NVIDIA GeForce RTX 3050)" in lines[-1]
    assert "1 regressed, 1 not compared" in lines[-1] and "1 unchanged, 1 not compared" in lines[-2]
    assert "00000000 (main, dirty)" in out and "1 not compared" in out
    assert "skipped: junk.json" in err
    assert run(str(folder), "--device", "cpu") == 0 and len(capsys.readouterr().out.splitlines()) == 4
    assert run(str(folder), "--prune-keep", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 4 run(s), keeping the newest 1 per device")
    assert len(list(folder.glob("2025*.json"))) == 2
    assert run(str(tmp_path / "missing")) == 2
    assert run(str(folder), "--prune-keep", "0") == 2
