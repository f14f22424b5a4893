"""The run layer: the case record made once and handed to pytest_e3p_case_result when final, the
model built once per case, and the null sensor that measures nothing."""

import json

import pytest

from pytest_e3p.hardware.sensors import UNAVAILABLE, NullSensor, SensorUnavailable
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.protocols import Protocol, run_edgevit, run_protocol

FAST = [
    "--e3p-device=cpu",
    "--e3p-models=test_vit",
    "--e3p-batch-size=2",
    "--e3p-passes=2",
    "--e3p-rounds=3",
    "--e3p-min-round-s=0.02",
    "--e3p-warmup-s=0",
    "--e3p-idle-s=0",
    "--e3p-weights=random",
    "-p",
    "no:cacheprovider",
    "--e3p-save-noisy-baseline",  # short, real-timed runs cannot gate 5 %: the fit-to-gate check would refuse their baselines
    "-p",
    "no:benchmark",
]
BENCH = "def test_energy(e3p):\n    e3p.measure()\n"


def test_the_case_result_hook_sees_the_final_record_with_its_verdict(pytester):
    pytester.makeconftest(
        """
import json

def pytest_e3p_case_result(config, result):
    with open("seen.json", "a") as f:
        f.write(json.dumps({"id": result.case_id, "verdict": result.verdict, "change": result.change_vs_baseline, "sam_note": result.sam_note}) + "\\n")
"""
    )
    pytester.makepyfile(test_bench=BENCH)
    # a generous tolerance: a busy machine must not turn the second run into a failure
    pytester.runpytest(*FAST, "--e3p-save-baseline=base.json").assert_outcomes(passed=1)
    pytester.runpytest(*FAST, "--e3p-baseline=base.json", "--e3p-tolerance=energy=1000%,latency=1000%", "--e3p-results=r.json").assert_outcomes(passed=1)
    first, second = [json.loads(line) for line in (pytester.path / "seen.json").read_text().splitlines()]
    assert first["id"] == second["id"] == "test_vit-cpu-synthetic"
    assert first["verdict"] == "" and first["change"] is None  # no baseline: nothing compared
    case = json.loads((pytester.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic"]
    # the hook fired after the comparison: it saw the verdict and the change the file records
    assert second["verdict"] != "" and second["verdict"] == case["verdict"]
    # the file keeps 6 significant digits
    assert second["change"] is not None and second["change"] == pytest.approx(case["change_vs_baseline"], rel=1e-5)
    assert second["sam_note"] == case["sam_note"] and second["sam_note"]  # SAM's notes were made before


# a conftest that counts the model builds of a run and prints the count at its end
COUNT_BUILDS = """
import pytest_e3p.run.loading as loading

builds = []
real = loading.build_model

def counting(*args, **kwargs):
    builds.append(args[0].full)
    return real(*args, **kwargs)

loading.build_model = counting

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"models built: {len(builds)}")
"""


def test_the_model_of_a_case_is_built_once_for_all_its_passes_and_its_test(pytester):
    pytester.makeconftest(COUNT_BUILDS)
    pytester.makepyfile(test_bench="def test_energy(e3p, e3p_model):\n    assert e3p.loaded is e3p_model\n    e3p.measure()\n")
    result = pytester.runpytest(*FAST, "--e3p-passes=3")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["models built: 1"])


def test_under_a_memory_budget_the_model_is_built_again_for_each_pass(pytester):
    pytester.makeconftest(COUNT_BUILDS)
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "--e3p-passes=3", "--e3p-max-memory-mb=100000")
    result.assert_outcomes(passed=1)
    # passes 1 and 2 each build it and drop it after; the last pass uses the test's own
    result.stdout.fnmatch_lines(["models built: 3"])


def test_the_null_sensor_says_why_and_never_gives_a_number():
    sensor = NullSensor("no NVML here")
    assert sensor.info.kind == sensor.info.name == UNAVAILABLE and sensor.info.boundary == "no NVML here"
    with pytest.raises(SensorUnavailable, match="no NVML here"):
        sensor.read()


@pytest.mark.parametrize("protocol", ["e3p", "edgevit"])
def test_without_a_sensor_the_rounds_have_no_energy_and_are_as_long_as_asked(protocol):
    t = [0.0]

    def forward():
        t[0] += 0.0625  # a binary fraction: exact sums

    ctx = MeasureContext(sensor=NullSensor("none"), clock=lambda: t[0])
    proto = Protocol(batch_size=1, rounds=2, passes=1, min_round_s=0.25, warmup_s=0.0, idle_s=1.0, name=protocol, inferences=4)
    steady = run_edgevit(forward, ctx, proto) if protocol == "edgevit" else run_protocol(forward, 1, ctx, proto)
    assert steady.energy_mj_per_image is None and steady.power_w is None and steady.idle_power_w is None
    assert all(r.energy_mj is None for r in steady.rounds) and steady.sensor.kind == UNAVAILABLE
    if protocol == "e3p":
        assert [r.images for r in steady.rounds] == [4, 4]  # 0.25 s rounds of 0.0625 s calls: min_round_s alone
    else:
        assert len(steady.rounds) == 4 and steady.per_inference
