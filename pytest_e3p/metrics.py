"""The E3P formulas: NetScore (stage 1), SAM (stage 2), Pareto fronts and rank agreement.

NetScore (Wong 2018):  20 * log10( a^2 / (sqrt(p) * sqrt(m)) )
    a = ImageNet top-1 in percent, p = parameters in millions, m = GMACs for one image.

SAM_alpha (Sustainable Accuracy Metric):  alpha * acc^alpha / log10(E)
    acc = top-1 as a fraction in [0, 1], E = mean energy per image in millijoules.
    Dimensionless per image, so a 10,000- and a 50,000-image set give the same value. Undefined for
    E <= 1 mJ (log10(E) <= 0): we report "undefined", never a negative or infinite score.

Footprint: energy of a million images (kWh) = E x 1e6 / 3.6e9 (E in mJ per image); grams CO2e and
cost are that times the factor the user gives per kWh (nothing is looked up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_SAM_ALPHA = 5.0

MJ_PER_KWH = 3.6e9  # 1 kWh = 3.6e6 J = 3.6e9 mJ
IMAGES_PER_MILLION = 1e6


def netscore(top1_pct: float, params_m: float, gmacs: float) -> float:
    if top1_pct <= 0 or params_m <= 0 or gmacs <= 0:
        raise ValueError("NetScore needs positive accuracy, parameters and MACs")
    return 20.0 * math.log10(top1_pct**2 / (math.sqrt(params_m) * math.sqrt(gmacs)))


def sam(top1_frac: float, energy_mj_per_image: float, alpha: float = DEFAULT_SAM_ALPHA) -> float | None:
    """SAM_alpha, or None where it is undefined (E <= 1 mJ/image)."""
    if not 0.0 <= top1_frac <= 1.0:
        raise ValueError(f"SAM takes accuracy as a fraction in [0, 1], got {top1_frac}")
    if energy_mj_per_image <= 1.0:
        return None
    return alpha * top1_frac**alpha / math.log10(energy_mj_per_image)


def kwh_per_million_images(energy_mj_per_image: float) -> float:
    """Energy per image (mJ) as the energy of a million images (kWh): the unit grid carbon
    intensities and electricity prices are quoted in."""
    return energy_mj_per_image * IMAGES_PER_MILLION / MJ_PER_KWH


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the points no other point dominates.

    A point dominates another when it is at least as good in every objective and better in one;
    maximize[k] says whether objective k is better high (accuracy) or low (energy, MACs)."""
    return [i for i in range(len(points)) if not dominated_by(points, maximize, i)]


def dominated_by(points: Sequence[Sequence[float]], maximize: Sequence[bool], i: int) -> list[int]:
    """Indices of the points that dominate point i (empty when i is on the front)."""
    signed = [[v if up else -v for v, up in zip(p, maximize)] for p in points]
    p = signed[i]
    return [j for j, q in enumerate(signed) if j != i and all(q[k] >= p[k] for k in range(len(p))) and any(q[k] > p[k] for k in range(len(p)))]


def ranks(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1-based rank of each value (1 = best); ties get the same, lower rank (scipy's method="min")."""
    from scipy.stats import rankdata

    return [int(r) for r in rankdata([-v if higher_is_better else v for v in values], method="min")]


def noise_ranks(values: Sequence[float], halfwidths: Sequence[float], higher_is_better: bool) -> list[int]:
    """1-based ranks in which values whose noise bands overlap share a rank.

    A band is value +/- halfwidth. Walking from the best, a value starts a new rank only when its band
    is clear of the band of the first value of the current rank; so a ranking never orders two
    models whose difference is within the noise of the measurement."""
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(range(len(values)), key=lambda i: sign * values[i])
    out = [0] * len(values)
    head = None
    rank = 0
    for position, i in enumerate(order, 1):
        if head is None or sign * (values[i] - values[head]) > halfwidths[i] + halfwidths[head]:
            head, rank = i, position
        out[i] = rank
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two orderings (scipy), None with fewer than 3 items."""
    if len(a) < 3:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return None if tau is None or math.isnan(tau) else float(tau)
