"""The regression decision on between-pass and between-run noise.

Most of the noise of an energy or latency figure is *between* runs, not between the rounds of one
run: on a 2-core VM the rounds of one pass spread by 1-3 % while identical runs moved by up to 15 %.
A test on the rounds of two single runs calls every between-run shift significant. So each run
measures every case in P passes (pass 1 over all cases, then pass 2, ...), a pass gives one value
(the median of its rounds), and a baseline keeps the pass values of up to K runs.

The rule, on log values (a change is a ratio):

    run value    = median of the run's log pass values (a pass disturbed by another job is outvoted)
    change       = exp(this run's value - mean of the baseline's run values) - 1
    v            = variance of one run value: the baseline runs' variance (df K-1), moderated by the
                     between-run variance pooled over all cases of the baseline (a moderated t test:
                     the machine's noise is shared by its cases, and K-1 alone is few degrees of
                     freedom). Where no case holds 2 runs: the pooled between-pass variance
                     x (pi/2) / P, and the message says between-run noise was not measured
    v_this       = v, or where this run's own passes spread wider: their variance (a robust MAD,
                     moderated by the machine's between-pass variance as the baseline's is); kept
                     alone (few df: "disturbed, run again") only where significantly wider
    SE           = sqrt(v_this + v/K)
    p            = one-sided Student t of the change against SE
    noise        = t(1 - alpha, df) * SE: the smallest change that is significant
    regressed    = change > tolerance  and  p < alpha (0.01)

So a case fails only when its change is beyond the tolerance *and* beyond the noise this device has
shown. A change beyond the tolerance but within the noise is "inconclusive": reported, not failed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .verdict import IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED, WITHIN_NOISE, Verdict  # noqa: F401  (the verdicts' names are imported from here too)

ALPHA = 0.01


def look_alpha(look: int, confirm: int, alpha: float = ALPHA) -> float:
    """The false-alarm level of look `look` (1: the run's own passes; 2..confirm+1: after each
    confirmation pass) when up to `confirm` confirmation passes may follow: a Bonferroni split of
    `alpha` over the looks, half to the first look and the other half shared equally by the
    confirmation looks. The levels sum to `alpha`, so the chance that any look of a case calls an
    unchanged case regressed stays <= alpha, however many looks it takes (the looks share data,
    which makes the split conservative). Without confirmation the one look gets all of `alpha`."""
    if confirm <= 0:
        return alpha
    return alpha / 2 if look <= 1 else alpha / (2 * confirm)


# The prior's weight is capped so that a case noisier than the others still shows its own noise.
PRIOR_DF_CAP = 12


@dataclass(frozen=True)
class Prior:
    """Between-run variance of log values pooled over a baseline's cases, and its weight (df)."""

    variance: float
    df: int  # the weight: the pooled degrees of freedom, capped at PRIOR_DF_CAP
    total_df: int = 0  # the pooled degrees of freedom before the cap (0: not kept)
    cases: int = 0  # the cases it pools (0: not kept)

    def without(self, variance: float, df: int) -> Prior | None:
        """The prior a case is moderated with: None where it pools that case alone (its own spread
        is not counted twice), else its weight less the case's own degrees of freedom."""
        if df <= 0 or self.total_df <= 0:
            return self
        rest = self.total_df - df
        if rest <= 0 or self.cases <= 1:
            return None
        return Prior(self.variance, min(rest, PRIOR_DF_CAP), rest, self.cases - 1)


@dataclass(frozen=True)
class Noise:
    """What the pass values of a baseline (and the current run) say about a case's noise."""

    se_log: float | None  # standard error of the log change; None: not estimable
    df: int
    runs: int  # baseline runs K
    between_runs: bool  # whether the between-run spread was measured (K >= 2) and used
    disturbed: bool = False  # this run's own passes spread significantly wider than the machine's
    alpha: float = ALPHA  # the false-alarm level of this look (look_alpha)

    @property
    def t_crit(self) -> float | None:
        if self.df < 1:
            return None
        from scipy.stats import t

        return float(t.ppf(1.0 - self.alpha, self.df))

    @property
    def threshold(self) -> float | None:
        """The smallest relative change significant at ALPHA (the "noise" users read)."""
        if self.se_log is None or self.t_crit is None:
            return None
        return math.exp(self.t_crit * self.se_log) - 1.0


def _logs(values: Sequence[float]) -> list[float]:
    return [math.log(v) for v in values]


def pooled_pass_variance(runs: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled variance of log pass values around their run's mean, and its degrees of freedom."""
    ss, df = 0.0, 0
    for run in runs:
        if len(run) >= 2:
            logs = _logs(run)
            m = statistics.fmean(logs)
            ss += sum((x - m) ** 2 for x in logs)
            df += len(run) - 1
    return (ss / df if df else 0.0), df


def run_variance(base_runs: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Variance of the runs' values (log), and its degrees of freedom (K - 1)."""
    if len(base_runs) < 2:
        return 0.0, 0
    return statistics.variance([run_value(r) for r in base_runs]), len(base_runs) - 1


def pooled_run_prior(cases_runs: Sequence[Sequence[Sequence[float]]], cap_df: int = PRIOR_DF_CAP) -> Prior | None:
    """The between-run variance pooled over the cases of one baseline (one device, one run of all
    cases at a time): the prior of the moderated test. None when no case holds 2 runs."""
    ss, df = 0.0, 0
    for runs in cases_runs:
        v, d = run_variance(runs)
        ss += v * d
        df += d
    if df == 0:
        return None
    return Prior(ss / df, min(df, cap_df))


def pooled_pass_prior(cases_runs: Sequence[Sequence[Sequence[float]]], cap_df: int = PRIOR_DF_CAP) -> Prior | None:
    """The between-pass variance of the machine, from the cases of one baseline: the prior that
    moderates each case's own between-pass variance (the passes of all cases ran on the same machine
    in the same processes).

    Robust: the median of the cases' own variances (corrected to a mean for chi-square variances of
    their typical degrees of freedom, Wilson-Hilferty), so one noisy case does not make the quiet
    ones look noisy. Its weight d0 is the pooled degrees of freedom of the cases, capped at
    PRIOR_DF_CAP (12). None without a case of 2 passes."""
    own = [pooled_pass_variance(runs) for runs in cases_runs]
    own = [(v, d) for v, d in own if d >= 1]
    if not own:
        return None
    df = sum(d for _, d in own)
    typical_df = statistics.median(d for _, d in own)
    median_to_mean = (1.0 - 2.0 / (9.0 * typical_df)) ** 3
    return Prior(statistics.median(v for v, _ in own) / median_to_mean, min(df, cap_df), df, len(own))


def moderated(own_var: float, own_df: int, prior: Prior | None) -> tuple[float, int]:
    """A case's variance moderated toward the machine's pooled one (empirical Bayes, Smyth 2004):
    (d0 s0^2 + d s^2) / (d0 + d) on d0 + d degrees of freedom. A case whose own variance is
    significantly wider than the machine's (F test at ALPHA) keeps its own: it is noisier than the
    others, and the pooled figure would hide it."""
    if prior is None or prior.df < 1:
        return own_var, own_df
    if own_df >= 1 and prior.variance > 0:
        from scipy.stats import f

        if own_var / prior.variance > float(f.ppf(1.0 - ALPHA, own_df, prior.df)):
            return own_var, own_df
    return (prior.variance * prior.df + own_var * own_df) / (prior.df + own_df), prior.df + own_df


def noise(
    base_runs: Sequence[Sequence[float]],
    current_passes: int,
    current: Sequence[float] = (),
    prior: Prior | None = None,
    pass_prior: Prior | None = None,
    alpha: float = ALPHA,
) -> Noise:
    """The noise of the comparison of a run of `current_passes` passes with `base_runs`.

    A run value varies by its between-run variance, estimated from the baseline's run values (K - 1
    degrees of freedom) and moderated by `prior`, the between-run variance pooled over all cases of
    the baseline: v = (d0 s0^2 + d s^2) / (d0 + d) with df d0 + d, as in a moderated t test (Smyth
    2004). Only where no case of the baseline holds 2 runs does the spread of the passes stand in
    for it (pooled over the baseline's and this run's passes; pi/2 for the variance of a median),
    and that is said: it cannot see what changes between processes.

    The between-pass variance is moderated by `pass_prior` (pooled_pass_prior), as the between-run
    variance is by `prior`: with a 1-run baseline a case's own passes give it about 4 degrees of
    freedom, the machine's passes many more. A run of more passes than the baseline's (confirmation
    passes) has a run value whose between-pass part is smaller: v_current = v - c s_p^2 / P_base +
    c s_p^2 / P, never below what its passes alone make it."""
    k = len(base_runs)
    p = max(1, current_passes)
    median_factor = math.pi / 2 if p >= 3 else 1.0  # variance of a median of p against a mean
    own_var, own_df = run_variance(base_runs)
    v_run, df = moderated(own_var, own_df, prior)
    if pass_prior is not None:  # toward the other cases' passes: this case's own are counted once
        pass_prior = pass_prior.without(*pooled_pass_variance(base_runs))
    if df >= 1:
        # A run value cannot vary less between runs than its own passes make it: two runs that
        # happen to agree are no proof of zero noise. The floor uses the baseline's passes only.
        pass_var, pass_df = moderated(*pooled_pass_variance(base_runs), pass_prior)
        base_p = max(1, round(statistics.fmean(len(r) for r in base_runs)))
        base_part = pass_var * (math.pi / 2 if base_p >= 3 else 1.0) / base_p if pass_df >= 1 else 0.0
        if base_part > v_run:
            v_run, df = base_part, pass_df
        # this run's value: the between-run part, and the between-pass part of its own p passes
        v = max(v_run - base_part, 0.0) + pass_var * median_factor / p if pass_df >= 1 and p != base_p else v_run
        # This run's own passes may show it was noisier than the baseline's runs were. A robust
        # spread (MAD) of its passes, so one outlying pass, which the median already outvotes, does
        # not count; moderated toward the machine's between-pass variance as the baseline's is:
        # 3 passes alone are 2 degrees of freedom (t at 1 % near 7-10, thresholds of +/-100 % and
        # more on a VM, issue 24). Only a run whose passes spread significantly wider than the
        # machine's (the F test of `moderated`) keeps its own few degrees of freedom: disturbed.
        v_current, disturbed = v, False
        if len(current) >= 3:
            logs = _logs(current)
            mid = statistics.median(logs)
            robust_sd = 1.4826 * statistics.median(abs(x - mid) for x in logs)
            cur_var, cur_df = moderated(robust_sd**2, len(current) - 1, pass_prior)
            v_passes = cur_var * median_factor / len(current)  # its value's variance, from its passes
            if v_passes > v:
                v_current, df = v_passes, min(df, cur_df)
                disturbed = cur_df == len(current) - 1  # its own spread kept: wider than the machine's
        return Noise(math.sqrt(v_current + v_run / k), df, k, True, disturbed=disturbed, alpha=alpha)
    pass_var, pass_df = moderated(*pooled_pass_variance([*base_runs, current] if current else base_runs), pass_prior)
    if pass_df < 1:
        return Noise(None, 0, k, False, alpha=alpha)
    base_p = max(1, round(statistics.fmean(len(r) for r in base_runs))) if base_runs else p
    base_factor = math.pi / 2 if base_p >= 3 else 1.0
    # the current run's value (p passes) and the baseline's mean (k runs of base_p passes)
    v_sum = pass_var * (median_factor / p + base_factor / (base_p * max(k, 1)))
    return Noise(math.sqrt(v_sum), pass_df, k, False, alpha=alpha)


def run_value(passes: Sequence[float]) -> float:
    """A run's value: the median of its log pass values (one disturbed pass of three moves it not)."""
    return statistics.median(_logs(passes))


def feasibility(base_runs: Sequence[Sequence[float]] | None, passes: int) -> str | None:
    """Why the rule can never flag a regression with these counts, or None when it can.

    Checked before measuring, as asv checks its test can reach significance before it runs."""
    runs = list(base_runs or [])
    if len(runs) >= 2:
        return None
    base_df = sum(len(r) - 1 for r in runs)
    if base_df + max(passes - 1, 0) >= 1:
        return None
    return "a run of 1 pass against a baseline of 1 run of 1 pass has no measure of its noise, so no regression can ever be flagged: use --e3p-passes 2 or more (3 is the default)"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    change: float  # relative
    p_value: float | None
    noise: Noise
    note: str = ""


def decide(
    base_runs: Sequence[Sequence[float]],
    current: Sequence[float],
    tolerance: float,
    alpha: float = ALPHA,
    prior: Prior | None = None,
    pass_prior: Prior | None = None,
) -> Decision:
    """The gate for a lower-is-better metric (energy, latency) on pass values."""
    from scipy.stats import t

    base_runs = [list(r) for r in base_runs if r]
    current = list(current)
    if not base_runs or not current:
        raise ValueError("decide needs pass values for the baseline and the current run")
    base_center = statistics.fmean([run_value(r) for r in base_runs])
    diff = run_value(current) - base_center
    change = math.exp(diff) - 1.0
    nz = noise(base_runs, len(current), current, prior, pass_prior, alpha)
    if nz.se_log is None:
        return Decision(Verdict.INCONCLUSIVE, change, None, nz, "no noise measure (1 pass against a 1-pass, 1-run baseline): use --e3p-passes 2 or more")
    if nz.se_log == 0.0:
        p_up = 0.0 if diff > 0 else 1.0
    else:
        p_up = float(t.sf(diff / nz.se_log, nz.df))
    p_down = 1.0 - p_up if nz.se_log else (0.0 if diff < 0 else 1.0)
    if change > tolerance:
        if p_up < alpha:
            return Decision(Verdict.REGRESSED, change, p_up, nz)
        why = "this run's passes spread widely (another job on the machine?): run again" if nz.disturbed else "within the noise: not failed"
        return Decision(Verdict.INCONCLUSIVE, change, p_up, nz, why)
    if change < -tolerance:
        return Decision(Verdict.IMPROVED if p_down < alpha else Verdict.WITHIN_NOISE, change, p_down, nz)
    return Decision(Verdict.UNCHANGED, change, None, nz)


def spread(values: Sequence[float]) -> float | None:
    """Coefficient of variation of pass (or run) values: sd / mean; None with fewer than 2."""
    if len(values) < 2:
        return None
    m = statistics.fmean(values)
    return math.sqrt(statistics.variance(values)) / m if m else None


def supported_tolerance(
    base_runs: Sequence[Sequence[float]], passes: int, prior: Prior | None = None, pass_prior: Prior | None = None, alpha: float = ALPHA
) -> float | None:
    """The smallest tolerance this baseline's noise supports for a run of `passes` passes."""
    return noise(base_runs, passes, prior=prior, pass_prior=pass_prior, alpha=alpha).threshold
