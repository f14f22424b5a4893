"""Noise pooled across cases: each case's between-pass variance moderated toward the machine's
(empirical Bayes), a noisier case kept visibly noisier, more degrees of freedom for a 1-run baseline."""

import math

import numpy as np
from fakes.results import case_result, results_file

from pytest_e3p.gate import stats
from pytest_e3p.gate.baseline import compare_case, parse_tolerances, priors


def passes(rng, level, cv, n=3):
    return list(level * np.exp(rng.normal(0.0, cv, n)))


def suite(seed=0, quiet_cv=0.01, noisy_cv=0.08, cases=8):
    """A 1-run baseline of `cases` cases, 3 passes each: all quiet but the last, which is noisy."""
    rng = np.random.default_rng(seed)
    runs = [[passes(rng, 40.0, quiet_cv)] for _ in range(cases - 1)]
    runs.append([passes(rng, 40.0, noisy_cv)])
    return runs


def test_a_case_of_3_passes_against_a_1_run_baseline_gets_more_degrees_of_freedom():
    cases = suite()
    prior = stats.pooled_pass_prior(cases)
    alone = stats.noise(cases[0], 3)
    pooled = stats.noise(cases[0], 3, pass_prior=prior)
    assert alone.df == 2 and pooled.df > alone.df  # its own 2, and the other cases' (capped)
    assert pooled.df <= alone.df + stats.PRIOR_DF_CAP
    assert pooled.t_crit < alone.t_crit  # t(0.99, 2) = 6.96; pooled, t(0.99, 14) = 2.62


def test_a_noisy_case_among_quiet_ones_stays_visibly_noisier():
    cases = suite()
    prior = stats.pooled_pass_prior(cases)
    quiet = [stats.noise(c, 3, pass_prior=prior).threshold for c in cases[:-1]]
    noisy = stats.noise(cases[-1], 3, pass_prior=prior).threshold
    assert noisy > 2 * max(quiet)  # its own spread still shows


def test_a_case_is_moderated_toward_the_other_cases_not_its_own_passes_twice():
    one = [[[40.0, 41.2, 38.9]]]  # a baseline of one case: no other case to pool with
    prior = stats.pooled_pass_prior(one)
    assert stats.noise(one[0], 3, pass_prior=prior).df == stats.noise(one[0], 3).df


def test_the_moderated_variance_is_the_weighted_mean_of_the_case_and_the_machine():
    prior = stats.Prior(0.0004, 12, 30)
    v, df = stats.moderated(0.0016, 4, prior)
    assert math.isclose(v, (0.0004 * 12 + 0.0016 * 4) / 16) and df == 16


def test_the_gate_pools_the_passes_of_a_baselines_cases():
    rng = np.random.default_rng(3)
    base = results_file([case_result(f"m{i}-cpu-synthetic", 40.0, energy_mj_per_image_passes=passes(rng, 40.0, 0.01)) for i in range(6)])
    cur = case_result("m0-cpu-synthetic", 40.0, energy_mj_per_image_passes=[40.0 * 1.12, 40.0 * 1.125, 40.0 * 1.115])
    tol = parse_tolerances("energy=5%")
    pooled = compare_case(base.cases["m0-cpu-synthetic"], cur, tol, priors(base))[0]
    alone = compare_case(base.cases["m0-cpu-synthetic"], cur, tol)[0]
    assert pooled.noise < alone.noise  # more degrees of freedom: a smaller t quantile


def machine(seed=0, run_sd=0.05, pass_sd=0.08, cases=13, base_runs=3):
    """A baseline of `base_runs` runs of `cases` cases on a VM like the study's of issue 24: between
    runs 5 %, between passes 8 %, all cases alike."""
    rng = np.random.default_rng(seed)
    return [[list(40.0 * np.exp(rng.normal(0, run_sd) + rng.normal(0, pass_sd, 3))) for _ in range(base_runs)] for _ in range(cases)]


def test_a_run_whose_passes_spread_as_the_machines_do_keeps_a_finite_threshold():
    # 3 passes spreading ~12 %: wider than this case's baseline runs, but as the machine's passes do.
    # Alone they are 2 degrees of freedom (t near 10 at the first look's level): thresholds of
    # +/-100 % and more, as the 13-model study met. Moderated, the machine's passes lend theirs.
    cases = machine()
    run_prior, pass_prior = stats.pooled_run_prior(cases), stats.pooled_pass_prior(cases)
    wide = [40.0 * 0.88, 40.0, 40.0 * 1.12]
    nz = stats.noise(cases[0], 3, wide, run_prior, pass_prior, alpha=stats.look_alpha(1, 3))
    alone = stats.noise(cases[0], 3, wide, run_prior, None, alpha=stats.look_alpha(1, 3))
    assert alone.df == 2 and alone.threshold > 1.0  # the rule before: +/-100 % or more
    assert nz.df > 2 and nz.threshold < 0.5 and not nz.disturbed
    # passes that spread as the machine's do are what the baseline's noise already holds: no wider
    quiet = stats.noise(cases[0], 3, [40.0, 40.2, 39.9], run_prior, pass_prior, alpha=stats.look_alpha(1, 3))
    assert math.isclose(nz.threshold, quiet.threshold)


def test_a_run_whose_passes_spread_far_wider_than_the_machines_is_disturbed():
    cases = machine(pass_sd=0.01)  # a quiet machine: passes agree to 1 %
    run_prior, pass_prior = stats.pooled_run_prior(cases), stats.pooled_pass_prior(cases)
    nz = stats.noise(cases[0], 3, [30.0, 40.0, 55.0], run_prior, pass_prior)  # another job on the machine
    assert nz.disturbed and nz.df == 2
    d = stats.decide(cases[0], [40.0 * 1.3, 40.0 * 1.8, 40.0 * 0.9], 0.05, prior=run_prior, pass_prior=pass_prior)
    assert d.verdict == stats.INCONCLUSIVE and "run again" in d.note


def test_moderating_the_runs_own_spread_holds_false_alarms_at_the_stated_level():
    """Identical code on the machine above, 3-run baselines, each case looked at as the gate does
    (first look and up to 3 confirmation passes, tolerance 0): the share flagged stays <= alpha."""
    rng = np.random.default_rng(11)
    flagged = total = 0
    for rep in range(60):
        cases = machine(seed=1000 + rep)
        run_prior, pass_prior = stats.pooled_run_prior(cases), stats.pooled_pass_prior(cases)
        for base in cases:
            offset = rng.normal(0, 0.05)
            current = list(40.0 * np.exp(offset + rng.normal(0, 0.08, 3)))
            for look in range(1, 5):
                d = stats.decide(base, current, 0.0, alpha=stats.look_alpha(look, 3), prior=run_prior, pass_prior=pass_prior)
                if d.verdict != stats.INCONCLUSIVE:
                    break
                current.append(40.0 * float(np.exp(offset + rng.normal(0, 0.08))))
            flagged += d.verdict == stats.REGRESSED
            total += 1
    assert flagged / total <= stats.ALPHA
