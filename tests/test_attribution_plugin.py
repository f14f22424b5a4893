"""--e3p-attribution as users run it: pytest in-process (pytester) on the scripted machine."""

import json

import pytest
from fakes.runs import SCRIPTED, SHORT

BENCH = """
def test_energy(e3p, benchmark):
    e3p.measure(benchmark)
"""


@pytest.fixture
def bench(pytester):
    pytester.makepyfile(test_bench=BENCH)
    return pytester


def run(pytester, *args):
    return pytester.runpytest(*SHORT, *SCRIPTED, "--e3p-batch-size=2", "--e3p-models=test_vit", "--e3p-results=out/results.json", *args)


def case_of(pytester):
    data = json.loads((pytester.path / "out/results.json").read_text())
    return next(iter(data["cases"].values()))


def test_the_cost_line_the_table_and_the_record_and_the_case_figures_unchanged(bench):
    plain = run(bench)
    plain.assert_outcomes(passed=1)
    before = case_of(bench)
    assert before["attribution"] is None
    result = run(bench, "--e3p-attribution", "--e3p-report=rep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*attribution: both methods: up to 5 truncated models and the whole model per case measured after the passes*",
            "*where the energy goes: test_vit-cpu-synthetic*",
            "*part*time share %*Method 1 mJ/img*Method 2 mJ/img +/- noise*",
            "stem *",
            "*Method 1: attributed by time share*",
        ]
    )
    case = case_of(bench)
    a = case["attribution"]
    assert a["mode"] == "both" and a["method1_label"] == "attributed by time share" and a["method2_label"] == "differential measurement"
    assert a["energy_kind"] == "measured" and a["case_energy_mj_per_image"] == case["energy_mj_per_image"]
    assert [g["name"] for g in a["groups"]][0] == "stem" and a["groups"][-1]["name"] == "other"
    assert {p["role"] for p in a["parts"]} >= {"stem", "attention", "mlp", "norm", "head"}
    assert a["method1_sum_ok"] is True
    assert sum(p["method1_mj_per_image"] for p in a["parts"]) == pytest.approx(case["energy_mj_per_image"], rel=0.02)
    # the scripted machine's clock moves only in the case's own forward: Method 2 says it did not run
    assert a["prefixes"] == [] and any("clock does not advance" in n for n in a["notes"])
    # the case's own figures: the scripted 25 ms/img at 10 W, the same with and without attribution
    for key in ("energy_mj_per_image", "latency_ms_per_image", "energy_mj_per_image_passes", "energy_mj_per_image_samples", "power_w"):
        assert case[key] == before[key], key
    assert case["energy_mj_per_image"] == pytest.approx(250.0)
    report = (bench.path / "rep/report.md").read_text()
    assert "Where the energy goes (--e3p-attribution)" in report and "*where the energy goes: test_vit-cpu-synthetic*" in report


def test_time_only_is_method1_alone(bench):
    result = run(bench, "--e3p-attribution=time")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*attribution: time share only (Method 1)*", "*where the energy goes: test_vit-cpu-synthetic*", "*Method 2: not run*"])
    a = case_of(bench)["attribution"]
    assert a["mode"] == "time" and a["prefixes"] == [] and all(g["method2_mj_per_image"] is None for g in a["groups"])
    assert not any("clock" in n for n in a["notes"])


def test_off_by_default_and_a_bad_value_is_one_line(bench):
    result = run(bench, "--e3p-attribution=sometimes")
    assert result.ret != 0
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "attribution" in result.stdout.str() + result.stderr.str()


def test_method2_in_a_run_measures_each_truncated_model_on_the_case_sensor_and_protocol(bench):
    # fakes.scripted_prefixes: prefix k of n takes (k + 1) / n of the case's scripted 25 ms/img at 10 W
    result = run(bench, "-p", "fakes.scripted_prefixes", "--e3p-attribution")
    result.assert_outcomes(passed=1)
    case = case_of(bench)
    a = case["attribution"]
    names = [p["name"] for p in a["prefixes"]]
    assert names[0] == "stem" and names[1].startswith("stem + block 0") and names[-1] == "whole model"
    n = len(names)
    assert n == len(a["groups"]) - 1  # a prefix per group ("other" is Method 1's alone)
    assert all(len(p["energy_mj_per_image_passes"]) == 2 for p in a["prefixes"])  # the run's --e3p-passes=2
    assert [p["energy_mj_per_image"] for p in a["prefixes"]] == pytest.approx([250.0 * (k + 1) / n for k in range(n)])
    assert a["prefixes_monotone"] is True and a["whole_matches_case"] is True
    groups = {g["name"]: g for g in a["groups"]}
    assert [g["method2_mj_per_image"] for g in a["groups"][:-1]] == pytest.approx([250.0 / n] * n)
    assert groups["stem"]["method2_noise_mj_per_image"] == pytest.approx(0.0, abs=1e-6)
    # the stem and head are a sliver of the time: Method 1 puts far less than a quarter there, and the flag says so
    assert groups["head"]["method1_mj_per_image"] < 250.0 / n and groups["head"]["disagree"] is True
    assert case["energy_mj_per_image"] == pytest.approx(250.0)
