import random

import pytest

from pytest_e3p import results
from pytest_e3p.baseline import (
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    UNCHANGED,
    IncompatibleBaseline,
    Tolerances,
    ToleranceError,
    compare_files,
    decide,
    decide_top1,
    parse_tolerances,
)


def noisy(median, cv, n=10, seed=0):
    rng = random.Random(seed)
    return [median * (1 + rng.gauss(0, cv)) for _ in range(n)]


def test_no_change_passes():
    check = decide("energy", "mJ/img", noisy(40, 0.03, seed=1), noisy(40, 0.03, seed=2), 0.05)
    assert check.verdict in (UNCHANGED, INCONCLUSIVE) and check.verdict != REGRESSED


def test_small_noise_below_tolerance_passes_even_when_significant():
    base = [40.0 + 0.01 * i for i in range(10)]
    cur = [41.0 + 0.01 * i for i in range(10)]  # +2.5%, every sample higher: significant, but within 5%
    assert decide("energy", "mJ/img", base, cur, 0.05).verdict == UNCHANGED


def test_a_real_shift_regresses_with_the_message_users_read():
    base = [37.9 + 0.1 * (i % 3) for i in range(10)]
    cur = [41.2 + 0.1 * (i % 3) for i in range(10)]
    check = decide("energy", "mJ/img", base, cur, 0.05)
    assert check.verdict == REGRESSED
    assert check.p_value < 0.01
    text = check.describe()
    assert text.startswith("energy 41.3 mJ/img vs baseline 38 (+8.7%, p=")
    assert text.endswith("> tolerance 5%)")


def test_a_shift_above_tolerance_that_is_not_significant_does_not_fail():
    base = [40, 30, 50, 35, 45]
    cur = [44, 33, 55, 30, 60]  # median +10%, but wildly overlapping
    assert decide("energy", "mJ/img", base, cur, 0.05).verdict == INCONCLUSIVE


def test_tiny_samples_cannot_be_tested_and_say_so():
    check = decide("energy", "mJ/img", [40, 40], [60, 60], 0.05)
    assert check.verdict == INCONCLUSIVE and "too few rounds" in check.note


def test_improvements_are_reported_not_failed():
    assert decide("energy", "mJ/img", noisy(40, 0.01), noisy(30, 0.01, seed=3), 0.05).verdict == IMPROVED


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


def make_case(cid="m-cpu-synthetic", energy=40.0, **kw):
    fields = dict(
        case_id=cid, model="m.tag", device="cpu", dataset="synthetic", batch_size=16, image_size=[3, 224, 224], precision="fp32",
        energy_kind="measured", energy_mj_per_image_samples=noisy(energy, 0.01), latency_ms_per_image_samples=noisy(5.0, 0.01),
    )
    fields.update(kw)
    return results.CaseResult(**fields)


def make_file(cases, device="cpu", hw="Xeon"):
    return results.ResultsFile(device={"name": device, "kind": "cpu", "identity": {"name": hw}}, environment={}, protocol={}, cases={c.case_id: c for c in cases})


def test_compare_files_lists_new_missing_and_regressed():
    base = make_file([make_case("a", 40), make_case("b", 40)])
    cur = make_file([make_case("a", 48), make_case("c", 40)])
    cmp = compare_files(base, cur, Tolerances())
    assert list(cmp.regressions) == ["a"]
    assert cmp.new == ["c"] and cmp.missing == ["b"]
    assert cmp.failed


def test_baselines_of_other_conditions_are_refused_naming_the_difference():
    with pytest.raises(IncompatibleBaseline, match="device 'rtx3050'"):
        compare_files(make_file([make_case()], device="rtx3050"), make_file([make_case()]), Tolerances())
    with pytest.raises(IncompatibleBaseline, match="measured on 'Xeon'"):
        compare_files(make_file([make_case()]), make_file([make_case()], hw="EPYC"), Tolerances())
    for change, words in [({"batch_size": 64}, "batch size differs"), ({"precision": "fp16"}, "precision differs"), ({"energy_kind": "estimate"}, "never compared with a measurement"), ({"image_size": [3, 256, 256]}, "image size"), ({"boundary": "sum of rails"}, "energy boundary differs")]:
        cmp = compare_files(make_file([make_case()]), make_file([make_case(**change)]), Tolerances())
        assert words in cmp.refused["m-cpu-synthetic"] and cmp.failed


def test_results_roundtrip_is_stable_sorted_and_atomic(tmp_path):
    f = make_file([make_case("b"), make_case("a")])
    path = tmp_path / "base.json"
    results.save(f, path)
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    again = results.load(path)
    assert again.cases["a"].energy_mj_per_image_samples == f.to_dict()["cases"]["a"]["energy_mj_per_image_samples"]
    results.save(again, path)
    assert path.read_text() == text  # saving what was read changes nothing: clean diffs
    assert [p.name for p in tmp_path.iterdir()] == ["base.json"]  # no temporary left behind


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"schema": "pytest-e3p/results", "schema_version": 1, "cases": {', "not valid JSON"),
        ('{"hello": 1}', "not a pytest-e3p results file"),
        ('{"schema": "pytest-e3p/results", "schema_version": 99, "cases": {}}', "schema version 99"),
        ('{"schema": "pytest-e3p/results", "schema_version": 1}', "malformed entry"),
    ],
)
def test_bad_baseline_files_get_one_clear_message(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(results.ResultsFileError, match=message):
        results.load(path)
    with pytest.raises(results.ResultsFileError, match="does not exist"):
        results.load(tmp_path / "missing.json")


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "base.json"
    path.write_text("old")

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken)
    with pytest.raises(OSError):
        results.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["base.json"]
