"""Every results format the project ever wrote loads, upgraded, with the same figures, and still gates.

The files in tests/data/ were written by the code of the commit in their name
(tests/data/make_results_files.py rebuilds them); every one holds the same three cases.
"""

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from pytest_e3p.cli import main
from pytest_e3p.gate.baseline import Tolerances, compare_files
from pytest_e3p.storage import SCHEMA_VERSION, UPGRADES, ResultsFileError, history, load, read_run, save, write_atomic
from pytest_e3p.storage.results import CaseResult
from pytest_e3p.storage.schema import CASE_FIELDS_ADDED_IN_2

DATA = Path(__file__).parent / "data"
DEIT = "deit_tiny_patch16_224.fb_in1k-cpu-synthetic"
LEVIT = "levit_128s.fb_in1k-cpu-synthetic"
VIT = "vit_small_patch16_224.augreg_in21k_ft_in1k-cpu-synthetic"
SKIPPED = "deit_tiny_patch16_224.fb_in1k-cpu-synthetic-prune-heads-25"  # in version 3 on
# (file, the schema version it was written in)
FILES = [
    ("results-v1-350b7f9.json", 1),
    ("results-v1-47b609a.json", 1),
    ("results-v2-fcfc3c8.json", 2),
    ("results-v2-28e43f3.json", 2),
    ("results-v2-e5938bc.json", 2),
    ("history-v2-fcfc3c8.json", 2),
    ("history-v2-e5938bc.json", 2),
    ("results-v3-feb1c46.json", 3),
    ("history-v3-feb1c46.json", 3),
]
NEWEST = "results-v3-feb1c46.json"


def test_there_is_an_example_file_of_every_version_and_only_these():
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(name for name, _ in FILES)
    assert {v for _, v in FILES} == {*UPGRADES, SCHEMA_VERSION}  # a new version needs its example file
    for name, version in FILES:
        assert json.loads((DATA / name).read_text())["schema_version"] == version


@pytest.mark.parametrize("name, version", FILES)
def test_every_format_loads_upgraded_with_the_same_figures(name, version):
    rf = load(DATA / name)
    assert rf.written_version == version
    assert rf.device["identity"]["name"].startswith("Intel(R) Core(TM) i7-8700")
    assert rf.created == "2025-11-02T10:00:00+00:00" and rf.environment["torch"] == "2.1.0"
    # version 3 keeps a requested case that did not run, with its reason and no figures
    assert set(rf.cases) == ({DEIT, LEVIT, VIT, SKIPPED} if version >= 3 else {DEIT, LEVIT, VIT})
    if version >= 3:
        skipped = rf.cases[SKIPPED]
        assert (skipped.status, skipped.variant, skipped.passes) == ("skipped", "prune-heads-25", 0) and "needs P >= 34" in skipped.reason
        assert skipped.energy_mj_per_image is skipped.latency_ms_per_image is skipped.top1 is skipped.sam is None
        assert skipped.runs("energy") == [] and skipped.vs_reference is None
    deit, levit, vit = rf.cases[DEIT], rf.cases[LEVIT], rf.cases[VIT]
    assert (deit.energy_mj_per_image, deit.latency_ms_per_image, deit.power_w) == (41.5, 12.25, 3.388)
    assert (deit.params_m, deit.gmacs, deit.top1_ref, deit.top1, deit.top5, deit.sam) == (5.717, 1.258, 72.2, 72.1, 91.1, 0.512)
    assert (deit.energy_kind, deit.energy_source, deit.boundary, deit.status) == ("measured", "RAPL package-0", "CPU package", "ok")
    assert (levit.energy_mj_per_image, levit.latency_ms_per_image) == (20.0, 6.5)
    assert (vit.status, vit.reason, vit.energy_mj_per_image, vit.pass_values("energy")) == ("failed", "RuntimeError: out of memory", None, [])
    # fields added later in version 2 read as what a file without them means
    assert (deit.variant, deit.protocol, deit.throttled_rounds, deit.memory, deit.sustained) == ("fp32", "e3p", 0, None, None)
    if version == 1:
        # one pass per case: its median over the rounds, the rounds kept as the samples
        assert (deit.passes, deit.pass_values("energy"), deit.pass_values("latency")) == (1, [41.5], [12.25])
        assert deit.energy_mj_per_image_samples == [41.0, 41.5, 42.0] and levit.pass_values("energy") == [20.0]
        assert deit.runs("energy") == [[41.5]] and deit.threads is None and rf.protocol["passes"] == 1
        assert f"schema version 1 read as version {SCHEMA_VERSION}" in rf.upgrade_note and name in rf.upgrade_note and "\n" not in rf.upgrade_note
    else:
        assert (deit.passes, deit.pass_values("energy"), deit.pass_values("latency")) == (3, [41.0, 41.5, 42.0], [12.0, 12.25, 12.5])
        assert deit.runs("energy") == [[40.5, 41.0, 41.2], [41.0, 41.5, 42.0]] and deit.threads == 4
        assert (rf.upgrade_note == "") == (version == SCHEMA_VERSION)
        # no file before version 3 compared a variant with fp32 pass by pass: none reads as compared
        assert deit.vs_reference is None
    assert deit.versions == ({} if "350b7f9" in name else {"torch": "2.1.0", "timm": "0.9.12", "pytest_e3p": "0.1.0", "python": "3.11.6"})
    assert deit.top1_ref_source == ("" if version == 1 or "fcfc3c8" in name else "timm results-imagenet.csv")


@pytest.mark.parametrize("name", [n for n, _ in FILES if n.startswith("results-")])
def test_an_old_baseline_still_gates(name):
    base = load(DATA / name)
    run = load(DATA / NEWEST)
    if base.written_version == 1:
        # version 1 did not record the thread count: a run that did is refused, naming it
        refused = compare_files(base, run, Tolerances())
        assert "threads differs: baseline None, this run 4" in refused.refused[DEIT]
        run.cases = {cid: dataclasses.replace(c, threads=None) for cid, c in run.cases.items()}

    def scaled(factor):
        cases = {cid: dataclasses.replace(c, energy_mj_per_image_passes=[v * factor for v in c.energy_mj_per_image_passes]) for cid, c in run.cases.items()}
        return dataclasses.replace(run, cases=cases)

    same = compare_files(base, scaled(1.0), Tolerances())
    assert [c.verdict for c in same.checks[DEIT]] == ["unchanged"] and not same.failed
    slower = compare_files(base, scaled(1.3), Tolerances())
    assert [c.verdict for c in slower.checks[DEIT]] == ["regressed"] and DEIT in slower.regressions
    assert VIT not in slower.checks and not slower.new and not slower.missing  # the failed case is not compared
    assert SKIPPED not in slower.checks  # nor the skipped one


def test_an_upgraded_file_saves_as_the_current_version_with_the_same_figures(tmp_path):
    old = load(DATA / "results-v1-47b609a.json")
    path = tmp_path / "baseline.json"
    save(old, path)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    again = load(path)
    assert again.upgrade_note == "" and again.to_dict() == old.to_dict()
    save(again, path)
    assert load(path).to_dict() == old.to_dict()


def test_the_upgrade_does_not_rewrite_the_file_it_read(tmp_path):
    path = tmp_path / "old.json"
    path.write_bytes((DATA / "results-v1-350b7f9.json").read_bytes())
    before = path.read_bytes()
    assert load(path).written_version == 1
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "version, message",
    [
        (4, r"schema version 4, newer than this pytest-e3p reads \(up to 3\): upgrade pytest-e3p"),
        (0, "schema version 0, which no pytest-e3p writes"),
        ("2", "schema version '2', which no pytest-e3p writes"),
        (True, "schema version True, which no pytest-e3p writes"),  # a bool is no version, though True == 1
        (None, "schema version None, which no pytest-e3p writes"),
    ],
)
def test_a_version_this_code_cannot_read_is_one_line_naming_the_fix(tmp_path, version, message):
    data = json.loads((DATA / NEWEST).read_text())
    data["schema_version"] = version
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsFileError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_malformed_old_file_is_one_line_not_a_crash_in_its_upgrade(tmp_path):
    path = tmp_path / "b.json"
    for cases, words in [
        ('{"a": 3}', "case 'a' is not an object"),
        ("[]", '"cases" must be an object'),
        ('{"a": {"case_id": "a", "model": "m", "device": "cpu", "dataset": "synthetic", "precision": "fp32", "energy_mj_per_image": "40"}}', "malformed entry"),
    ]:
        path.write_text(f'{{"schema": "pytest-e3p/results", "schema_version": 1, "device": {{"name": "cpu"}}, "cases": {cases}}}')
        with pytest.raises(ResultsFileError, match=words):
            load(path)


def test_the_fields_added_in_version_2_are_the_defaults_of_the_record_and_every_field_is_accounted_for():
    fields = dataclasses.fields(CaseResult)
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in fields
        if f.default_factory is not dataclasses.MISSING or f.default is not dataclasses.MISSING
    }
    minimal = {"case_id": "a", "model": "m", "device": "cpu", "dataset": "synthetic", "batch_size": 1, "image_size": [3, 224, 224], "precision": "fp32"}
    written = CaseResult.from_dict(minimal).to_dict()
    for key, value in CASE_FIELDS_ADDED_IN_2.items():
        # a record field (memory, sustained) is None in the record where a file holds {}: read and written both ways
        read = getattr(CaseResult.from_dict({**minimal, key: value}), key)
        assert read == defaults[key] and written[key] == value, f"CASE_FIELDS_ADDED_IN_2[{key!r}] is not what CaseResult says a missing {key} means"
    # the oldest file, upgraded, has every field of the record: a field added to CaseResult must be
    # listed in CASE_FIELDS_ADDED_IN_2 (a default), or get an upgrade function and a new version
    from pytest_e3p.storage.files import read_results

    upgraded = read_results(DATA / "results-v1-350b7f9.json").data["cases"][DEIT]
    assert {f.name for f in fields} - set(upgraded) == set()


@pytest.mark.parametrize("name, version", [(n, v) for n, v in FILES if n.startswith("history-")])
def test_history_files_read_with_every_field_of_their_cases(name, version, tmp_path, capsys):
    run = read_run(DATA / name)
    assert run.time == "2025-11-02T10:05:00.000000+00:00" and run.commit.label() == "1a2b3c4d (main)" and run.machine["hostname"] == "runner-1"
    assert run.device_key == "cpu (Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz)" and run.written_version == version
    case = run.cases[DEIT]
    assert set(case) >= {f.name for f in dataclasses.fields(CaseResult)}  # readers index, no .get defaults
    assert (case["energy_mj_per_image"], case["variant"], case["verdict"], case["memory"]) == (41.5, "fp32", "", {})
    assert run.verdicts() == {"not compared": 4 if version >= 3 else 3}
    if version >= 3:
        assert (run.cases[SKIPPED]["status"], run.cases[SKIPPED]["energy_mj_per_image"]) == ("skipped", None)


def test_the_history_command_says_once_that_old_runs_were_read_upgraded(tmp_path, capsys):
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / "20251102T100500.000000Z-cpu-1a2b3c4d-aaaaaa.json").write_bytes((DATA / "history-v3-feb1c46.json").read_bytes())
    for name in ("results-v1-350b7f9.json", "results-v1-47b609a.json"):  # results files copied in: read as runs
        (folder / name).write_bytes((DATA / name).read_bytes())
    assert main(["history", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.count("cpu (Intel") == 3
    assert err.count("\n") == 1 and f"note: 2 run(s) written in an older schema version, read as version {SCHEMA_VERSION}" in err


def test_compare_reads_an_old_baseline_with_one_note(tmp_path, capsys):
    run = load(DATA / NEWEST)
    run.cases = {cid: dataclasses.replace(c, threads=None) for cid, c in run.cases.items()}  # as version 1 measured
    current = tmp_path / "run.json"
    save(run, current)
    assert main(["compare", str(DATA / "results-v1-47b609a.json"), str(current)]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("note: ") and f"results-v1-47b609a.json: schema version 1 read as version {SCHEMA_VERSION}" in err
    assert DEIT in out
    assert main(["compare", str(DATA / NEWEST), str(DATA / NEWEST)]) == 0
    assert capsys.readouterr().err == ""  # a current file: nothing said


def test_exclusive_writes_never_replace_a_file_and_leave_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_atomic(path, "first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(path, "second", exclusive=True)
    assert path.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["run.json"]

    def no_hard_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)  # a file system without hard links: exclusive create
    write_atomic(tmp_path / "other.json", "third", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path / "other.json", "fourth", exclusive=True)
    assert (tmp_path / "other.json").read_text() == "third" and sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "run.json"]


def test_history_files_are_written_by_the_one_atomic_writer_with_the_umask_mode(tmp_path, monkeypatch):
    calls = []
    real = history.files.write_atomic

    def spy(path, data, **kw):
        calls.append(kw)
        return real(path, data, **kw)

    monkeypatch.setattr(history.files, "write_atomic", spy)
    old = os.umask(0o022)
    try:
        path = history.append_run(load(DATA / NEWEST), tmp_path / "h", {}, commit=history.CommitInfo(sha="b" * 40))
    finally:
        os.umask(old)
    assert calls == [{"exclusive": True}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the team, as every file write_atomic writes
    assert read_run(path).cases[DEIT]["energy_mj_per_image"] == 41.5


BENCH = """
def test_energy(e3p):
    e3p.measure()
"""
SHORT = ["--e3p-device=cpu", "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-rounds=2", "--e3p-min-round-s=0.05", "--e3p-warmup-s=0", "--e3p-idle-s=0"]
SHORT += ["--e3p-weights=random", "-p", "no:cacheprovider"]
ADDED_IN_2 = ["passes", "energy_mj_per_image_passes", "latency_ms_per_image_passes", "energy_spread", "latency_spread", "unstable", "earlier_runs"]
ADDED_IN_2 += ["verdict", "change_vs_baseline", "noise_vs_baseline", *CASE_FIELDS_ADDED_IN_2]


def test_a_run_against_a_version_1_baseline_says_so_once_and_saves_it_as_the_current_version(pytester):
    pytester.makepyfile(test_bench=BENCH)
    assert pytester.runpytest(*SHORT, "--e3p-save-baseline=base.json").ret == 0
    path = pytester.path / "base.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 1  # as version 1 wrote it: no pass values, no fields of version 2
    for case in data["cases"].values():
        for key in ADDED_IN_2:  # the thread count stays: this run's, so that the case gates
            case.pop(key)
    path.write_text(json.dumps(data))
    # no energy gate: a busy machine must not decide this test
    result = pytester.runpytest(*SHORT, "--e3p-baseline=base.json", "--e3p-save-baseline=base.json", "--e3p-tolerance=energy=off")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["?e3p? --e3p-baseline base.json: schema version 1 read as version 3*"])
    result.stdout.fnmatch_lines(["*baseline: previous base.json: schema version 1 read as version 3*"])
    assert result.stdout.str().count("schema version 1 read as version 3") == 2
    saved = json.loads(path.read_text())
    case = saved["cases"]["test_vit-cpu-synthetic"]
    assert saved["schema_version"] == SCHEMA_VERSION and case["earlier_runs"][0]["energy_mj_per_image_passes"] == [
        data["cases"]["test_vit-cpu-synthetic"]["energy_mj_per_image"]
    ]
