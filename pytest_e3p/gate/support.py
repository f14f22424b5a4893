"""What a baseline's data support: per case, the smallest regression the gate would catch against it,
and how many baseline runs or passes per run it would take to catch one at the tolerance.

The gate already knows the noise (stats.noise); this projects it. The between-run variance and the
between-pass variance measured so far (each moderated by the machine's pooled one) are taken as they
are, and only the counts change: more baseline runs shrink the uncertainty of the baseline's mean
and add degrees of freedom, more passes per run shrink the between-pass part of a run's value. The
projection is an estimate from the measured noise, and is labelled so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from . import stats

# The counts searched: beyond these the answer is "reduce the noise", not "measure more".
MAX_RUNS = 20
MAX_PASSES = 15


@dataclass(frozen=True)
class Support:
    """What one case's baseline supports for one metric."""

    case_id: str
    metric: str
    tolerance: float
    noise: float | None  # the smallest significant change now (None: not estimable)
    runs: int  # baseline runs now
    passes: int  # passes per run now
    runs_needed: int | None  # baseline runs (at `passes`) to reach the tolerance; None: not within MAX_RUNS
    passes_needed: int | None  # passes per run (at `runs`) to reach the tolerance; None: not within MAX_PASSES
    between_runs: bool  # whether between-run noise was measured

    @property
    def catches(self) -> float | None:
        """The smallest regression the gate would flag: beyond the tolerance and beyond the noise."""
        return None if self.noise is None else max(self.noise, self.tolerance)

    @property
    def meets_tolerance(self) -> bool:
        return self.noise is not None and self.noise <= self.tolerance

    def text(self) -> str:
        """One line: "deit_tiny: energy catches +9.1% (tolerance 5%); 5% needs about 4 baseline runs or 8 passes"."""
        if self.noise is None:
            return f"{self.case_id}: {self.metric}: no noise measure yet (1 pass against a 1-pass, 1-run baseline): use --e3p-passes 2 or more"
        head = f"{self.case_id}: {self.metric} catches +{self.catches:.1%} (noise +/-{self.noise:.1%}, tolerance {self.tolerance:.0%})"
        if self.meets_tolerance:
            return head
        ways = []
        if self.runs_needed is not None:
            ways.append(f"{self.runs_needed} baseline runs")
        if self.passes_needed is not None:
            ways.append(f"--e3p-passes {self.passes_needed}")
        how = (
            f"{self.tolerance:.0%} needs about {' or '.join(ways)} (estimated from the noise measured)"
            if ways
            else f"{self.tolerance:.0%} is out of reach by more runs or passes: reduce the noise (an idle machine, --e3p-threads)"
        )
        if not self.between_runs:
            how += "; between-run noise is not measured with 1 baseline run (save more: --e3p-baseline-runs)"
        return f"{head}; {how}"


def projected_noise(
    base_runs: Sequence[Sequence[float]],
    passes: int,
    runs: int,
    prior: stats.Prior | None = None,
    pass_prior: stats.Prior | None = None,
    alpha: float = stats.ALPHA,
    current: Sequence[float] = (),
) -> float | None:
    """The noise threshold if the baseline held `runs` runs and a run measured `passes` passes, with
    the variances measured in `base_runs` (and the priors) as they are. Equals
    stats.noise(base_runs, passes).threshold at today's counts (an undisturbed run)."""
    from scipy.stats import t

    k = len(base_runs)
    if k == 0:
        return None
    base_p = max(1, round(statistics.fmean(len(r) for r in base_runs)))
    f_base = math.pi / 2 if base_p >= 3 else 1.0
    f_cur = math.pi / 2 if passes >= 3 else 1.0
    v_run, df_run = stats.moderated(*stats.run_variance(base_runs), prior)
    if pass_prior is not None:  # as stats.noise: toward the other cases' passes
        pass_prior = pass_prior.without(*stats.pooled_pass_variance(base_runs))
    if df_run >= 1:
        pass_var, pass_df = stats.moderated(*stats.pooled_pass_variance(base_runs), pass_prior)
        base_part = pass_var * f_base / base_p if pass_df >= 1 else 0.0
        if base_part > v_run:
            v_run, df_run = base_part, pass_df
        v_cur = max(v_run - base_part, 0.0) + pass_var * f_cur / passes if pass_df >= 1 and passes != base_p else v_run
        df = df_run + max(runs - k, 0)  # each added run adds one degree of freedom
        var = v_cur + v_run / runs
    else:
        # as stats.noise: this run's passes (where given) count toward the between-pass spread
        pass_var, pass_df = stats.moderated(*stats.pooled_pass_variance([*base_runs, current] if current else base_runs), pass_prior)
        if pass_df < 1 and base_p < 2:
            return None
        df = pass_df + max(runs - k, 0) * (base_p - 1)  # each added run adds its passes' degrees of freedom
        var = pass_var * (f_cur / passes + f_base / (base_p * runs))
    if df < 1:
        return None
    return math.exp(float(t.ppf(1.0 - alpha, df)) * math.sqrt(var)) - 1.0


def support(
    case_id: str,
    metric: str,
    base_runs: Sequence[Sequence[float]],
    passes: int,
    tolerance: float,
    prior: stats.Prior | None = None,
    pass_prior: stats.Prior | None = None,
    current: Sequence[float] = (),
) -> Support:
    """What `base_runs` support for a run of `passes` passes at `tolerance`; `current`: this run's
    pass values, where it has run (they add to the between-pass spread of a 1-run baseline)."""
    k = len(base_runs)
    current = list(current)
    now = stats.noise(base_runs, passes, current, prior=prior, pass_prior=pass_prior)
    runs_needed = passes_needed = None
    if now.threshold is not None and now.threshold > tolerance:
        runs_needed = next(
            (n for n in range(k + 1, MAX_RUNS + 1) if _within(projected_noise(base_runs, passes, n, prior, pass_prior, current=current), tolerance)), None
        )
        passes_needed = next(
            (n for n in range(passes + 1, MAX_PASSES + 1) if _within(projected_noise(base_runs, n, k, prior, pass_prior, current=current), tolerance)), None
        )
    return Support(case_id, metric, tolerance, now.threshold, k, passes, runs_needed, passes_needed, now.between_runs)


def _within(noise: float | None, tolerance: float) -> bool:
    return noise is not None and noise <= tolerance
