"""The EdgeViT protocol (--e3p-protocol edgevit): the arithmetic against a scripted sensor on a
scripted clock (background subtraction, mean +/- sd per inference, the resolution flag), the
plugin's Table 3 with Pareto marks and the paper's column, the gate on it, and its usage errors."""

import json
import statistics

import pytest
from fakes.clock import Machine
from fakes.results import case_result
from fakes.sensors import ScriptedSensor

from pytest_e3p.hardware.sensors import MEASURED
from pytest_e3p.measure import protocols as measure
from pytest_e3p.report.table3 import measured_marks, paper_marks, table3_rows
from pytest_e3p.storage.results import REFERENCE_TOP1

IDLE_W = 3.0
# net (above the background) power and length of each scripted inference: binary fractions, exact sums
INFERENCES = [(4.0, 0.03125), (6.0, 0.03125), (4.0, 0.0625), (8.0, 0.015625)] * 3


def run(inferences, update_period_s=0.001, n=None):
    """One pass: warm-up of 2 calls (warmup_s 0), then n inferences (default: one per scripted one,
    starting where the warm-up left the script)."""
    m = Machine(IDLE_W, script=inferences)  # the device draws IDLE_W, plus an inference's net power while it runs
    proto = measure.Protocol(batch_size=1, warmup_s=0.0, idle_s=0.5, name=measure.EDGEVIT, inferences=n or len(inferences))
    with pytest.MonkeyPatch.context() as patch:
        m.install(patch, measure)
        return measure.run_edgevit(m.forward, measure.MeasureContext(sensor=ScriptedSensor(m, update_period_s), clock=m.monotonic), proto)


def test_background_is_subtracted_from_every_inference_and_mean_sd_are_per_inference():
    steady = run(INFERENCES)
    assert steady.background_w == pytest.approx(IDLE_W, rel=1e-12)
    assert steady.per_inference and len(steady.rounds) == len(INFERENCES)
    # the warm-up took the first 2 scripted calls, so the timed ones start at the 3rd
    timed = [INFERENCES[(2 + i) % len(INFERENCES)] for i in range(len(INFERENCES))]
    net_mj = [w * s * 1000.0 for w, s in timed]
    raw_mj = [(w + IDLE_W) * s * 1000.0 for w, s in timed]
    assert steady.energy_mj_per_image_samples == pytest.approx(net_mj, rel=1e-9)
    assert steady.raw_energy_mj_per_image_samples == pytest.approx(raw_mj, rel=1e-9)
    assert steady.energy_mj_per_image == pytest.approx(statistics.fmean(net_mj), rel=1e-9)  # mean, as the paper
    assert steady.raw_energy_mj_per_image == pytest.approx(statistics.fmean(raw_mj), rel=1e-9)
    assert steady.latency_ms_per_image == pytest.approx(statistics.fmean(s * 1000 for _, s in timed), rel=1e-9)
    assert steady.power_w_samples == pytest.approx([w for w, _ in timed], rel=1e-9)  # net power of each inference
    assert statistics.stdev(steady.energy_mj_per_image_samples) == pytest.approx(statistics.stdev(net_mj), rel=1e-9)


def test_inferences_shorter_than_two_sensor_periods_are_window_averages():
    # a sensor updating every 50 ms cannot resolve inferences of 16-63 ms one by one
    steady = run(INFERENCES, update_period_s=0.05)
    assert not steady.per_inference
    assert all(r.energy_mj is None for r in steady.rounds)
    timed = [INFERENCES[(2 + i) % len(INFERENCES)] for i in range(len(INFERENCES))]
    total_net_mj = sum(w * s * 1000.0 for w, s in timed)
    assert steady.energy_mj_per_image == pytest.approx(total_net_mj / len(timed), rel=1e-9)
    assert steady.power_w == pytest.approx(total_net_mj / 1000.0 / sum(s for _, s in timed), rel=1e-9)
    assert steady.energy_mj_per_image_samples == []  # no per-inference values, hence no sd


def test_exactly_n_inferences_are_timed():
    steady = run(INFERENCES, n=7)
    assert len(steady.rounds) == 7 and all(r.images == 1 for r in steady.rounds)


def case(cid, model, top1, energy, latency, source=REFERENCE_TOP1):
    return case_result(
        cid,
        model=model,
        batch_size=1,
        top1=top1,
        top1_source=source,
        energy_mj_per_image=energy,
        latency_ms_per_image=latency,
        energy_mj_per_image_sd=energy / 10,
        latency_ms_per_image_sd=1.0,
        power_w=5.0,
        power_w_sd=0.5,
        per_inference=True,
        protocol="edgevit",
        energy_kind=MEASURED,
        efficiency_pct_per_mj=top1 / energy,
    )


def test_table3_marks_pareto_models_on_energy_and_latency_beside_the_papers_figures():
    cases = [
        case("a", "edgevit_xxs", 74.4, 100.0, 30.0),  # on both fronts
        case("b", "mobilenetv2_100.ra_in1k", 72.0, 60.0, 40.0),  # least energy: on the energy front only
        case("c", "deit_tiny_patch16_224.fb_in1k", 72.2, 150.0, 50.0),  # dominated by a on both
        case("d", "edgevit_s", 81.0, 400.0, 20.0),  # most accurate and fastest: on both
    ]
    assert measured_marks(cases) == {"a": "E", "b": "E", "c": "", "d": "E L"}
    # the paper's own Table 3 over the same four models: DeiT-Tiny is dominated there too
    assert paper_marks(cases)["c"] == "" and paper_marks(cases)["a"] == "E L"
    headers, rows = table3_rows(cases)
    row = dict(zip(headers, rows[0]))
    assert row["model"] == "edgevit_xxs (EdgeViT)"
    assert row["energy (mJ)"] == "100 +/- 10" and row["latency (ms)"] == "30 +/- 1" and row["efficiency (%/mJ)"] == "0.744"
    assert row["paper: energy (mJ)"] == "127.4 +/- 27.3" and row["paper: %/mJ"] == "0.584"
    assert dict(zip(headers, rows[2]))["Pareto"] == ""


PROTOCOL_BENCH = """
def test_energy(e3p, benchmark):
    e3p.measure(benchmark)
"""
FAST = [
    "--e3p-device=cpu",
    "--e3p-protocol=edgevit",
    "--e3p-inferences=6",
    "--e3p-passes=2",
    "--e3p-warmup-s=0",
    "--e3p-idle-s=0.05",
    "--e3p-weights=random",
    "-p",
    "no:cacheprovider",
    "--e3p-save-noisy-baseline",  # short, real-timed runs cannot gate 5 %: the fit-to-gate check would refuse their baselines
]


@pytest.mark.slow  # EdgeViT-XXS itself: its Table 3 row and the paper's figures
def test_plugin_runs_the_protocol_and_prints_table3_with_the_unavailable_models(pytester):
    pytester.makepyfile(test_bench=PROTOCOL_BENCH)
    result = pytester.runpytest(*FAST, "--e3p-models=edgevit_xxs,levit_128s", "--e3p-results=out/r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*EdgeViT Table 3 on cpu / synthetic*", "*latency (ms)*energy (mJ)*power (W)*efficiency (%/mJ)*Pareto*paper: energy (mJ)*"])
    data = json.loads((pytester.path / "out/r.json").read_text())
    assert data["protocol"]["protocol"] == "edgevit" and data["protocol"]["inferences"] == 6 and data["protocol"]["batch_size"] == 1
    c = data["cases"]["edgevit_xxs-cpu-synthetic"]
    assert len(c["latency_ms_per_image_samples"]) == 12 and len(c["energy_mj_per_image_passes"]) == 2  # 6 inferences x 2 passes
    assert c["protocol"] == "edgevit" and c["background_power_w"] > 0 and c["energy_raw_mj_per_image"] > c["energy_mj_per_image"]
    assert c["efficiency_pct_per_mj"] == pytest.approx(c["top1"] / c["energy_mj_per_image"], rel=1e-4)
    assert c["energy_mj_per_image_sd"] is not None and c["latency_ms_per_image_sd"] is not None
    assert "net energy (background subtracted)" in c["sam_note"]
    assert "not available: T2T-ViT-7" not in result.stdout.str()  # only the edgevit-table3 set lists them


@pytest.mark.slow  # the Table 3 set of real models
def test_the_table3_set_lists_the_models_timm_lacks_and_the_gate_refuses_an_e3p_baseline(pytester, monkeypatch):
    from pytest_e3p.models import zoo

    monkeypatch.setitem(zoo.MODEL_SETS, "edgevit-table3", ("edgevit_xxs",))  # one model keeps the run short
    pytester.makepyfile(test_bench=PROTOCOL_BENCH)
    first = pytester.runpytest(*FAST, "--e3p-models=edgevit-table3", "--e3p-save-baseline=base.json")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*not available: T2T-ViT-7: timm has no Tokens-to-Token ViT*", "*not available: TNT-Tiny*"])
    # the gate compares an edgevit run with an edgevit baseline (a wide tolerance: 6 inferences on a
    # shared CI machine are the test of the comparison, not of the noise)
    again = pytester.runpytest(*FAST, "--e3p-models=edgevit-table3", "--e3p-baseline=base.json", "--e3p-tolerance=energy=1000%", "--e3p-results=r.json")
    again.assert_outcomes(passed=1)
    compared = json.loads((pytester.path / "r.json").read_text())["cases"]["edgevit_xxs-cpu-synthetic"]
    assert compared["verdict"] in ("unchanged", "improved", "inconclusive") and compared["change_vs_baseline"] is not None
    other = pytester.runpytest("--e3p-device=cpu", "--e3p-models=edgevit_xxs", "--e3p-baseline=base.json", "-p", "no:cacheprovider")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(["*cannot be compared with this run: protocol differs: baseline edgevit, this run e3p*"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--e3p-batch-size=8"], "*--e3p-protocol edgevit runs batch 1 (the paper's), not --e3p-batch-size 8*"),
        (["--e3p-precision=fp16"], "*--e3p-protocol edgevit runs fp32*"),
        (["--e3p-inferences=0"], "*--e3p-inferences='0': must be at least 1*"),
        (["--e3p-variants=fp32,int8"], "*--e3p-protocol edgevit runs fp32 eager models (the paper's), not --e3p-variants fp32,int8*"),
        (["--e3p-image-size=224,384"], "*edgevit runs each model at its own resolution*leave --e3p-image-size at auto*"),
        (["--e3p-idle-s=0"], "*subtracts the idle background*--e3p-idle-s must be above 0*"),
        (["--e3p-protocol=mobile"], "*--e3p-protocol='mobile': must be one of e3p, edgevit*"),
    ],
)
def test_usage_errors(pytester, args, message):
    pytester.makepyfile(test_bench=PROTOCOL_BENCH)
    base = [a for a in FAST if not a.startswith("--e3p-protocol")] if "--e3p-protocol=mobile" in args else FAST
    result = pytester.runpytest(*base, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
