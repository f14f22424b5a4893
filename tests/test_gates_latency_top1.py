"""The latency and top-1 gates of one case (baseline.compare_case), on CaseResult pass values.

Each test moves one metric and holds the others still, so a gate that read another metric's values,
or gated a metric that is off, shows."""

import pytest
from fakes.results import case_result

from pytest_e3p.gate.baseline import IMPROVED, REGRESSED, UNCHANGED, Tolerances, compare_case
from pytest_e3p.storage import results
from pytest_e3p.storage.records import EarlierRun

ENERGY = (40.0, 40.2, 39.8)  # mJ/img, one value per pass
LATENCY = (5.0, 5.02, 4.98)  # ms/img


def scaled(values, factor):
    return [v * factor for v in values]


def case(energy=ENERGY, latency=LATENCY, top1=None, top1_source=results.NO_TOP1, earlier=0):
    """A measured case; `earlier` baseline runs before its own, each within 0.5 % of it."""
    runs = [
        EarlierRun(created=f"run{i}", energy_mj_per_image_passes=scaled(ENERGY, f), latency_ms_per_image_passes=scaled(LATENCY, f))
        for i, f in enumerate((1.004, 0.997, 1.002)[:earlier])
    ]
    return case_result(
        "m-cpu-imagenet",
        dataset="imagenet",
        weights="pretrained",
        passes=3,
        energy_mj_per_image_passes=list(energy),
        latency_ms_per_image_passes=list(latency),
        top1=top1,
        top1_source=top1_source,
        earlier_runs=runs,
        threads=2,
    )


def verdicts(checks):
    return {c.metric: c.verdict for c in checks}


BASE = case(earlier=2)  # a baseline of 3 runs


def test_a_latency_regression_fails_the_latency_gate_and_not_the_energy_one():
    checks = compare_case(BASE, case(latency=scaled(LATENCY, 1.3)), Tolerances(energy=0.05, latency=0.10))
    assert verdicts(checks) == {"energy": UNCHANGED, "latency": REGRESSED}
    latency = next(c for c in checks if c.metric == "latency")
    # the latency pass values were compared, not the energy ones
    assert latency.unit == "ms/img" and latency.baseline == pytest.approx(5.0, rel=0.01) and latency.current == pytest.approx(6.5, rel=0.01)
    assert latency.baseline_runs == 3
    assert latency.describe().startswith("latency +30.0% vs baseline (tolerance 10%")


def test_an_energy_regression_does_not_fail_an_unchanged_latency():
    checks = compare_case(BASE, case(energy=scaled(ENERGY, 1.3)), Tolerances(energy=0.05, latency=0.10))
    assert verdicts(checks) == {"energy": REGRESSED, "latency": UNCHANGED}


@pytest.mark.parametrize("factor, verdict", [(1.05, UNCHANGED), (0.7, IMPROVED)], ids=["within-tolerance", "faster"])
def test_latency_within_tolerance_is_unchanged_and_faster_is_improved(factor, verdict):
    checks = compare_case(BASE, case(latency=scaled(LATENCY, factor)), Tolerances(energy=0.05, latency=0.10))
    assert verdicts(checks)["latency"] == verdict


def test_the_latency_gate_is_off_unless_a_tolerance_is_set():
    assert verdicts(compare_case(BASE, case(latency=scaled(LATENCY, 2.0)), Tolerances())) == {"energy": UNCHANGED}


def measured(top1):
    return case(top1=top1, top1_source=results.MEASURED_TOP1, earlier=2)


@pytest.mark.parametrize(
    "current, verdict",
    [(79.0, REGRESSED), (79.5, UNCHANGED), (79.7, UNCHANGED), (81.0, IMPROVED)],
    ids=["drop-1-point", "drop-at-tolerance", "drop-within", "rise-1-point"],
)
def test_top1_compares_measured_accuracy_in_points(current, verdict):
    checks = compare_case(measured(80.0), measured(current), Tolerances(energy=0.05, top1=0.5))
    assert verdicts(checks) == {"energy": UNCHANGED, "top1": verdict}
    top1 = next(c for c in checks if c.metric == "top1")
    assert (top1.baseline, top1.current, top1.tolerance) == (80.0, current, 0.5)
    assert top1.change == pytest.approx(current - 80.0)


def test_the_top1_gate_is_off_unless_a_tolerance_is_set():
    assert "top1" not in verdicts(compare_case(measured(80.0), measured(70.0), Tolerances()))


@pytest.mark.parametrize("side", ["baseline", "current"])
def test_a_reference_top1_is_never_gated(side):
    # timm's reference figure, shown for random weights: not a measurement of this run
    reference = case(top1=70.0, top1_source=results.REFERENCE_TOP1, earlier=2)
    base, cur = (reference, measured(80.0)) if side == "baseline" else (measured(80.0), reference)
    assert "top1" not in verdicts(compare_case(base, cur, Tolerances(energy=0.05, top1=0.5)))
