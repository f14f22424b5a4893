"""The deployment profile as users run it (pytester): batch and image size as case axes (ids,
results, baseline keys, a size a model cannot take), the memory budget failing as a test, throttled
rounds from a fake thermal zone marked in the table and turning a regression into "inconclusive
(throttled)", and the sustained mode's windows."""

import json

import pytest
from fakes.results import case_result
from fakes.runs import SCRIPTED, SHORT
from fakes.thermal_zones import hot_cpu

from pytest_e3p.storage.records import EarlierRun

BENCH = """
def test_energy(e3p):
    e3p.measure()
"""
FAST = SHORT


@pytest.fixture
def bench(pytester):
    pytester.makepyfile(test_bench=BENCH)
    return pytester


def test_batch_and_image_size_are_axes_with_their_own_ids_results_and_baseline_keys(bench):
    args = [*FAST, "--e3p-models=test_vit", "--e3p-batch-size=1,2", "--e3p-image-size=auto,96", "-v"]
    first = bench.runpytest(*args, "--e3p-results=r.json", "--e3p-save-baseline=base.json")
    first.assert_outcomes(passed=4)
    first.stdout.fnmatch_lines(
        [
            "*test_energy?test_vit-cpu-synthetic-bs1-160px? PASSED*",
            "*test_energy?test_vit-cpu-synthetic-bs1-96px? PASSED*",
            "*test_energy?test_vit-cpu-synthetic-bs2-160px? PASSED*",
            "*test_energy?test_vit-cpu-synthetic-bs2-96px? PASSED*",
            "*latency (smallest batch) against throughput (largest batch)*",
            "*energy per image against resolution*",
        ]
    )
    cases = json.loads((bench.path / "r.json").read_text())["cases"]
    small = cases["test_vit-cpu-synthetic-bs1-96px"]
    assert small["batch_size"] == 1 and small["image_size"] == [3, 96, 96]
    assert cases["test_vit-cpu-synthetic-bs2-160px"]["image_size"] == [3, 160, 160]
    # MACs are counted at the case's own resolution: (96/160)^2 of the patches, fewer tokens
    assert small["gmacs"] < 0.5 * cases["test_vit-cpu-synthetic-bs1-160px"]["gmacs"]
    base = json.loads((bench.path / "base.json").read_text())["cases"]
    assert set(base) == set(cases)
    again = bench.runpytest(*args, "--e3p-baseline=base.json", "--e3p-tolerance=energy=1000%", "--e3p-results=r2.json")
    again.assert_outcomes(passed=4)
    compared = json.loads((bench.path / "r2.json").read_text())["cases"]
    assert all(c["change_vs_baseline"] is not None for c in compared.values())  # each against its own key


def test_one_size_other_than_the_models_own_is_named_and_a_repeated_size_is_one_case(bench):
    result = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-image-size=96", "--e3p-passes=1", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_energy?test_vit-cpu-synthetic-96px? PASSED*"])
    same = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-image-size=auto,160", "--e3p-passes=1", "-v")
    same.assert_outcomes(passed=1)  # auto is 160 for this model: one case, named as the model's own
    same.stdout.fnmatch_lines(["*test_energy?test_vit-cpu-synthetic? PASSED*"])


def test_a_size_the_model_cannot_take_is_a_skipped_case_saying_why(bench):
    result = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-image-size=96,100", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*test_vit.r160_in1k cannot take 100 x 100 input: *divisible by patch size*"])


def test_a_size_the_memory_cannot_hold_is_a_skipped_case_before_anything_is_allocated(bench):
    """Issue 25: --e3p-image-size 100000 allocated a 10 GB position embedding, then failed with a
    traceback. The size is checked against the host's memory before the model is built."""
    result = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-image-size=96,100000", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*image size 100000 needs about * GiB for test_vit*but the host has * GiB available*"])
    assert "Traceback" not in result.stdout.str()


def test_a_peak_over_the_memory_budget_fails_that_case_as_a_test(bench):
    result = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-max-memory-mb=1", "--e3p-results=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_vit-cpu-synthetic: peak memory * MiB > budget 1 MiB (--e3p-max-memory-mb): *"])
    case = json.loads((bench.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic"]
    assert case["status"] == "failed" and case["peak_memory_mb"] > 1
    ok = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-max-memory-mb=100000")
    ok.assert_outcomes(passed=1)


def test_throttled_rounds_are_marked_and_a_regression_on_a_throttled_device_is_inconclusive(bench, sysfs_root):
    hot_cpu(sysfs_root, 45)
    # on the scripted machine: exact figures, so the slower run regresses whatever else the machine runs
    # batches of 2 at 100 ms/img: one forward call fills a round of 0.2 s
    args = [
        *FAST,
        *SCRIPTED,
        "--e3p-models=test_vit",
        "--e3p-passes=3",
        "--e3p-rounds=3",
        "--e3p-min-round-s=0.2",
        "--e3p-batch-size=2",
        "--scripted-ms-per-image=100",
    ]
    first = bench.runpytest(*args, "--e3p-save-baseline=base.json")
    first.assert_outcomes(passed=1)
    base = json.loads((bench.path / "base.json").read_text())["cases"]["test_vit-cpu-synthetic"]
    assert base["throttled_rounds"] == 0 and base["temperature_c_max"] == 45.0
    hot_cpu(sysfs_root, 95)  # past the passive trip point in every round of the next run
    # a run that is 3 times slower against a cool baseline: regressed, unless the device throttled
    hot = bench.runpytest(*args, "--e3p-baseline=base.json", "--scripted-ms-per-image=300", "--e3p-results=r.json")
    hot.assert_outcomes(passed=1)
    hot.stdout.fnmatch_lines(["*throttled 9/9*inconclusive (throttled)*"])
    case = json.loads((bench.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic"]
    assert case["throttled_rounds"] == 9 and case["verdict"] == "inconclusive" and case["temperature_c_max"] == 95.0
    assert any("passive trip" in r for r in case["throttle_reasons"])


def _session(**overrides):
    from pytest_e3p.config import DEFAULTS, SPEC, Options
    from pytest_e3p.run.session import E3PSession

    values = {name: parse(overrides.get(name, DEFAULTS[name])) for name, _flag, _d, parse, _h in SPEC}
    return E3PSession(Options(**values))


def _case(passes, throttled=0, earlier=()):
    r = case_result(model="m", energy_source="rapl", threads=2)
    r.energy_mj_per_image_passes = list(passes)
    r.latency_ms_per_image_passes = list(passes)
    r.energy_mj_per_image = sorted(passes)[len(passes) // 2]
    r.throttled_rounds, r.round_throttled = throttled, [True] * throttled + [False] * (15 - throttled)
    r.earlier_runs = [EarlierRun(energy_mj_per_image_passes=list(e), latency_ms_per_image_passes=list(e)) for e in earlier]
    return r


@pytest.mark.parametrize("throttled, verdict", [(0, "regressed"), (4, "inconclusive")])
def test_a_regression_of_a_run_that_throttled_against_a_cool_baseline_is_inconclusive_throttled(throttled, verdict):
    from pytest_e3p.gate.baseline import priors
    from pytest_e3p.storage.results import ResultsFile

    runs = [[100.0, 101.0, 99.5], [100.5, 99.0, 100.2], [99.8, 100.9, 100.1], [100.3, 99.6, 100.4]]
    base = _case(runs[-1], earlier=runs[:-1])
    session = _session()
    session.baseline = ResultsFile({"name": "cpu"}, {}, {}, {base.case_id: base})
    session.priors = priors(session.baseline)
    current = _case([130.0, 131.0, 129.5], throttled=throttled)  # +30 %, far beyond the noise
    checks = session.record(current)
    energy = next(c for c in checks if c.metric == "energy")
    assert energy.verdict == verdict and current.verdict == verdict
    if throttled:
        assert energy.note.startswith("inconclusive (throttled): the device throttled in 4 of 15 rounds of this run")


def test_sustained_mode_reports_windows_and_drift_and_draws_the_plot(bench):
    pytest.importorskip("matplotlib")
    # on the scripted machine: each batch takes the same scripted time, so the windows are the same however busy the host is
    result = bench.runpytest(
        *FAST, *SCRIPTED, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-sustained-s=0.6", "--e3p-sustained-window-s=0.2", "--e3p-results=out/r.json"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*sustained runs: first -> last 60 s*", "*test_vit-cpu-synthetic*", "*sustained plots written: *sustained_test_vit-cpu-synthetic.png*"]
    )
    run = json.loads((bench.path / "out/r.json").read_text())["cases"]["test_vit-cpu-synthetic"]["sustained"]
    assert run["requested_s"] == 0.6 and run["window_s"] == 0.2 and 2 <= len(run["windows"]) <= 3
    assert run["duration_s"] >= 0.6 and sum(w["images"] for w in run["windows"]) == run["images"]
    assert "energy_mj_per_image" in run["drift"] and (bench.path / "out/sustained_test_vit-cpu-synthetic.png").read_bytes()[:4] == b"\x89PNG"


def test_a_checkpoint_loads_into_a_model_built_at_another_resolution(tmp_path):
    import timm
    import torch

    from pytest_e3p.models.build import build_model
    from pytest_e3p.models.zoo import parse_model

    torch.save(timm.create_model("test_vit", num_classes=10).state_dict(), tmp_path / "ck.pth")  # at its own 160 px
    net, weights = build_model(parse_model("test_vit"), checkpoint=tmp_path / "ck.pth", num_classes=10, image_size=96)
    assert weights.source == "checkpoint" and net(torch.zeros(1, 3, 96, 96)).shape == (1, 10)


def test_a_machine_without_proc_runs_its_cases_without_peak_memory(bench, monkeypatch):
    import importlib

    # the module in sys.modules, which the inner run imports (an earlier inner run may have dropped it)
    memory = importlib.import_module("pytest_e3p.measure.memory")

    def no_proc(self):
        raise memory.MemoryUnavailable("/proc/self/status cannot be read (not Linux)")

    monkeypatch.setattr(memory.PeakMemory, "reset", no_proc)
    result = bench.runpytest(*FAST, "--e3p-models=test_vit", "--e3p-results=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*peak memory unavailable: /proc/self/status cannot be read (not Linux)*"])
    assert json.loads((bench.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic"]["peak_memory_mb"] is None
