"""The regression decision on between-pass and between-run noise (METHOD.md, "Deciding a regression").

Most of the noise of an energy or latency figure is *between* runs, not between the rounds of one
run: on a 2-core VM the rounds of one pass spread by 1-3 % while identical runs moved by up to 15 %.
A test on the rounds of two single runs calls every between-run shift significant. So each run
measures every case in P passes (pass 1 over all cases, then pass 2, ...), a pass gives one value
(the median of its rounds), and a baseline keeps the pass values of up to K runs.

The rule, on log values (a change is a ratio):

    run value    = mean of the run's log pass values
    change       = exp(this run's value - mean of the baseline's run values) - 1
    v            = variance of one run value:
                     K >= 2 baseline runs: the larger of the baseline runs' variance (df K-1) and the
                     pooled between-pass variance / P (df: the pooled passes')
                     K == 1: the pooled between-pass variance / P (between-run noise unmeasured)
    SE           = sqrt(v * (1 + 1/K))
    p            = one-sided Student t of the change against SE
    noise        = t(1 - alpha, df) * SE: the smallest change that is significant
    regressed    = change > tolerance  and  p < alpha (0.01)

So a case fails only when its change is beyond the tolerance *and* beyond the noise this device has
shown. A change beyond the tolerance but within the noise is "inconclusive": reported, not failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.01
REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"


@dataclass(frozen=True)
class Noise:
    """What the pass values of a baseline (and the current run) say about a case's noise."""

    se_log: float | None  # standard error of the log change; None: not estimable
    df: int
    runs: int  # baseline runs K
    between_runs: bool  # whether the between-run spread was measured (K >= 2) and used

    @property
    def t_crit(self) -> float | None:
        if self.df < 1:
            return None
        from scipy.stats import t

        return float(t.ppf(1.0 - ALPHA, self.df))

    @property
    def threshold(self) -> float | None:
        """The smallest relative change significant at ALPHA (the "noise" users read)."""
        if self.se_log is None or self.t_crit is None:
            return None
        return math.exp(self.t_crit * self.se_log) - 1.0


def _logs(values: Sequence[float]) -> list[float]:
    return [math.log(v) for v in values]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _var(values: Sequence[float]) -> float:
    m = _mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def pooled_pass_variance(runs: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled variance of log pass values around their run's mean, and its degrees of freedom."""
    ss, df = 0.0, 0
    for run in runs:
        if len(run) >= 2:
            logs = _logs(run)
            m = _mean(logs)
            ss += sum((x - m) ** 2 for x in logs)
            df += len(run) - 1
    return (ss / df if df else 0.0), df


def noise(base_runs: Sequence[Sequence[float]], current_passes: int, current: Sequence[float] = ()) -> Noise:
    """The noise of the comparison of a run of `current_passes` passes with `base_runs`.

    `current` (the run's own pass values, when known) adds to the pooled between-pass variance."""
    k = len(base_runs)
    pass_var, pass_df = pooled_pass_variance([*base_runs, current] if current else base_runs)
    p = max(1, current_passes)
    if k >= 2:
        run_var = _var([_mean(_logs(r)) for r in base_runs])
        if run_var >= pass_var / p:
            v, df, between = run_var, k - 1, True
        else:
            v, df, between = pass_var / p, pass_df, True
    else:
        v, df, between = pass_var / p, pass_df, False
    if df < 1:
        return Noise(None, 0, k, between)
    return Noise(math.sqrt(v * (1.0 + 1.0 / max(k, 1))), df, k, between)


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
    verdict: str
    change: float  # relative
    p_value: float | None
    noise: Noise
    note: str = ""


def decide(base_runs: Sequence[Sequence[float]], current: Sequence[float], tolerance: float, alpha: float = ALPHA) -> Decision:
    """The gate for a lower-is-better metric (energy, latency) on pass values."""
    from scipy.stats import t

    base_runs = [list(r) for r in base_runs if r]
    current = list(current)
    if not base_runs or not current:
        raise ValueError("decide needs pass values for the baseline and the current run")
    base_center = _mean([_mean(_logs(r)) for r in base_runs])
    diff = _mean(_logs(current)) - base_center
    change = math.exp(diff) - 1.0
    nz = noise(base_runs, len(current), current)
    if nz.se_log is None:
        return Decision(INCONCLUSIVE, change, None, nz, "no noise measure (1 pass against a 1-pass, 1-run baseline): use --e3p-passes 2 or more")
    if nz.se_log == 0.0:
        p_up = 0.0 if diff > 0 else 1.0
    else:
        p_up = float(t.sf(diff / nz.se_log, nz.df))
    p_down = 1.0 - p_up if nz.se_log else (0.0 if diff < 0 else 1.0)
    if change > tolerance:
        if p_up < alpha:
            return Decision(REGRESSED, change, p_up, nz)
        return Decision(INCONCLUSIVE, change, p_up, nz, "within the noise: not failed")
    if change < -tolerance:
        return Decision(IMPROVED if p_down < alpha else UNCHANGED, change, p_down, nz)
    return Decision(UNCHANGED, change, None, nz)


def spread(values: Sequence[float]) -> float | None:
    """Coefficient of variation of pass (or run) values: sd / mean; None with fewer than 2."""
    if len(values) < 2:
        return None
    m = _mean(values)
    return math.sqrt(_var(values)) / m if m else None


def supported_tolerance(base_runs: Sequence[Sequence[float]], passes: int) -> float | None:
    """The smallest tolerance this baseline's noise supports for a run of `passes` passes."""
    return noise(base_runs, passes).threshold
