"""Every case a run asks for is accounted for (issue 29): a skipped case (a variant that cannot run
here, a skip in the benchmark's body) is in the results file and the history with its reason and no
figures, is never compared, and never enters a baseline as a measured run. The issue's example:
prune-heads-25 on deit_tiny was skipped ("removes no head of 3 per block") and vanished from
results.json, the e3p table and the report; its reason showed only with -rs."""

import json

import pytest
from fakes.runs import SCRIPTED, SHORT

from pytest_e3p.storage import load

RUN = [*SHORT, *SCRIPTED, "--e3p-models=test_vit", "--e3p-results=r.json"]
SKIP_BF16_TODAY = """
import pytest

def test_energy(e3p):
    if e3p.case.variant == "bf16":
        pytest.skip("bf16 is off on this runner today")
    e3p.measure()
"""
FIGURES = [
    "energy_mj_per_image",
    "latency_ms_per_image",
    "power_w",
    "top1",
    "sam",
    "params_m",
    "gmacs",
    "peak_memory_mb",
    "vs_reference",
    "change_vs_baseline",
]
LISTS = ["energy_mj_per_image_passes", "latency_ms_per_image_passes", "energy_mj_per_image_samples", "latency_ms_per_image_samples", "earlier_runs"]


def test_a_variant_that_cannot_run_here_is_in_the_results_and_history_with_its_reason_and_no_figure(pytester):
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    # no -rs: the skip must not need it to be seen in the files
    result = pytester.runpytest(*RUN, "--e3p-variants=fp32,tensorrt", "--e3p-history=h", "--e3p-save-baseline=base.json")
    result.assert_outcomes(passed=1, skipped=1)
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["schema_version"] == 3
    skipped = data["cases"]["test_vit-cpu-synthetic-tensorrt"]
    assert (skipped["status"], skipped["variant"], skipped["device"], skipped["batch_size"]) == ("skipped", "tensorrt", "cpu", 16)
    assert "tensorrt needs an NVIDIA GPU" in skipped["reason"] and "\n" not in skipped["reason"]
    assert all(skipped[key] is None for key in FIGURES) and all(skipped[key] == [] for key in LISTS)
    assert (skipped["passes"], skipped["energy_kind"], skipped["weights"], skipped["verdict"]) == (0, "unavailable", "", "")
    # the skipped case measured nothing: the run's energy source is the one the measured case used
    assert data["protocol"]["energy_kind"] != "mixed" and data["cases"]["test_vit-cpu-synthetic"]["status"] == "ok"
    # read back as a record, and appended to the history
    assert load(pytester.path / "r.json").cases["test_vit-cpu-synthetic-tensorrt"].status == "skipped"
    (run_file,) = (pytester.path / "h").glob("*.json")
    assert json.loads(run_file.read_text())["cases"]["test_vit-cpu-synthetic-tensorrt"]["status"] == "skipped"
    # a skip is no failure of the run: the baseline is written, with the measured case only
    base = json.loads((pytester.path / "base.json").read_text())
    assert set(base["cases"]) == {"test_vit-cpu-synthetic"}


def test_a_baseline_case_now_skipped_is_not_compared_says_why_and_keeps_its_baseline_entry(pytester):
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    args = [*RUN, "--e3p-variants=fp32,bf16"]
    pytester.runpytest(*args, "--e3p-save-baseline=base.json").assert_outcomes(passed=2)
    before = json.loads((pytester.path / "base.json").read_text())["cases"]["test_vit-cpu-synthetic-bf16"]
    pytester.makepyfile(test_bench=SKIP_BF16_TODAY)
    result = pytester.runpytest(*args, "--e3p-baseline=base.json", "--e3p-save-baseline=base.json", "--e3p-tolerance=energy=1000%")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*test_vit-cpu-synthetic-bf16: not compared: skipped (bf16 is off on this runner today)*"])
    case = json.loads((pytester.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic-bf16"]
    assert (case["status"], case["reason"], case["verdict"], case["change_vs_baseline"]) == ("skipped", "bf16 is off on this runner today", "", None)
    # the baseline was refreshed (the run passed) and keeps the skipped case's measured entry as it was
    after = json.loads((pytester.path / "base.json").read_text())["cases"]
    assert after["test_vit-cpu-synthetic-bf16"] == before and after["test_vit-cpu-synthetic"]["earlier_runs"]
    result.stdout.fnmatch_lines(["*kept from the previous baseline (not run now): test_vit-cpu-synthetic-bf16*"])


@pytest.mark.parametrize("how", ["fixture", "body"])
def test_the_case_result_hook_sees_a_skipped_case_once(pytester, how):
    pytester.makeconftest(
        "seen = []\n\ndef pytest_e3p_case_result(config, result):\n    seen.append((result.case_id, str(result.status)))\n\n"
        "def pytest_terminal_summary(terminalreporter):\n    terminalreporter.write_line(f'hook saw: {sorted(seen)}')\n"
    )
    if how == "fixture":  # the e3p_model fixture skips it: a variant this machine cannot run
        pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
        variants, skipped = "fp32,tensorrt", "test_vit-cpu-synthetic-tensorrt"
    else:
        pytester.makepyfile(test_bench=SKIP_BF16_TODAY)
        variants, skipped = "fp32,bf16", "test_vit-cpu-synthetic-bf16"
    result = pytester.runpytest(*RUN, f"--e3p-variants={variants}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"hook saw: [('test_vit-cpu-synthetic', 'ok'), ('{skipped}', 'skipped')]"])


def test_a_skipped_test_that_is_no_benchmark_is_no_case(pytester):
    pytester.makepyfile(
        test_bench="""
import pytest

def test_energy(e3p):
    e3p.measure()

def test_unrelated():
    pytest.skip("not a benchmark")
"""
    )
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=1, skipped=1)
    cases = json.loads((pytester.path / "r.json").read_text())["cases"]
    assert list(cases) == ["test_vit-cpu-synthetic"] and cases["test_vit-cpu-synthetic"]["status"] == "ok"
