import os
import re
import stat

import pytest
from fakes.results import case_result, noisy, results_file

from pytest_e3p.gate.baseline import (
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    UNCHANGED,
    IncompatibleBaseline,
    ToleranceError,
    Tolerances,
    compare_files,
    decide,
    decide_top1,
    parse_tolerances,
)
from pytest_e3p.storage import results


def test_the_check_message_reads_plainly():
    base = [[37.9, 38.0, 38.1], [38.2, 38.0, 37.8]]
    check = decide("energy", "mJ/img", base, [43.0, 43.1, 42.9], 0.05)
    assert check.verdict == REGRESSED and check.p_value < 0.01 and check.baseline_runs == 2
    assert check.describe().startswith("energy +13.2% vs baseline (tolerance 5%, noise +/-")
    assert "p=" in check.describe() and check.describe().endswith("baseline of 2 runs): 43 vs 38 mJ/img")


def test_within_tolerance_is_unchanged_even_when_significant():
    base = [[40.0, 40.01, 40.02]]
    assert decide("energy", "mJ/img", base, [41.0, 41.01, 41.02], 0.05).verdict == UNCHANGED  # +2.5%


def test_beyond_tolerance_but_within_noise_is_inconclusive_and_says_so():
    base = [[40, 30, 50], [35, 45, 40]]
    check = decide("energy", "mJ/img", base, [44, 48, 39], 0.05)
    assert check.verdict == INCONCLUSIVE and "within the noise" in check.note


def test_improvements_are_reported_not_failed():
    assert decide("energy", "mJ/img", [noisy(40, 0.01, 3)], noisy(30, 0.01, 3, seed=3), 0.05).verdict == IMPROVED


def test_top1_compares_in_points():
    assert decide_top1(80.0, 79.6, 0.5).verdict == UNCHANGED
    assert decide_top1(80.0, 79.4, 0.5).verdict == REGRESSED


def test_tolerance_strings():
    assert parse_tolerances("energy=5%,latency=10%,top1=0.5") == Tolerances(0.05, 0.10, 0.5)
    assert parse_tolerances("") == Tolerances(0.05, None, None)
    assert parse_tolerances("energy=0.08") == Tolerances(0.08, None, None)
    assert parse_tolerances("energy=off,latency=3%") == Tolerances(None, 0.03, None)
    for bad in ("energy", "power=5%", "energy=five", "latency=-1%"):
        with pytest.raises(ToleranceError):
            parse_tolerances(bad)


@pytest.mark.parametrize(
    "text, words",
    [
        ("energy=nan", "finite"),
        ("energy=inf", "finite"),
        ("latency=-inf%", "finite"),
        ("energy=5", "would mean 500%; write 5% for 5 percent, or a fraction such as 0.05"),
    ],
)
def test_tolerances_that_would_switch_the_gate_off_are_refused(text, words):
    with pytest.raises(ToleranceError, match=re.escape(words)):
        parse_tolerances(text)
    assert parse_tolerances("energy=150%").energy == 1.5  # explicit percent is taken as written
    assert parse_tolerances("top1=2").top1 == 2.0  # points, not a fraction


def test_compare_files_lists_new_missing_and_regressed():
    base = results_file([case_result("a", energy_mj=40), case_result("b", energy_mj=40)])
    cur = results_file([case_result("a", energy_mj=48), case_result("c", energy_mj=40)])
    cmp = compare_files(base, cur, Tolerances())
    assert list(cmp.regressions) == ["a"]
    assert cmp.new == ["c"] and cmp.missing == ["b"]
    assert cmp.failed


def test_baselines_of_other_conditions_are_refused_naming_the_difference():
    with pytest.raises(IncompatibleBaseline, match="device 'rtx3050'"):
        compare_files(results_file([case_result(energy_mj=40.0)], "rtx3050"), results_file([case_result(energy_mj=40.0)]), Tolerances())
    with pytest.raises(IncompatibleBaseline, match="measured on 'Xeon'"):
        compare_files(
            results_file([case_result(energy_mj=40.0)], identity={"name": "Xeon"}),
            results_file([case_result(energy_mj=40.0)], identity={"name": "EPYC"}),
            Tolerances(),
        )
    for change, words in [
        ({"batch_size": 64}, "batch size differs"),
        ({"precision": "fp16"}, "precision differs"),
        ({"energy_kind": "estimate"}, "never compared with a measurement"),
        ({"image_size": [3, 256, 256]}, "image size"),
        ({"boundary": "sum of rails"}, "energy boundary differs"),
    ]:
        cmp = compare_files(results_file([case_result(energy_mj=40.0)]), results_file([case_result(energy_mj=40.0, **change)]), Tolerances())
        assert words in cmp.refused["m-cpu-synthetic"] and cmp.failed


def test_results_roundtrip_is_stable_sorted_and_atomic(tmp_path):
    f = results_file([case_result("b", energy_mj=40.0), case_result("a", energy_mj=40.0)])
    path = tmp_path / "base.json"
    results.save(f, path)
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    again = results.load(path)
    assert again.cases["a"].energy_mj_per_image_samples == f.to_dict()["cases"]["a"]["energy_mj_per_image_samples"]
    results.save(again, path)
    assert path.read_text() == text  # saving what was read changes nothing: clean diffs
    assert [p.name for p in tmp_path.iterdir()] == ["base.json"]  # no temporary left behind


CASE = (
    '{"schema": "pytest-e3p/results", "schema_version": 2, "device": {"name": "cpu"}, "cases": {"a": {"case_id": "a", "model": "m", '
    '"device": "cpu", "dataset": "synthetic", "precision": "fp32", "batch_size": 16, "image_size": [3, 224, 224], '
    '"energy_mj_per_image_passes": PASSES}}}'
)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"schema": "pytest-e3p/results", "schema_version": 2, "cases": {', "not valid JSON"),
        ('{"hello": 1}', "not a pytest-e3p results file"),
        ('{"schema": "pytest-e3p/results", "schema_version": 99, "cases": {}}', "schema version 99"),
        ('{"schema": "pytest-e3p/results", "schema_version": 4, "cases": {}}', "schema version 4, newer than this pytest-e3p reads .*: upgrade pytest-e3p"),
        ('{"schema": "pytest-e3p/results", "schema_version": 2}', "malformed entry"),
        ('{"schema": "pytest-e3p/results", "schema_version": 2, "device": "cpu", "cases": {}}', 'malformed entry: "device" must be an object'),
        (CASE.replace("PASSES", "[40.0, NaN]"), "'energy_mj_per_image_passes' must be a list of positive numbers"),
        (CASE.replace("PASSES", "[0, 0, 0]"), "'energy_mj_per_image_passes' must be a list of positive numbers"),
        (CASE.replace("PASSES", '["40", "41"]'), "'energy_mj_per_image_passes' must be a list of positive numbers"),
        (CASE.replace('"precision": "fp32"', '"precision": 32').replace("PASSES", "[1.0]"), "'precision' must be a string"),
    ],
)
def test_bad_baseline_files_get_one_clear_message(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(results.ResultsFileError, match=message):
        results.load(path)
    with pytest.raises(results.ResultsFileError, match="does not exist"):
        results.load(tmp_path / "missing.json")


def test_non_utf8_bytes_are_one_clear_message(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b'{"schema": "\xff\xfe"}')
    with pytest.raises(results.ResultsFileError, match="not UTF-8"):
        results.load(path)


def test_written_files_honour_the_umask_and_keep_the_mode_they_replace(tmp_path):
    old = os.umask(0o022)
    try:
        results.write_atomic(tmp_path / "new.json", "x")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        shared = tmp_path / "shared.json"
        shared.write_text("old")
        shared.chmod(0o664)
        results.write_atomic(shared, "new")
        assert stat.S_IMODE(shared.stat().st_mode) == 0o664 and shared.read_text() == "new"
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "base.json"
    path.write_text("old")

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        results.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["base.json"]
