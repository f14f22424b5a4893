"""The regression decision on scripted pass values, baselines of several runs, and the slow-down switch."""

import dataclasses
import random

import pytest
from fakes.results import case_result, results_file

from pytest_e3p.gate import stats as gate
from pytest_e3p.gate.baseline import merge_runs, supported_tolerance_note
from pytest_e3p.gate.stats import IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED, decide, feasibility
from pytest_e3p.measure import protocols as measure
from pytest_e3p.storage.records import EarlierRun


def runs(center, run_sd, pass_sd, k, passes=3, seed=0):
    """k runs of `passes` pass values: a run-level offset (between-run noise) times pass noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        offset = 1 + rng.gauss(0, run_sd)
        out.append([center * offset * (1 + rng.gauss(0, pass_sd)) for _ in range(passes)])
    return out


def test_a_shift_beyond_tolerance_and_noise_regresses():
    base = runs(40, 0.01, 0.01, 5)
    assert decide(base, runs(40 * 1.15, 0.0, 0.01, 1, seed=9)[0], 0.05).verdict == REGRESSED


def test_identical_code_on_a_machine_with_between_run_noise_does_not_cry_wolf():
    # Rounds and passes agree within 1 %, runs move by 4 %: the rule must weigh the runs' spread.
    rng = random.Random(1)
    flagged = 0
    for _ in range(300):
        all_runs = runs(40, 0.04, 0.01, 6, seed=rng.random())
        flagged += decide(all_runs[:5], all_runs[5], 0.05).verdict == REGRESSED
    assert flagged <= 6  # <= 2 %, expected about 1 % at alpha 0.01


def test_a_rounds_level_test_would_flag_what_the_between_run_spread_explains():
    base = [[40.0, 40.2, 40.1], [44.0, 44.1, 43.9], [37.0, 37.2, 37.1], [42.0, 41.9, 42.1], [38.5, 38.4, 38.6]]
    current = [43.5, 43.6, 43.4]  # +8 % on the mean of the runs, inside their own +/-8 % spread
    d = decide(base, current, 0.05)
    assert d.verdict == INCONCLUSIVE and d.noise.between_runs and d.noise.threshold > 0.08


def test_a_drift_within_the_run_widens_the_noise_instead_of_failing():
    base = runs(40, 0.0, 0.005, 1)
    drifting = [40.0, 44.0, 48.0]  # the machine got slower pass by pass: mean +10 %
    d = decide(base, drifting, 0.05)
    assert d.verdict == INCONCLUSIVE


def test_one_outlier_pass_does_not_fail_the_case():
    base = runs(40, 0.005, 0.005, 5)
    assert decide(base, [40.1, 39.9, 58.0], 0.05).verdict != REGRESSED  # one pass hit by a neighbour


def test_improvements_are_reported_and_small_changes_unchanged():
    base = runs(40, 0.005, 0.005, 3)
    assert decide(base, [30.0, 30.1, 29.9], 0.05).verdict == IMPROVED
    assert decide(base, [40.5, 40.6, 40.4], 0.05).verdict == UNCHANGED


def test_a_one_run_baseline_still_gates_on_the_pass_spread():
    d = decide([[40.0, 40.1, 39.9]], [46.0, 46.1, 45.9], 0.05)
    assert d.verdict == REGRESSED and not d.noise.between_runs and d.noise.runs == 1


def test_the_gate_says_when_it_can_never_fail():
    assert "--e3p-passes 2" in feasibility([[40.0]], 1)
    assert feasibility([[40.0]], 2) is None and feasibility([[40.0], [41.0]], 1) is None and feasibility(None, 3) is None
    d = decide([[40.0]], [80.0], 0.05)
    assert d.verdict == INCONCLUSIVE and "--e3p-passes 2" in d.note


def test_more_baseline_runs_make_the_noise_threshold_smaller():
    """With the same spread, 2 runs (df 1) support far less than 5 runs (df 4)."""
    two, five = runs(40, 0.02, 0.005, 2, seed=3), runs(40, 0.02, 0.005, 5, seed=3)
    assert gate.noise(two, 3).threshold > 2 * gate.noise(five, 3).threshold


def case(cid="m-cpu-synthetic", passes=(40.0, 40.2, 39.8), **kw):
    fields = dict(model="m", energy_kind="estimate", energy_mj_per_image_passes=list(passes), latency_ms_per_image_passes=[5.0, 5.1, 4.9], passes=3, threads=2)
    return case_result(cid, **{**fields, **kw})


def rfile(*cases, created="2026-01-01", protocol=None):
    return results_file(cases, identity={}, protocol=protocol or {"threads": 2}, created=created)


def test_saving_adds_runs_up_to_k_keeps_cases_not_run_and_says_so():
    base = None
    for i in range(7):
        base, lines = merge_runs(base, rfile(case(passes=(40.0 + i, 40.1 + i, 39.9 + i)), case("other-cpu-synthetic"), created=f"run{i}"), keep_runs=5)
    held = base.cases["m-cpu-synthetic"]
    assert len(held.runs("energy")) == 5  # the newest five
    assert held.runs("energy")[0][0] == 42.0 and held.runs("energy")[-1][0] == 46.0
    assert [r.created for r in held.earlier_runs] == ["run2", "run3", "run4", "run5"]
    # a run of one case (-k) keeps the other case as it was, and says which
    merged, lines = merge_runs(base, rfile(case(passes=(50.0, 50.0, 50.0)), created="run7"), keep_runs=5)
    assert "other-cpu-synthetic" in merged.cases and any("kept from the previous baseline (not run now): other-cpu-synthetic" in line for line in lines)


def test_a_baseline_of_other_conditions_is_replaced_not_mixed():
    old = rfile(case(threads=1), protocol={"threads": 1})
    merged, lines = merge_runs(old, rfile(case()), keep_runs=5)
    assert merged.cases["m-cpu-synthetic"].earlier_runs == [] and "threads differs" in lines[0]
    single, _ = merge_runs(rfile(case()), rfile(case()), keep_runs=1)
    assert single.cases["m-cpu-synthetic"].earlier_runs == []  # K=1 replaces


def test_a_baseline_noisier_than_the_tolerance_names_the_tolerance_its_data_support():
    noisy = dataclasses.replace(
        case(), earlier_runs=[EarlierRun(energy_mj_per_image_passes=[p * f for p in (40.0, 40.2, 39.8)]) for f in (0.85, 1.15, 0.9, 1.1)]
    )
    note = supported_tolerance_note(noisy, 3, 0.05)
    assert note and "wider than the energy tolerance 5%" in note and "a tolerance of" in note
    assert supported_tolerance_note(case(), 3, 0.05) is None  # one run: nothing measured to say it with


def test_the_slowdown_switch_adds_work_sized_from_the_forward_time(monkeypatch):
    # a scripted clock that only the products move: each takes 1 ms, so 10 % of a 200 ms batch is 20
    now = [0.0]
    monkeypatch.setattr(measure.time, "monotonic", lambda: now[0])
    import torch

    calls = []
    real_mm = torch.mm

    def mm(a, b):
        calls.append(1)
        now[0] += 0.001
        return real_mm(a, b)

    monkeypatch.setattr(torch, "mm", mm)
    fwd = measure.slowed(lambda: "out", lambda: None, batch_s=0.2, fraction=0.1)
    calls.clear()
    assert fwd() == "out"
    assert len(calls) == 20


def test_the_slowdown_is_sized_from_products_timed_back_to_back(monkeypatch):
    # The first product of a burst is slow (the threads wake up), the rest take 1 ms: a unit timed
    # on lone products (3 ms here) would add a third of the work asked for.
    now, burst = [0.0], [0]
    monkeypatch.setattr(measure.time, "monotonic", lambda: (burst.__setitem__(0, 0), now[0])[1])
    import torch

    calls = []
    real_mm = torch.mm

    def mm(a, b):
        calls.append(1)
        now[0] += 0.003 if burst[0] == 0 else 0.001
        burst[0] += 1
        return real_mm(a, b)

    monkeypatch.setattr(torch, "mm", mm)
    fwd = measure.slowed(lambda: "out", lambda: None, batch_s=0.2, fraction=0.1)
    calls.clear()
    fwd()
    assert 19 <= len(calls) <= 21  # 10 % of 200 ms at ~1 ms a product, not 7


@pytest.mark.parametrize("values, expected", [([40.0, 40.0], 0.0), ([40.0], None)])
def test_spread_is_the_coefficient_of_variation(values, expected):
    assert gate.spread(values) == expected


def test_the_noise_of_all_cases_of_a_baseline_moderates_each_cases_few_runs():
    cases = [runs(40 + i, 0.03, 0.005, 5, seed=i) for i in range(13)]
    prior = gate.pooled_run_prior(cases)
    assert prior.df == gate.PRIOR_DF_CAP  # 13 x 4 df, capped
    alone, moderated = gate.noise(cases[0], 3), gate.noise(cases[0], 3, prior=prior)
    assert moderated.df == 4 + gate.PRIOR_DF_CAP and moderated.threshold < alone.threshold
    # a case far noisier than the rest keeps most of its own noise
    wild = runs(40, 0.20, 0.005, 5, seed=99)
    assert gate.noise(wild, 3, prior=prior).threshold > 3 * moderated.threshold


def test_moderated_false_alarms_stay_at_the_stated_level():
    """13 cases sharing a machine's between-run noise of 3 %, baselines of 5 runs, identical code."""
    rng = random.Random(7)
    flagged = total = 0
    for _ in range(150):
        cases = [runs(40, 0.03, 0.01, 6, seed=rng.random()) for _ in range(13)]
        prior = gate.pooled_run_prior([c[:5] for c in cases])
        for c in cases:
            flagged += decide(c[:5], c[5], 0.0, prior=prior).verdict == REGRESSED  # tolerance 0: the test alone
            total += 1
    assert flagged / total < 0.02


def test_a_real_regression_is_caught_even_when_one_pass_was_disturbed():
    base = runs(40, 0.01, 0.005, 5)
    assert decide(base, [46.0, 46.2, 90.0], 0.05).verdict == REGRESSED  # +15 %, one pass hit by another job


def test_two_runs_that_happen_to_agree_are_no_proof_of_zero_noise():
    d = decide([[40, 30, 50], [35, 45, 40]], [44, 48, 39], 0.05)  # run medians both 40
    assert d.verdict == INCONCLUSIVE and d.noise.threshold > 0.2
