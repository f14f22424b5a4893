"""The plugin as users run it: pytest in-process (pytester) on a small benchmark folder."""

import json
import statistics
from pathlib import Path

import pytest
from fakes.power_rails import tx2_tree
from fakes.runs import SCRIPTED, SHORT

BENCH = """
def test_energy(e3p, benchmark):
    e3p.measure(benchmark)
    e3p.evaluate()
"""
# the short run without its device (each test names one), in batches of 2 and 3 rounds a pass
FAST = [*(a for a in SHORT if not a.startswith("--e3p-device")), "--e3p-batch-size=2", "--e3p-rounds=3"]
MODELS = "--e3p-models=test_vit,test_vit2"  # two tiny models: the tests that need two cases, not these two models


@pytest.fixture
def bench(pytester):
    pytester.makepyfile(test_bench=BENCH)
    return pytester


def run(pytester, *args):
    return pytester.runpytest("--e3p-device=cpu", *FAST, *args)


@pytest.mark.slow  # the figures of two real models: reference top-1, MACs, parameters, the ranking
def test_each_model_device_dataset_is_a_test_id_and_the_table_ranks_them(bench):
    result = run(bench, "--e3p-models=efficientvit_m0,levit_128s", "--e3p-results=out/results.json", "--benchmark-json=bench.json", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_energy?efficientvit_m0-cpu-synthetic? PASSED*",
            "*test_energy?levit_128s-cpu-synthetic? PASSED*",
            "*E3P stage 2 on cpu / synthetic: energy estimate by cpu-time-estimate*",
            "*model*params (M)*GMACs*NetScore*top-1 (%)*top-1 from*latency (ms/img)*energy (mJ/img)*power (W)*SAM5*",
            "*energy is an ESTIMATE*",
        ]
    )
    data = json.loads((bench.path / "out/results.json").read_text())
    assert data["schema"] == "pytest-e3p/results" and data["schema_version"] == 3
    case = data["cases"]["levit_128s-cpu-synthetic"]
    assert case["model"] == "levit_128s.fb_dist_in1k"
    assert case["batch_size"] == 2 and case["image_size"] == [3, 224, 224] and case["precision"] == "fp32"
    # 2 passes of 3 rounds: every round kept, one value per pass for the gate
    assert len(case["energy_mj_per_image_samples"]) == 6 and len(case["latency_ms_per_image_samples"]) == 6
    assert case["passes"] == 2 and len(case["energy_mj_per_image_passes"]) == 2 and len(case["latency_ms_per_image_passes"]) == 2
    assert case["energy_spread"] is not None and case["threads"] >= 1
    assert data["protocol"]["passes"] == 2 and data["protocol"]["threads"] == case["threads"]
    assert case["energy_kind"] == "estimate" and case["energy_source"] == "cpu-time-estimate"
    assert case["top1_source"] == "reference" and case["top1"] == 76.52
    assert case["gmacs"] == pytest.approx(0.305, abs=0.002) and case["params_m"] == pytest.approx(7.78, abs=0.01)
    assert case["sam"] is not None and "estimated energy" in case["sam_note"]
    assert set(data["environment"]) >= {"torch", "timm"}
    # peak memory of the case's largest pass, from the kernel's accounting, in the last column
    assert case["peak_memory_mb"] > case["memory_growth_mb"] >= 0 and case["memory_method"] in ("VmHWM after clear_refs", "VmRSS sampled every 5 ms")
    # the table lists the higher SAM first (columns: ..., SAM5 "0.17 *", peak memory)
    lines = [l for l in result.outlines if l.startswith(("1 ", "2 "))]
    sams = {l.split()[1]: float(l.split()[-3]) for l in lines}
    assert float(lines[0].split()[-3]) == max(sams.values())
    assert float(lines[0].split()[-1]) == pytest.approx(case["peak_memory_mb"], rel=0.01) or float(lines[1].split()[-1]) == pytest.approx(
        case["peak_memory_mb"], rel=0.01
    )
    # pytest-benchmark shows each case, with per-image latency and the energy in extra_info
    bj = json.loads((bench.path / "bench.json").read_text())
    by_name = {b["name"]: b for b in bj["benchmarks"]}
    b = by_name["test_energy[levit_128s-cpu-synthetic]"]
    assert b["stats"]["rounds"] == 6  # every round of every pass
    assert b["stats"]["median"] == pytest.approx(statistics.median(case["latency_ms_per_image_samples"]) / 1000, rel=1e-3)
    assert b["extra_info"]["energy_mj_per_image"] == pytest.approx(case["energy_mj_per_image"], rel=1e-3)
    assert bj["machine_info"]["e3p_device"]["name"] == "cpu"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--e3p-device=quantum"], "unknown device 'quantum'; accepted: cpu, cuda, rtx3050, tx2*"),
        (["--e3p-device=rtx3050"], "*--device rtx3050*no CUDA GPU*"),
        (["--e3p-device=tx2"], "*--device tx2 expects NVIDIA Jetson TX2*not a Jetson board*"),
        (["--e3p-tolerance=energy=nan"], "*tolerance energy=nan: must be a finite number*"),
        (["--e3p-tolerance=energy=5"], "*would mean 500%; write 5% for 5 percent*"),
        (["--e3p-warmup-s=inf"], "*--e3p-warmup-s='inf': must be a finite number*"),
        (["--e3p-min-round-s=nan"], "*--e3p-min-round-s='nan': must be a finite number*"),
        (["--e3p-report=test_bench.py"], "*--e3p-report=test_bench.py: is a file; give a folder*"),
        (["--e3p-models=vit_smal_patch16_224"], "*unknown model 'vit_smal_patch16_224'*did you mean*vit_small_patch16_224*"),
        (["--e3p-batch-size=0"], "*--e3p-batch-size='0': must be at least 1*"),
        (["--e3p-results=/proc/results.json"], "*--e3p-results=/proc/results.json: cannot be written*"),
        (["--e3p-dataset=cifar10=/nonexistent"], "*cifar10: /nonexistent does not exist*"),
        (["--e3p-tolerance=energy=five"], "*cannot read tolerance 'energy=five'*"),
        (["--e3p-require-sensor"], "*--e3p-require-sensor: no power sensor for --device cpu: no RAPL*"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(bench, args, message):
    result = bench.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_any_project_can_write_its_own_case_with_the_fixtures(pytester):
    pytester.makepyfile(
        test_mine="""
def test_custom(e3p_case, e3p_model, e3p_session):
    assert e3p_case.id == "test_vit-cpu-synthetic"
    assert e3p_model.module.training is False
    assert e3p_model.complexity.gmacs > 0
"""
    )
    run(pytester, "--e3p-models=test_vit").assert_outcomes(passed=1)


def test_plugin_is_idle_in_projects_that_do_not_use_it(pytester):
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "E3P" not in result.stdout.str()


def test_save_a_baseline_then_pass_then_fail_as_that_test_on_a_regression(bench):
    # on the scripted machine every pass reads 250 mJ/img (25 ms/img at 10 W), however busy the machine
    # running the tests: the same run passes against its own baseline, with the gate on
    one = "--e3p-models=test_vit"
    result = run(bench, one, *SCRIPTED, "--e3p-save-baseline=baselines/cpu.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline written to baselines/cpu.json*"])
    path = bench.path / "baselines/cpu.json"
    saved = json.loads(path.read_text())
    assert list(saved["cases"]) == ["test_vit-cpu-synthetic"]

    result = run(bench, one, *SCRIPTED, "--e3p-baseline=baselines/cpu.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline (mJ/img)*change*verdict*"])

    # a baseline of 1 mJ/img: every pass of this run (250 mJ/img) is far above it
    case = saved["cases"]["test_vit-cpu-synthetic"]
    case["energy_mj_per_image_passes"] = [1.0, 1.01]
    path.write_text(json.dumps(saved))
    result = run(bench, one, *SCRIPTED, "--e3p-baseline=baselines/cpu.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E3P regression: energy +*% vs baseline (tolerance 5%, noise +/-*%, p=*; baseline of 1 run): * vs 1* mJ/img*",
            "FAILED test_bench.py::test_energy?test_vit-cpu-synthetic? - Failed: E3*",
        ]
    )


def test_a_marker_sets_a_benchmarks_tolerance(pytester):
    pytester.makepyfile(
        test_bench="""
import pytest

@pytest.mark.e3p(energy_tolerance="1e9%")  # far above any energy against the 1 mJ baseline below
def test_energy(e3p):
    e3p.measure()
"""
    )
    run(pytester, "--e3p-models=test_vit", *SCRIPTED, "--e3p-save-baseline=b.json").assert_outcomes(passed=1)
    saved = json.loads((pytester.path / "b.json").read_text())
    case = saved["cases"]["test_vit-cpu-synthetic"]
    case["energy_mj_per_image_passes"] = [1.0, 1.01]
    (pytester.path / "b.json").write_text(json.dumps(saved))
    run(pytester, "--e3p-models=test_vit", *SCRIPTED, "--e3p-baseline=b.json").assert_outcomes(passed=1)
    # the same baseline fails the run's default 5 % where the marker does not apply
    (pytester.path / "test_bench.py").write_text("def test_energy(e3p):\n    e3p.measure()\n")
    run(pytester, "--e3p-models=test_vit", *SCRIPTED, "--e3p-baseline=b.json").assert_outcomes(failed=1)


def test_a_baseline_of_another_device_or_a_corrupt_one_is_refused_before_measuring(bench):
    bad = bench.path / "other.json"
    bad.write_text(json.dumps({"schema": "pytest-e3p/results", "schema_version": 2, "device": {"name": "rtx3050", "identity": {}}, "cases": {}}))
    result = run(bench, "--e3p-baseline=other.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --e3p-baseline other.json cannot be compared with this run: the baseline is for device 'rtx3050', this run is on 'cpu'"]
    )
    (bench.path / "corrupt.json").write_text('{"schema": "pytest-e3p/res')
    result = run(bench, "--e3p-baseline=corrupt.json")
    result.stderr.fnmatch_lines(["ERROR: --e3p-baseline: corrupt.json is not valid JSON*"])


def test_a_failed_run_never_writes_the_baseline(pytester):
    pytester.makepyfile(
        test_bench="""
def test_energy(e3p):
    e3p.measure()
    assert "test_vit2" not in e3p.case.id, "a broken benchmark"
"""
    )
    base = pytester.path / "b.json"
    base.write_text("the old baseline")
    result = run(pytester, MODELS, "--e3p-save-baseline=b.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*baseline NOT written (1 case(s) did not pass); b.json is unchanged*"])
    assert base.read_text() == "the old baseline"
    # ...but the results file keeps what was measured, the failure included
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    assert data["cases"]["test_vit2-cpu-synthetic"]["status"] == "failed"
    assert data["cases"]["test_vit-cpu-synthetic"]["status"] == "ok"


def test_a_sensor_failing_mid_run_invalidates_that_case_and_the_others_go_on(pytester):
    pytester.makeconftest(
        """
import pytest
from pytest_e3p.hardware.sensors import EnergyReading, SensorFault, SensorInfo, MEASURED
from pytest_e3p.hardware.sensors.base import EnergySensor


class Flaky(EnergySensor):
    info = SensorInfo("flaky", MEASURED, "test rail", "mJ", 0.001)

    def __init__(self):
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.reads > 3:
            raise SensorFault("rail file vanished")
        return EnergyReading(float(self.reads), 1000.0 * self.reads)


@pytest.fixture(autouse=True)
def flaky_for_levit(request, e3p_session):
    if "test_vit2" in request.node.name:
        e3p_session.sensor = Flaky()
"""
    )
    pytester.makepyfile(test_bench=BENCH)
    result = run(pytester, "--e3p-models=test_vit2,test_vit")
    result.assert_outcomes(passed=1, failed=1)
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    bad = data["cases"]["test_vit2-cpu-synthetic"]
    assert bad["status"] == "invalid" and "rail file vanished" in bad["reason"]
    assert data["cases"]["test_vit-cpu-synthetic"]["status"] == "ok"
    assert data["cases"]["test_vit-cpu-synthetic"]["energy_kind"] == "estimate"  # a fresh sensor after the fault


# The board's sysfs tree is real (fakes.power_rails); its CUDA torch cannot be here. The profile is resolved
# as on the board (torch.cuda.is_available answers True while it is), then the model runs on this CPU:
# everything else (identification, rails, thermal, the tables) is the plugin's own path.
JETSON_WITH_CUDA = """
import dataclasses, importlib
import pytest
import torch

patch = pytest.MonkeyPatch()


@pytest.hookimpl(tryfirst=True)  # before the plugin's pytest_configure opens the session
def pytest_configure(config):
    session, devices = importlib.import_module("pytest_e3p.run.session"), importlib.import_module("pytest_e3p.hardware.devices")

    def resolve(name):
        with pytest.MonkeyPatch.context() as cuda:
            cuda.setattr(torch.cuda, "is_available", lambda: True)
            device = devices.resolve(name)
        return dataclasses.replace(device, torch_device="cpu")

    patch.setattr(session, "resolve", resolve)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    patch.undo()
"""


def test_on_a_jetson_tree_the_rails_are_measured_and_broken_down(bench, sysfs_root):
    tx2_tree(sysfs_root)
    bench.makeconftest(JETSON_WITH_CUDA)
    result = bench.runpytest("--e3p-device=tx2", *FAST, "--e3p-models=test_vit", "--e3p-sample-hz=100")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*E3P stage 2 on tx2 / synthetic: energy measured by jetson-ina3221 (Jetson module input (VDD_IN))*",
            "per-rail energy (mJ/img); the total used for SAM is VDD_IN",
            "*VDD_IN (total)*VDD_SYS_GPU*",
        ]
    )
    data = json.loads((bench.path / ".e3p/results.json").read_text())
    case = data["cases"]["test_vit-tx2-synthetic"]
    assert data["device"]["identity"]["model"] == "NVIDIA Jetson TX2 Developer Kit" and data["device"]["identity"]["l4t"] == "R32.7.1"
    # the tree holds a constant 5 W on VDD_IN: energy per image = 5 W x latency per image
    assert case["power_w"] == pytest.approx(5.0, rel=0.02)
    assert case["energy_mj_per_image"] == pytest.approx(5.0 * case["latency_ms_per_image"], rel=0.05)
    # the rails of the same rounds: 2 W of the 5 W go to the GPU rail (a ratio, so a busy machine's
    # spread between passes does not enter)
    rails = case["rails_mj_per_image"]
    assert rails["VDD_SYS_GPU"] == pytest.approx(rails["VDD_IN"] * 2000 / 5000, rel=0.05)
    assert case["total_rail"] == "VDD_IN" and case["energy_kind"] == "measured"


def test_on_a_jetson_torch_without_cuda_stops_at_the_start_naming_the_fix(bench, sysfs_root):
    """Issue 23: a plain pip install on a board replaces NVIDIA's CUDA torch with a CPU-only wheel; the run
    used to measure the board's CPU under the GPU's name. This torch has no usable CUDA GPU either."""
    tx2_tree(sysfs_root)
    result = bench.runpytest("--e3p-device=tx2", *FAST, "--e3p-models=test_vit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--device tx2: torch *this is a Jetson board (Jetson TX2)*pip install --no-deps pytest-e3p*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_auto_says_what_it_picked_and_options_come_from_the_ini_file(bench):
    bench.makeini("[pytest]\ne3p_device = auto\ne3p_models = test_vit\ne3p_rounds = 3\n")
    result = bench.runpytest(*[a for a in FAST if not a.startswith("--e3p-rounds")], "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_energy?test_vit-cpu-synthetic? PASSED*", "auto picked the CPU (no CUDA GPU, not a Jetson)"])
    case = json.loads((bench.path / ".e3p/results.json").read_text())["cases"]["test_vit-cpu-synthetic"]
    assert len(case["latency_ms_per_image_samples"]) == 3 * 2  # 3 rounds (ini) x 2 passes (FAST)


def test_hooks_let_a_project_choose_cases_and_receive_results(bench):
    bench.makeconftest(
        """
seen = []

def pytest_e3p_modify_cases(config, cases):
    cases[:] = [c for c in cases if "test_vit2" not in c.id]

def pytest_e3p_case_result(config, result):
    seen.append(result.case_id)

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"hook saw: {seen}")
"""
    )
    result = run(bench, MODELS)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hook saw: ['test_vit-cpu-synthetic']"])


@pytest.mark.slow  # the reference data of these real models decide what is dominated
def test_pareto_screening_decides_which_cases_are_measured_and_prints_why(bench):
    # deit_small has levit_192's top-1 (79.86 %) at 7x the MACs and 2x the parameters: dominated.
    # levit_192 and levit_conv_192 differ by 0.002 points: within the reference data's precision, both kept.
    result = run(bench, "--e3p-models=levit_192,levit_conv_192,deit_small_patch16_224", "--e3p-screen=pareto", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_energy?levit_192-cpu-synthetic? PASSED*",
            "*test_energy?levit_conv_192-cpu-synthetic? PASSED*",
            "*E3P stage 1: NetScore screening (device-agnostic)*",
            "deit_small_patch16_224.fb_in1k*dropped*dominated by levit_192.fb_dist_in1k*",
        ]
    )
    assert "deit_small_patch16_224-cpu-synthetic" not in result.stdout.str()
    screening = json.loads((bench.path / ".e3p/results.json").read_text())["screening"]
    assert {r["model"]: r["kept"] for r in screening} == {
        "levit_192.fb_dist_in1k": True,
        "levit_conv_192.fb_dist_in1k": True,
        "deit_small_patch16_224.fb_in1k": False,
    }


def test_missing_pretrained_weights_are_said_once_live_and_the_run_goes_on(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [a for a in FAST if a != "--e3p-weights=random"]
    result = bench.runpytest("--e3p-device=cpu", *args, MODELS)
    result.assert_outcomes(passed=2)
    lines = [line for line in result.outlines if "using random weights: energy and latency stay valid" in line]
    assert len(lines) == 1 and lines[0].startswith("[e3p] ")  # printed while the run goes, once
    assert result.outlines.index(lines[0]) < next(i for i, line in enumerate(result.outlines) if "E3P stage 2" in line)


def test_a_second_benchmark_of_the_same_case_is_stopped_not_silently_merged(pytester):
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n\ndef test_again(e3p):\n    e3p.measure()\n")
    result = run(pytester, "--e3p-models=test_vit")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "case test_vit-cpu-synthetic is already measured in this run by test_bench.py::test_energy[[]test_vit-cpu-synthetic[]]; *-k*",
        ]
    )
    cases = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]
    assert list(cases) == ["test_vit-cpu-synthetic"] and cases["test_vit-cpu-synthetic"]["status"] == "ok"


SUITE_CONFTEST = (Path(__file__).resolve().parent.parent / "conftest.py").read_text()
SUITE = (Path(__file__).resolve().parent.parent / "benchmarks" / "test_e3p.py").read_text()


def test_pytest_help_works_where_the_plugin_is_installed(pytester):
    result = pytester.runpytest("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--e3p-tolerance=TOLERANCE*", "*energy=5%*"])


def test_the_suite_keeps_its_device_alias_and_a_project_keeps_its_own_device_option(pytester):
    pytester.makeconftest(SUITE_CONFTEST)
    pytester.makepyfile(test_bench=SUITE)
    result = pytester.runpytest("--device=cpu", *FAST, "--e3p-models=test_vit", "--e3p-passes=1")
    result.assert_outcomes(passed=1)
    # another project's own --device: no "conflicting option string", and pytest-e3p still runs
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.addoption('--device', default='cuda:7')\n")
    result = pytester.runpytest("--device=npu", "--e3p-device=cpu", *FAST, "--e3p-models=test_vit", "--e3p-passes=1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["e3p: device cpu, energy estimate by cpu-time-estimate*torch threads*1 passes x 3 rounds*"])


def test_under_xdist_the_run_is_refused_in_one_line(bench):
    pytest.importorskip("xdist")
    result = run(bench, "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-e3p measures one case at a time on one device*run the benchmarks without -n*"])


def test_the_suite_runs_without_pytest_benchmark_and_with_it_disabled(pytester):
    pytester.makepyfile(test_bench=SUITE)
    result = pytester.runpytest("-p", "no:benchmark", "--e3p-device=cpu", *FAST, "--e3p-models=test_vit", "--e3p-passes=1", "-W", "error")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*E3P stage 2 on cpu / synthetic*"])
    result = pytester.runpytest("--benchmark-disable", "--e3p-device=cpu", *FAST, "--e3p-models=test_vit", "--e3p-passes=1")
    result.assert_outcomes(passed=1)
    assert "not used at all" not in result.stdout.str()  # no unused-fixture warning
    result = pytester.runpytest("--e3p-device=cpu", *FAST, "--e3p-models=test_vit", "--e3p-passes=1")
    result.stdout.fnmatch_lines(["*pytest-benchmark's table shows each case's rounds in seconds per image*", "*benchmark 'e3p: time per image (seconds)*"])


def test_a_project_adds_fields_to_the_results_with_the_update_json_hook(pytester):
    pytester.makeconftest("def pytest_e3p_update_json(config, results):\n    results['ci'] = {'job': 'gpu-rtx3050'}\n")
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    run(pytester, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-save-baseline=b.json").assert_outcomes(passed=1)
    for name in (".e3p/results.json", "b.json"):
        assert json.loads((pytester.path / name).read_text())["ci"] == {"job": "gpu-rtx3050"}


@pytest.mark.parametrize(
    "marker, message",
    [
        ("energy_tol=0.08", "*@pytest.mark.e3p takes only energy_tolerance, latency_tolerance, top1_tolerance as keywords, not energy_tol*"),
        ("energy_tolerance=float('nan')", "*must be a finite number*"),
        ("energy_tolerance=5", "*would mean 500%*"),
    ],
)
def test_a_marker_that_would_silently_keep_or_switch_off_the_gate_is_a_usage_error(pytester, marker, message):
    pytester.makepyfile(test_bench=f"import pytest\n\n@pytest.mark.e3p({marker})\ndef test_energy(e3p):\n    e3p.measure()\n")
    result = run(pytester, "--e3p-models=test_vit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_passes_cover_every_case_before_the_next_and_a_deselected_case_stays_in_the_baseline(bench):
    result = run(bench, MODELS, "--e3p-passes=3", "--e3p-save-baseline=b.json")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    order = [out.index(f"[e3p] pass {k}/3 {m}-cpu-synthetic") for k in (1, 2) for m in ("test_vit", "test_vit2")]
    assert order == sorted(order)  # pass 1 over both cases, then pass 2; pass 3 in the tests
    data = json.loads((bench.path / "b.json").read_text())
    assert len(data["cases"]["test_vit2-cpu-synthetic"]["energy_mj_per_image_passes"]) == 3
    # -k runs one case: the other keeps its entry, the run is added beside the first (2 runs held)
    result = run(bench, MODELS, "--e3p-passes=2", "-k", "test_vit2", "--e3p-save-baseline=b.json", "--e3p-baseline=b.json", "--e3p-tolerance=energy=off")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*kept from the previous baseline (not run now): test_vit-cpu-synthetic*"])
    data = json.loads((bench.path / "b.json").read_text())
    assert set(data["cases"]) == {"test_vit-cpu-synthetic", "test_vit2-cpu-synthetic"}
    assert len(data["cases"]["test_vit2-cpu-synthetic"]["earlier_runs"]) == 1


def test_threads_are_recorded_and_a_baseline_of_another_count_is_refused(bench):
    run(bench, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-threads=1", "--e3p-save-baseline=b.json").assert_outcomes(passed=1)
    data = json.loads((bench.path / "b.json").read_text())
    assert data["protocol"]["threads"] == 1 and data["cases"]["test_vit-cpu-synthetic"]["threads"] == 1
    assert data["protocol"]["allocator"].startswith("glibc malloc, thresholds pinned")
    result = run(bench, "--e3p-models=test_vit", "--e3p-threads=2", "--e3p-baseline=b.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot be compared with this run: threads differs: baseline 1, this run 2*"])


def test_the_gate_says_at_the_start_when_it_could_never_fail(bench):
    run(bench, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-save-baseline=b.json").assert_outcomes(passed=1)
    result = run(bench, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-baseline=b.json")
    result.stdout.fnmatch_lines(["[[]e3p] the gate cannot fail: a run of 1 pass against a baseline of 1 run of 1 pass*--e3p-passes 2 or more*"])


def test_a_failing_report_write_is_one_line_and_the_table_is_still_printed(bench, monkeypatch):
    import pytest_e3p.report.markdown as report_md

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_md, "write_atomic", full_disk)
    result = run(bench, "--e3p-models=test_vit", "--e3p-passes=1", "--e3p-report=rep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*E3P stage 2 on cpu / synthetic*", "report NOT written to rep: No space left on device"])
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # a lost report is no green run


def test_the_session_is_cheap_to_build_and_start_does_the_rest(monkeypatch):
    """Building a session reads and checks options only: no sensor thread, no baseline, no models."""
    import threading

    from pytest_e3p.config import DEFAULTS, SPEC, Options
    from pytest_e3p.run.session import E3PSession

    values = {name: parse(DEFAULTS[name]) for name, _flag, _default, parse, _help in SPEC}
    values["models"] = "levit_128s"
    threads_before = threading.active_count()
    session = E3PSession(Options(**values))
    assert session.sensor is None and session.baseline is None and threading.active_count() == threads_before
    assert [c.id for c in session.cases()] == ["levit_128s-cpu-synthetic"]
    started = session.start()
    try:
        assert started.sensor is not None and started.allocator.startswith("glibc malloc, thresholds pinned")
    finally:
        started.sensor.close()


def test_live_lines_do_not_break_pytests_progress_line(bench):
    result = run(bench, MODELS, "--e3p-passes=2", "--e3p-weights=pretrained")  # offline: a live notice mid-run
    result.assert_outcomes(passed=2)
    lines = result.outlines
    # the earlier passes (and the weights notice) run before the first test, so their lines come
    # before pytest's progress line, which stays whole: the file name, then one letter per test
    last_live = max(i for i, line in enumerate(lines) if line.startswith("[e3p] "))
    after = [line for line in lines[last_live + 1 :] if line.strip()]
    assert after[0].startswith("test_bench.py ..") and [line for line in lines if line.startswith("test_bench.py")] == [after[0]]


def test_pytest_help_gives_each_e3p_option_a_help_line_and_its_default_once(pytester):
    """Issue 29: the plugin's group in `pytest --help` (and its ini twins) as the commands' help:
    every option with its help and its default, said once (the switches too)."""
    import re

    text = pytester.runpytest("--help").stdout.str()
    group = text.split("pytest-e3p: energy-efficiency benchmarks of Vision Transformers:\n", 1)[1]
    entries: dict[str, str] = {}
    for line in group.splitlines():
        if line and not line.startswith(" "):
            break  # the next group
        if line.startswith("  --e3p-"):
            name, _, rest = line.strip().partition(" ")
            entries[name.split("=")[0]] = rest.strip()
        elif entries:
            last = next(reversed(entries))
            entries[last] = f"{entries[last]} {line.strip()}"
    from pytest_e3p.config import SPEC

    assert set(entries) == {flag for _name, flag, *_ in SPEC}
    for flag, help_text in entries.items():
        assert len(re.findall(r"\(default\b|\bdefault:", help_text)) == 1, (flag, help_text)
        assert re.sub(r"\(default: [^)]*\)", "", help_text).strip(), flag
    assert "(default: off)" in entries["--e3p-require-sensor"]
    ini = text.split("\n[pytest] configuration options", 1)[1]
    assert ini.split("e3p_require_sensor (string):", 1)[1].split("e3p_", 1)[0].count("(default: off)") == 1
