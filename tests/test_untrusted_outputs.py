"""Recorded strings and history folders are untrusted input: a branch name comes from a fork's PR
(GITHUB_HEAD_REF), a model or dataset name from a command line, a history folder from a shared disk.
The dashboard, report.md and the `history` command must show them as text, skip what is not a run
file in one line, and never delete, follow or hang on what they did not write."""

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes.results import case_result, results_file

from pytest_e3p.report import dashboard
from pytest_e3p.report.markdown import energy_error_bars, write_report
from pytest_e3p.storage import files, history, results
from pytest_e3p.storage.history import CommitInfo, append_run, load_history, prune
from pytest_e3p.text import terminal_safe

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
REPO = Path(__file__).resolve().parents[1]

# Each is a valid git ref name or a string a user may type (git check-ref-format refuses spaces,
# "~^:?*[\" and control characters in refs, so the branch payloads avoid those; the other fields have no rule).
HOSTILE = [
    "<script>document.title='pwned'</script>",
    '"><img src=x onerror=document.title=1337>',
    "</script>",
    "{{7*7}}",
    "$x^{2$",
    "<svg/onload=alert('xss')>",
]


def hostile_history(folder: Path, runs: int = 3) -> Path:
    """A history whose every recorded string is hostile: branch, sha, subject, model, device, dataset,
    variant and case id."""
    for i in range(runs):
        for k, bad in enumerate(HOSTILE):
            case = case_result(
                f"{bad}-case-{k}",
                model=f"{bad}model",
                device=f"{bad}dev",
                dataset=f"{bad}data",
                variant=bad,
                energy_kind="measured",
                energy_source=bad,
                energy_mj_per_image=40.0 + i + k,
                latency_ms_per_image=5.0,
                verdict="regressed" if i == runs - 1 else "unchanged",
            )
            rf = results_file([case], device={"name": f"{bad}dev", "identity": {"name": f"{bad}hw"}})
            commit = CommitInfo(sha=f"{bad}{i}", branch=bad, subject=bad, source="github")
            append_run(rf, folder, {"hostname": bad}, commit=commit, when=T0 + dt.timedelta(hours=i, minutes=k))
    return folder


# -- 1. hostile strings are text ---------------------------------------------------------------


def test_the_dashboard_escapes_every_recorded_string(tmp_path):
    site = dashboard.write_dashboard(hostile_history(tmp_path / "h"), tmp_path / "site")
    assert site.problems == [] and len(site.runs) == 3 * len(HOSTILE) and len(site.series) == len(HOSTILE)
    page = site.index.read_text()
    assert page.count("<script") == 2  # the page's own two: the error capture and dashboard.js
    assert "<img" not in page and "<svg/" not in page and "document.title='pwned'</script>" not in page
    assert "&lt;script&gt;document.title=" in page  # shown, as text
    # the commit span in the header (the first and last runs' labels) is where the branch ran as script
    header = page.split("<header>")[1].split("</header>")[0]
    assert "&lt;script&gt;" in header or "&lt;/script&gt;" in header or "&quot;&gt;&lt;img" in header


def test_report_md_escapes_table_cells(tmp_path):
    cases = [
        case_result(
            f"<script>alert({k})</script>-cpu-synthetic",  # its short name, "<script>alert(k)</script>", is shown
            model="evil|model\nnext line <b>",
            energy_mj=10.0 + k,
            energy_mj_per_image=10.0 + k,
            top1=80.0 + k,
            top1_source="measured",
            netscore=50.0,
        )
        for k in range(3)
    ]
    path = write_report([results_file(cases)], tmp_path / "rep")
    text = path.read_text()
    assert "<script>" not in text and "<b>" not in text and "&lt;script&gt;" in text
    for table in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M):  # every GitHub table: the same number of cells per row
        rows = table.splitlines()
        cells = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(cells) == 1, table


def test_terminal_safe_shows_control_characters_instead_of_obeying_them():
    assert terminal_safe("main\x1b[2J\x1b]0;owned\x07") == "main\\x1b[2J\\x1b]0;owned\\x07"
    assert terminal_safe("a\rb\nc\x9bd\u202ee") == "a\\rb\\nc\\x9bd\\u202ee"  # CR, LF, C1 CSI, a bidi override
    assert terminal_safe("ünïcode plain") == "ünïcode plain"


def test_the_history_command_prints_no_control_character(tmp_path, capsys):
    folder = tmp_path / "h"
    bad = "main\x1b[2J\x1b]0;owned\x07\rfake"
    rf = results_file([case_result("a-cpu-synthetic", energy_mj=10.0)], device={"name": "cpu\x1b[31m", "identity": {"name": "x\x1b[0m"}})
    append_run(rf, folder, {}, commit=CommitInfo(sha="a" * 40, branch=bad, source="github"), when=T0)
    (folder / "bad\x1b[31m.json").write_text("{")
    assert _history_cli(folder) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err and "\r" not in out + err
    assert "\\x1b[2J" in out and "skipped: bad\\x1b[31m.json" in err


def _history_cli(*argv):
    parser = argparse.ArgumentParser()
    history.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["history", *map(str, argv)])
    return args.run(args)


def _dashboard_cli(folder, out):
    parser = argparse.ArgumentParser()
    dashboard.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboard", str(folder), "--out", str(out)])
    return args.run(args)


# -- 2. a malformed file is skipped in one line ------------------------------------------------


def _good_run(folder: Path, hour: int = 0, sha: str = "1" * 40) -> Path:
    rf = results_file([case_result("a-cpu-synthetic", energy_mj=10.0 + hour, latency_ms_per_image=5.0)])
    return append_run(rf, folder, {}, commit=CommitInfo(sha=sha, branch="main", source="git"), when=T0 + dt.timedelta(hours=hour))


def _edited(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


MALFORMED = {
    "int sha": lambda d: d["commit"].update(sha=12345678),
    "list branch": lambda d: d["commit"].update(branch=["main"]),
    "string dirty": lambda d: d["commit"].update(dirty="yes"),
    "string identity": lambda d: d["device"].update(identity="hw"),
    "list batch size": lambda d: next(iter(d["cases"].values())).update(batch_size=[64]),
    "string image size": lambda d: next(iter(d["cases"].values())).update(image_size="224"),
    "string energy": lambda d: next(iter(d["cases"].values())).update(energy_mj_per_image="40"),
    "list verdict": lambda d: next(iter(d["cases"].values())).update(verdict=["regressed"]),
    "list appended": lambda d: d.update(appended=[1]),
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_a_malformed_run_is_skipped_in_one_line_and_the_rest_is_drawn(tmp_path, capsys, what):
    folder = tmp_path / "h"
    for hour in range(3):
        _good_run(folder, hour)
    bad = _good_run(folder, 5)
    _edited(bad, MALFORMED[what])
    runs, problems = load_history(folder)
    assert len(runs) == 3 and len(problems) == 1 and bad.name in problems[0] and "\n" not in problems[0]
    assert _dashboard_cli(folder, tmp_path / "site") == 0
    assert _history_cli(folder) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count(f"skipped: {bad.name}") == 2
    assert "3 run(s)" in (tmp_path / "site" / "index.html").read_text()


def test_a_sha_with_mathtext_is_drawn_as_text(tmp_path):
    folder = tmp_path / "h"
    for hour, sha in enumerate(["$x^{2$", "a$b$c", "\\frac{", "plain"]):
        _good_run(folder, hour, sha=sha)
    site = dashboard.write_dashboard(folder, tmp_path / "site")
    assert site.problems == [] and len(site.runs) == 4
    page = site.index.read_text()
    assert "$x^{2$" in page  # the tick label, as written: mathtext is off


def test_deep_nesting_is_not_a_results_file_and_not_a_traceback(tmp_path, capsys):
    folder = tmp_path / "h"
    _good_run(folder)
    (folder / "deep.json").write_text("[" * 100_000)
    runs, problems = load_history(folder)
    assert len(runs) == 1 and problems == [f"deep.json: {folder / 'deep.json'} is not a results file (JSON nested too deeply)"]
    assert _dashboard_cli(folder, tmp_path / "site") == 0
    base = dashboard.read_baselines([folder / "deep.json"])
    assert base[0] == {} and "nested too deeply" in base[1][0]


# -- 3. prune deletes only run files ------------------------------------------------------------


def test_prune_leaves_files_it_did_not_write(tmp_path, capsys):
    folder = tmp_path / "h"
    for hour in range(3):
        _good_run(folder, hour)
    copied = results.ResultsFile(**{**vars(results.load(next(folder.glob("*.json")))), "extra": {}})
    results.save(copied, folder / "results.json")
    results.save(copied, folder / "baseline-cpu.json")
    # a run-like name without the run's fields (a results file renamed to look like one) is not a run either
    results.save(copied, folder / "20200101T000000.000000Z-cpu-11111111-abcdef.json")
    removed = prune(folder, 1)
    assert len(removed) == 2 and all(p.name.startswith("2025") for p in removed)
    assert {"results.json", "baseline-cpu.json", "20200101T000000.000000Z-cpu-11111111-abcdef.json"} <= {p.name for p in folder.iterdir()}
    _good_run(folder, 9)
    assert _history_cli(folder, "--prune-keep", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 1 run(s)")
    assert "results.json: not a run file (left alone)" in out and "baseline-cpu.json: not a run file (left alone)" in out


def test_prune_removes_stale_temporary_files_of_an_interrupted_write(tmp_path, capsys):
    folder = tmp_path / "h"
    run = _good_run(folder)
    # files.write_atomic's mkstemp(prefix=".<name>.", suffix=".tmp"): what a killed write leaves
    stale = folder / f".{run.name}.k3j_a9xq.tmp"
    fresh = folder / f".{run.name}.zz81bb0c.tmp"  # a write that may be under way right now
    other = folder / ".keep.tmp"  # not that pattern
    for p in (stale, fresh, other):
        p.write_text('{"half')
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert _history_cli(folder, "--prune-keep", "5", "--dry-run") == 0
    assert "would remove 1 stale temporary file(s)" in capsys.readouterr().out and stale.exists()
    assert _history_cli(folder, "--prune-keep", "5") == 0
    out = capsys.readouterr().out
    assert "removed 1 stale temporary file(s) older than 1 hour" in out
    assert not stale.exists() and fresh.exists() and other.exists() and run.exists()


# -- 4. only regular files are read --------------------------------------------------------------

LOAD_IN_A_CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression fails here, not the machine
    from pytest_e3p.storage.history import load_history
    runs, problems = load_history(sys.argv[1])
    print(len(runs))
    for p in problems:
        print(p)
    """
)


def _load_in_a_child(folder: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        out = subprocess.run([sys.executable, "-c", LOAD_IN_A_CHILD, str(folder)], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("load_history hung on an entry that is not a regular file")
    assert out.returncode == 0, out.stderr[-1500:]
    return out.stdout.splitlines()


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs POSIX FIFOs and /dev/zero")
def test_a_fifo_and_a_symlink_to_dev_zero_are_skipped_not_read(tmp_path):
    folder = tmp_path / "h"
    run = _good_run(folder)
    os.mkfifo(folder / "pipe.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "link.json").symlink_to(run)  # even to a good run: a link may point anywhere
    (folder / "dir.json").mkdir()
    lines = _load_in_a_child(folder)
    assert lines[0] == "1"
    assert sorted(lines[1:]) == [
        f"dir.json: {folder / 'dir.json'} is not a regular file (a directory): not a results file",
        f"link.json: {folder / 'link.json'} is not a regular file (a symbolic link): not a results file",
        f"pipe.json: {folder / 'pipe.json'} is not a regular file (a FIFO): not a results file",
        f"zero.json: {folder / 'zero.json'} is not a regular file (a symbolic link): not a results file",
    ]
    # a baseline named on the command line may be a link, but only to a regular file
    found, problems = dashboard.read_baselines([folder / "link.json", folder / "zero.json", folder / "pipe.json"])
    assert len(found) == 1 and problems == [
        f"{folder / 'zero.json'} is not a regular file (a character device): not a results file",
        f"{folder / 'pipe.json'} is not a regular file (a FIFO): not a results file",
    ]


def test_a_file_over_the_size_cap_is_skipped_unread(tmp_path, monkeypatch):
    folder = tmp_path / "h"
    _good_run(folder)
    big = folder / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(files.MAX_RESULTS_BYTES + 1)  # sparse: no disk used
    runs, problems = load_history(folder)
    assert len(runs) == 1 and problems == [f"big.json: {big} is larger than the 256 MiB a results file may be: not read"]


# -- 5. file names and modes ----------------------------------------------------------------------


def test_a_sha_or_device_with_a_slash_stays_in_the_folder(tmp_path):
    folder = tmp_path / "h"
    rf = results_file([case_result("a-cpu-synthetic", energy_mj=10.0)], device={"name": "../../etc/x", "identity": {}})
    path = append_run(rf, folder, {}, commit=CommitInfo(sha="ab/../../cd", branch="x"), when=T0)
    assert path.parent == folder and list(folder.iterdir()) == [path]
    assert re.fullmatch(r"20250301T120000\.000000Z-etc_x-ab______-[0-9a-f]{6}\.json", path.name), path.name
    assert load_history(folder)[0][0].commit.sha == "ab/../../cd"  # the file keeps the sha as recorded


def test_history_files_get_the_mode_of_every_other_output(tmp_path):
    old = os.umask(0o022)
    try:
        path = _good_run(tmp_path / "h")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# -- 7. error bars -------------------------------------------------------------------------------


def test_report_error_bars_are_multiplicative_and_never_below_zero():
    # a noisy case: linear mean 37, sd 54; mean - 2 sd would be -71 mJ
    c = case_result("n-cpu-synthetic", energy_mj_per_image=10.0, energy_mj_per_image_passes=[1.0, 10.0, 100.0], passes=3, energy_spread=1.46)
    lo, hi = energy_error_bars(c)
    assert 0 < lo < 10.0 < hi
    assert hi / 10.0 == pytest.approx(10.0 / lo)  # x/÷ one factor
    assert hi / 10.0 == pytest.approx(100.0)  # exp(2 sd of ln(1, 10, 100)) = exp(2 ln 10)
    one = case_result("o-cpu-synthetic", energy_mj_per_image=10.0, energy_mj_per_image_passes=[10.0], passes=1)
    assert energy_error_bars(one) == (10.0, 10.0)  # one pass: no spread is claimed


def test_report_plots_draw_a_dollar_in_a_name_as_text(tmp_path):
    cases = [
        case_result(
            f"$x^{{2$_{k}-$dev-$x^{{2$", model=f"$x^{{2$.m{k}", device="$dev", dataset="$x^{2$", energy_mj=10.0 + k, energy_mj_per_image=10.0 + k, top1=80.0 + k
        )
        for k in range(3)
    ]
    text = write_report([results_file(cases, device="$dev")], tmp_path / "rep").read_text()
    png = next((tmp_path / "rep").glob("accuracy_energy_*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in text
