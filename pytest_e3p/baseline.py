"""Baselines and the regression gate (METHOD.md, "Deciding a regression").

A case regresses on a metric when it is worse than its baseline by more than the tolerance **and**
the difference is significant on the round samples: a one-sided Mann-Whitney U test at alpha = 0.01.
Energy and latency compare the medians of the rounds (relative tolerance); top-1 is one
deterministic number per case and compares in percentage points. Improvements are reported, never
failed. Only like is compared with like: a baseline from another device, precision, batch size,
image size, weights or energy source kind (a measurement against an estimate) is refused.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

from .results import OK, CaseResult, ResultsFile

ALPHA = 0.01
REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
METRICS = ("energy", "latency", "top1")


class ToleranceError(ValueError):
    pass


class IncompatibleBaseline(Exception):
    """The baseline was measured under other conditions; the message names the difference."""


@dataclass(frozen=True)
class Tolerances:
    """energy and latency: relative (0.05 = 5%); top1: percentage points. None = gate off."""

    energy: float | None = 0.05
    latency: float | None = None
    top1: float | None = None

    def with_overrides(self, **kw: float | None) -> "Tolerances":
        """These tolerances with the given ones replaced (a None leaves a metric as it is)."""
        return dataclasses.replace(self, **{m: v for m, v in kw.items() if v is not None})


def parse_tolerances(text: str) -> Tolerances:
    """`energy=5%,latency=10%,top1=0.5` -> Tolerances; energy defaults to 5%, others off."""
    values: dict[str, float | None] = {"energy": 0.05, "latency": None, "top1": None}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        metric, sep, raw = part.partition("=")
        metric = metric.strip()
        if not sep or metric not in METRICS:
            raise ToleranceError(f"cannot read tolerance {part!r}: expected METRIC=VALUE with METRIC in {', '.join(METRICS)} (e.g. energy=5%,latency=10%,top1=0.5)")
        raw = raw.strip()
        if raw.lower() == "off":
            values[metric] = None
            continue
        try:
            value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
        except ValueError:
            raise ToleranceError(f"cannot read tolerance {part!r}: {raw!r} is not a number or a percentage") from None
        if metric == "top1" and raw.endswith("%"):
            value *= 100.0  # top1 tolerances are percentage points: "0.5%" and "0.5" both mean 0.5 points
        if value < 0:
            raise ToleranceError(f"tolerance {part!r} is negative")
        values[metric] = value
    return Tolerances(**values)


@dataclass(frozen=True)
class Check:
    """One metric of one case against its baseline."""

    metric: str
    unit: str
    baseline: float
    current: float
    tolerance: float
    p_value: float | None
    verdict: str
    note: str = ""

    @property
    def change(self) -> float:
        """Relative change (energy, latency) or percentage points (top1)."""
        if self.metric == "top1":
            return self.current - self.baseline
        return self.current / self.baseline - 1.0

    def describe(self) -> str:
        if self.metric == "top1":
            change, tol = f"{self.change:+.2f} pt", f"{self.tolerance:g} pt"
        else:
            change, tol = f"{self.change:+.1%}", f"{self.tolerance:.0%}"
        p = f", p={self.p_value:.3g}" if self.p_value is not None else ""
        relation = ">" if self.verdict == REGRESSED else "vs"
        text = f"{self.metric} {self.current:.4g} {self.unit} vs baseline {self.baseline:.4g} ({change}{p} {relation} tolerance {tol})"
        return f"{text}; {self.note}" if self.note else text


def _mann_whitney_p(worse: list[float], better: list[float]) -> float:
    """P-value that `worse` is stochastically greater than `better` (one-sided U test)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(worse, better, alternative="greater").pvalue)


def decide(metric: str, unit: str, base: list[float], cur: list[float], tolerance: float, alpha: float = ALPHA) -> Check:
    """The gate for a lower-is-better metric with round samples (energy, latency)."""
    b, c = statistics.median(base), statistics.median(cur)
    change = c / b - 1.0
    if min(len(base), len(cur)) < 3:
        return Check(metric, unit, b, c, tolerance, None, INCONCLUSIVE, f"too few rounds to test ({len(base)} vs {len(cur)})")
    if change > tolerance:
        p = _mann_whitney_p(cur, base)
        return Check(metric, unit, b, c, tolerance, p, REGRESSED if p < alpha else INCONCLUSIVE, "" if p < alpha else "not significant")
    if change < -tolerance:
        p = _mann_whitney_p(base, cur)
        return Check(metric, unit, b, c, tolerance, p, IMPROVED if p < alpha else UNCHANGED)
    return Check(metric, unit, b, c, tolerance, None, UNCHANGED)


def decide_top1(base: float, cur: float, tolerance: float) -> Check:
    """Accuracy on a fixed set is deterministic: a drop beyond the tolerance is a regression."""
    drop = base - cur
    verdict = REGRESSED if drop > tolerance else IMPROVED if -drop > tolerance else UNCHANGED
    return Check("top1", "%", base, cur, tolerance, None, verdict)


def case_conditions(case: CaseResult) -> dict[str, object]:
    return {
        "model": case.model,
        "weights": case.weights,
        "precision": case.precision,
        "batch size": case.batch_size,
        "image size": list(case.image_size),
        "energy kind": case.energy_kind,
        "energy boundary": case.boundary,  # VDD_IN vs a sum of rails; an estimate's assumptions
    }


def case_incompatibility(base: CaseResult, cur: CaseResult) -> str | None:
    for key, b in case_conditions(base).items():
        c = case_conditions(cur)[key]
        if b != c:
            extra = " (an estimate is never compared with a measurement)" if key == "energy kind" else ""
            return f"{key} differs: baseline {b}, this run {c}{extra}"
    return None


def device_incompatibility(base: ResultsFile, device: dict) -> str | None:
    """Whether a baseline belongs to this device (profile name and hardware name)."""
    if base.device.get("name") != device.get("name"):
        return f"the baseline is for device {base.device.get('name')!r}, this run is on {device.get('name')!r}"
    b_hw = base.device.get("identity", {}).get("name")
    c_hw = device.get("identity", {}).get("name")
    if b_hw and c_hw and b_hw != c_hw:
        return f"the baseline was measured on {b_hw!r}, this run is on {c_hw!r}"
    return None


def compare_case(base: CaseResult, cur: CaseResult, tol: Tolerances) -> list[Check]:
    """The checks of one case; IncompatibleBaseline when the conditions differ."""
    why = case_incompatibility(base, cur)
    if why:
        raise IncompatibleBaseline(f"{cur.case_id}: {why}")
    checks = []
    if tol.energy is not None and base.energy_mj_per_image_samples and cur.energy_mj_per_image_samples:
        checks.append(decide("energy", "mJ/img", base.energy_mj_per_image_samples, cur.energy_mj_per_image_samples, tol.energy))
    if tol.latency is not None and base.latency_ms_per_image_samples and cur.latency_ms_per_image_samples:
        checks.append(decide("latency", "ms/img", base.latency_ms_per_image_samples, cur.latency_ms_per_image_samples, tol.latency))
    if tol.top1 is not None and base.top1 is not None and cur.top1 is not None and base.top1_source == cur.top1_source == "measured":
        checks.append(decide_top1(base.top1, cur.top1, tol.top1))
    return checks


@dataclass
class Comparison:
    """A whole run against a baseline."""

    checks: dict[str, list[Check]] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)  # cases the baseline does not have
    missing: list[str] = field(default_factory=list)  # baseline cases this run did not run
    refused: dict[str, str] = field(default_factory=dict)  # case -> why it could not be compared

    @property
    def regressions(self) -> dict[str, list[Check]]:
        return {cid: [c for c in cs if c.verdict == REGRESSED] for cid, cs in self.checks.items() if any(c.verdict == REGRESSED for c in cs)}

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.refused)


def compare_files(base: ResultsFile, cur: ResultsFile, tol: Tolerances) -> Comparison:
    """Every case of `cur` against `base` (the `compare` command and the end-of-run table)."""
    why = device_incompatibility(base, cur.device)
    if why:
        raise IncompatibleBaseline(why)
    out = Comparison()
    for cid, case in sorted(cur.cases.items()):
        if case.status != OK:
            continue
        if cid not in base.cases:
            out.new.append(cid)
            continue
        try:
            out.checks[cid] = compare_case(base.cases[cid], case, tol)
        except IncompatibleBaseline as exc:
            out.refused[cid] = str(exc)
    out.missing = sorted(set(base.cases) - set(cur.cases))
    return out
