"""Baselines and the regression gate: tolerances, what makes two results comparable, merging runs
into a baseline, and comparing a run with it.

The decision itself (pass values, between-run noise, the t test) is in stats.py, a case's verdict
in verdict.py. Energy and latency compare pass values against a tolerance relative to the baseline;
top-1 is one deterministic number per case and compares in percentage points. Improvements are reported, never failed. Only like is
compared with like: a baseline from another device, precision, batch size, image size, weights,
thread count or energy source kind (a measurement against an estimate) is refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..storage.results import CaseResult, ResultsFile, Status, Top1Source
from . import stats as gate
from .support import Support, support
from .verdict import IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED, WITHIN_NOISE, Verdict, verdict_label  # noqa: F401  (the verdicts' names are imported from here too)

METRICS = ("energy", "latency", "top1")
# The energy tolerance of a run that sets none (relative): the one definition of the default.
DEFAULT_ENERGY_TOLERANCE = 0.05
DEFAULT_TOLERANCES = f"energy={DEFAULT_ENERGY_TOLERANCE:.0%}"  # --e3p-tolerance's default, as written


class ToleranceError(ValueError):
    pass


class IncompatibleBaseline(Exception):
    """The baseline was measured under other conditions; the message names the difference."""


@dataclass(frozen=True)
class Tolerances:
    """energy and latency: relative (0.05 = 5%); top1: percentage points. None = gate off."""

    energy: float | None = DEFAULT_ENERGY_TOLERANCE
    latency: float | None = None
    top1: float | None = None

    def with_overrides(self, **kw: float | None) -> Tolerances:
        """These tolerances with the given ones replaced (a None leaves a metric as it is)."""
        return dataclasses.replace(self, **{m: v for m, v in kw.items() if v is not None})


def parse_tolerances(text: str) -> Tolerances:
    """`energy=5%,latency=10%,top1=0.5` -> Tolerances; energy defaults to 5%, others off."""
    values: dict[str, float | None] = {"energy": DEFAULT_ENERGY_TOLERANCE, "latency": None, "top1": None}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        metric, sep, raw = part.partition("=")
        metric = metric.strip()
        if not sep or metric not in METRICS:
            raise ToleranceError(
                f"cannot read tolerance {part!r}: expected METRIC=VALUE with METRIC in {', '.join(METRICS)} (e.g. energy=5%,latency=10%,top1=0.5)"
            )
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
        values[metric] = check_tolerance(metric, value, part, percent=raw.endswith("%"))
    return Tolerances(**values)


def check_tolerance(metric: str, value: object, source: str, percent: bool = False) -> float:
    """A tolerance that can gate: finite, not negative, and not a fraction above 1 written without %
    (energy=5 would mean 500% and switch the gate off). `source` names where it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToleranceError(f"tolerance {source}: {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise ToleranceError(f"tolerance {source}: must be a finite number (nan and inf would switch the gate off)")
    if value < 0:
        raise ToleranceError(f"tolerance {source} is negative")
    if metric != "top1" and not percent and value > 1:
        raise ToleranceError(
            f"tolerance {source}: {value:g} would mean {value:.0%}; write {value:g}% for {value:g} percent, or a fraction such as {value / 100:g}"
        )
    return value


@dataclass(frozen=True)
class Check:
    """One metric of one case against its baseline."""

    metric: str
    unit: str
    baseline: float
    current: float
    tolerance: float
    p_value: float | None
    verdict: Verdict
    note: str = ""
    noise: float | None = None  # the smallest relative change significant at ALPHA (gate.Noise.threshold)
    baseline_runs: int = 1
    throttled: bool = False  # made inconclusive because the device throttled in this run only (verdict.final_verdict)

    @property
    def label(self) -> str:
        """The verdict as a table shows it, with its reason: "inconclusive (throttled)" where
        throttling made it so, "inconclusive: noise +/-12.0% > change +8.0%" where the noise did."""
        noise_bound = self.metric != "top1"
        return verdict_label(self.verdict, self.change if noise_bound else None, self.noise if noise_bound else None, self.throttled)

    @property
    def change(self) -> float:
        """Relative change (energy, latency) or percentage points (top1)."""
        if self.metric == "top1":
            return self.current - self.baseline
        return self.current / self.baseline - 1.0

    def describe(self) -> str:
        """One plain line: "energy +13.4% vs baseline (tolerance 5%, noise +/-6.0%, p=0.004)"."""
        if self.metric == "top1":
            head = f"top-1 {self.change:+.2f} points vs baseline ({self.current:.2f}% vs {self.baseline:.2f}%; tolerance {self.tolerance:g} points)"
        else:
            parts = [f"tolerance {self.tolerance:.0%}"]
            if self.noise is not None:
                parts.append(f"noise +/-{self.noise:.1%}")
            if self.p_value is not None:
                parts.append(f"p={self.p_value:.2g}")
            runs = f"; baseline of {self.baseline_runs} run{'s' if self.baseline_runs != 1 else ''}"
            head = f"{self.metric} {self.change:+.1%} vs baseline ({', '.join(parts)}{runs}): {self.current:.4g} vs {self.baseline:.4g} {self.unit}"
        return f"{head}; {self.note}" if self.note else head


def decide(
    metric: str,
    unit: str,
    base_runs: list[list[float]],
    current: list[float],
    tolerance: float,
    prior: gate.Prior | None = None,
    pass_prior: gate.Prior | None = None,
    alpha: float = gate.ALPHA,
) -> Check:
    """The gate for a lower-is-better metric on pass values (stats.py has the rule)."""
    d = gate.decide(base_runs, current, tolerance, alpha=alpha, prior=prior, pass_prior=pass_prior)
    base_value = math.exp(sum(gate.run_value(r) for r in base_runs) / len(base_runs))
    current_value = base_value * (1.0 + d.change)
    note = d.note
    if d.verdict in (Verdict.REGRESSED, Verdict.INCONCLUSIVE) and not d.noise.between_runs and d.change > tolerance:
        note = "; ".join(n for n in (note, "the baseline holds 1 run, so between-run noise is not measured (save more runs: --e3p-baseline-runs)") if n)
    return Check(metric, unit, base_value, current_value, tolerance, d.p_value, d.verdict, note, d.noise.threshold, len(base_runs))


def decide_top1(base: float, cur: float, tolerance: float) -> Check:
    """Accuracy on a fixed set is deterministic: a drop beyond the tolerance is a regression."""
    drop = base - cur
    verdict = Verdict.REGRESSED if drop > tolerance else Verdict.IMPROVED if -drop > tolerance else Verdict.UNCHANGED
    return Check("top1", "%", base, cur, tolerance, None, verdict)


def case_conditions(case: CaseResult) -> dict[str, object]:
    return {
        "model": case.model,
        "protocol": case.protocol,
        "weights": case.weights,
        "variant": case.variant,
        "precision": case.precision,
        "batch size": case.batch_size,
        "image size": list(case.image_size),
        "threads": case.threads,
        "energy kind": case.energy_kind,
        "energy boundary": case.boundary,  # VDD_IN vs a sum of rails; an estimate's assumptions
    }


def case_incompatibility(base: CaseResult, cur: CaseResult) -> str | None:
    for key, b in case_conditions(base).items():
        c = case_conditions(cur)[key]
        if b != c:
            extra = NEVER_MIXED if key == "energy kind" else ""
            return f"{key} differs: baseline {b}, this run {c}{extra}"
    return None


NEVER_MIXED = " (an estimate is never compared with a measurement)"

# Run-wide conditions checked when a baseline is loaded, before anything is measured.
# Precision, variant and image size are per case (case_conditions); their ids differ where they do.
PROTOCOL_CONDITIONS = ("protocol", "inferences", "batch_size", "threads", "allocator", "energy_kind")


def protocol_incompatibility(base: dict, cur: dict) -> str | None:
    if "variants" not in base and base.get("precision", "fp32") != "fp32":
        # saved before variants were an axis: its cases carry no -fp16 in their ids and would all be "new"
        return f"it was saved with --e3p-precision {base['precision']}, before precisions were variants: save it again with --e3p-variants {base['precision']}"
    if base.get("protocol", "e3p") != cur.get("protocol", "e3p"):  # files before the edgevit protocol are e3p
        return f"protocol differs: baseline {base.get('protocol', 'e3p')}, this run {cur.get('protocol', 'e3p')} (net and gross energy are never compared)"
    for key in PROTOCOL_CONDITIONS:
        if key in base and key in cur and base[key] != cur[key]:
            extra = NEVER_MIXED if key == "energy_kind" else ""
            return f"{key.replace('_', ' ')} differs: baseline {base[key]}, this run {cur[key]}{extra}"
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


def priors(base: ResultsFile) -> dict[str, gate.Prior | None]:
    """Per metric, the between-run variance pooled over the baseline's cases (gate.pooled_run_prior),
    and under "<metric> passes" the between-pass variance pooled the same way (gate.pooled_pass_prior)."""
    ok = [c for c in base.cases.values() if c.status == Status.OK]
    out = {metric: gate.pooled_run_prior([c.runs(metric) for c in ok]) for metric in ("energy", "latency")}
    out.update({f"{metric} passes": gate.pooled_pass_prior([c.runs(metric) for c in ok]) for metric in ("energy", "latency")})
    return out


def compare_case(
    base: CaseResult, cur: CaseResult, tol: Tolerances, prior: dict[str, gate.Prior | None] | None = None, alpha: float = gate.ALPHA
) -> list[Check]:
    """The checks of one case; IncompatibleBaseline when the conditions differ. `prior`: the
    baseline's priors(), which let the noise estimate use all of its cases; `alpha`: this look's
    false-alarm level (gate.look_alpha where confirmation passes may follow)."""
    why = case_incompatibility(base, cur)
    if why:
        raise IncompatibleBaseline(f"{cur.case_id}: {why}")
    checks = []
    for metric, unit, limit in (("energy", "mJ/img", tol.energy), ("latency", "ms/img", tol.latency)):
        base_runs, current = base.runs(metric), cur.pass_values(metric)
        if limit is not None and base_runs and current:
            checks.append(decide(metric, unit, base_runs, current, limit, (prior or {}).get(metric), (prior or {}).get(f"{metric} passes"), alpha))
    if tol.top1 is not None and base.top1 is not None and cur.top1 is not None and base.top1_source == cur.top1_source == Top1Source.MEASURED:
        checks.append(decide_top1(base.top1, cur.top1, tol.top1))
    return checks


def gate_feasibility(base: CaseResult | None, passes: int) -> str | None:
    """Said at the start when the rule could never flag this case's energy."""
    return gate.feasibility(base.runs("energy") if base else None, passes)


def gated_metrics(tol: Tolerances) -> list[tuple[str, float]]:
    """The metrics of pass values the tolerances gate, with their tolerance."""
    return [(m, t) for m, t in (("energy", tol.energy), ("latency", tol.latency)) if t is not None]


def supports(
    base: CaseResult, passes: int, tol: Tolerances, prior: dict[str, gate.Prior | None] | None = None, current: CaseResult | None = None
) -> list[Support]:
    """What the baseline's entry for a case supports, per gated metric (support.py); `current`:
    this run's record of the case, where it has run."""
    prior = prior or {}
    return [
        support(base.case_id, metric, runs, passes, limit, prior.get(metric), prior.get(f"{metric} passes"), current.pass_values(metric) if current else ())
        for metric, limit in gated_metrics(tol)
        if (runs := base.runs(metric))
    ]


def supported_tolerance_note(
    base: CaseResult, passes: int, tolerance: float, prior: gate.Prior | None = None, metric: str = "energy", pass_prior: gate.Prior | None = None
) -> str | None:
    """When a baseline's own noise is wider than the tolerance: the tolerance its data support.

    Said for a baseline of 1 run too (its passes' spread then stands in for the between-run noise,
    and the note says so): that is the baseline a first --e3p-save-baseline writes, and the one
    whose noise was most often too wide to gate, without a word."""
    runs = base.runs(metric)
    if not runs:
        return None
    supported = gate.supported_tolerance(runs, passes, prior, pass_prior)
    if supported is None or supported <= tolerance:
        return None
    what = (
        f"between-run noise over {len(runs)} runs"
        if len(runs) >= 2 or prior is not None
        else "noise (from its passes: between-run noise is not measured with 1 run)"
    )
    return (
        f"{base.case_id}: its baseline's {what} is +/-{supported:.1%} at p<{gate.ALPHA:g}, wider "
        f"than the {metric} tolerance {tolerance:.0%}: a regression below about {supported:.0%} cannot be told from noise on this device "
        f"(a tolerance of {math.ceil(supported * 100):.0f}% is what the data support; reduce the noise, or save more runs)"
    )


def supported_tolerance_notes(
    base: ResultsFile, case_ids: list[str], passes: int, tol: Tolerances, prior: dict[str, gate.Prior | None] | None = None
) -> list[str]:
    """supported_tolerance_note for each listed case the baseline holds and each gated metric."""
    prior = prior or {}
    notes = []
    for cid in case_ids:
        entry = base.cases.get(cid)
        if entry is None or entry.status != Status.OK:
            continue
        for metric, limit in gated_metrics(tol):
            note = supported_tolerance_note(entry, passes, limit, prior.get(metric), metric, prior.get(f"{metric} passes"))
            if note:
                notes.append(note)
    return notes


def merge_runs(old: ResultsFile | None, new: ResultsFile, keep_runs: int) -> tuple[ResultsFile, list[str]]:
    """The baseline to write: `new`, with each case's earlier runs from `old` (newest kept, up to
    `keep_runs` in all), and the cases of `old` that this run did not run kept as they were.

    Returns the file and lines saying what was kept or dropped."""
    lines: list[str] = []
    merged = dataclasses.replace(new, cases=dict(new.cases))
    if old is None:
        return merged, lines
    why = device_incompatibility(old, new.device) or protocol_incompatibility(old.protocol, new.protocol)
    if why:
        lines.append(f"the previous baseline was not kept ({why})")
        return merged, lines
    added = 0
    for cid, case in new.cases.items():
        before = old.cases.get(cid)
        if before is None or case_incompatibility(before, case) or keep_runs <= 1:
            continue
        earlier = [*before.earlier_runs, before.own_run(old.created)][-(keep_runs - 1) :]
        merged.cases[cid] = dataclasses.replace(case, earlier_runs=earlier)
        added = max(added, len(earlier))
    kept = sorted(set(old.cases) - set(new.cases))
    for cid in kept:
        merged.cases[cid] = old.cases[cid]
    if kept:
        lines.append(f"kept from the previous baseline (not run now): {', '.join(kept)}")
    if added:
        lines.append(f"baseline holds up to {added + 1} run(s) per case (--e3p-baseline-runs {keep_runs})")
    return merged, lines


@dataclass
class Comparison:
    """A whole run against a baseline."""

    checks: dict[str, list[Check]] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)  # cases the baseline does not have
    missing: list[str] = field(default_factory=list)  # baseline cases this run did not run
    refused: dict[str, str] = field(default_factory=dict)  # case -> why it could not be compared
    # what the results files record as changed since the baseline, per case whose verdict is not unchanged
    changes: dict[str, list[str]] = field(default_factory=dict)
    supported: list[str] = field(default_factory=list)  # baselines that cannot meet their tolerance (said first)
    support: list[Support] = field(default_factory=list)  # what the data support, per compared case

    @property
    def regressions(self) -> dict[str, list[Check]]:
        return {cid: [c for c in cs if c.verdict == Verdict.REGRESSED] for cid, cs in self.checks.items() if any(c.verdict == Verdict.REGRESSED for c in cs)}

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.refused)


def compare_files(base: ResultsFile, cur: ResultsFile, tol: Tolerances) -> Comparison:
    """Every case of `cur` against `base` (the `compare` command and the end-of-run table)."""
    why = device_incompatibility(base, cur.device)
    if why:
        raise IncompatibleBaseline(why)
    from .changes import Recorded, changes
    from .verdict import Circumstances, final_verdict

    out = Comparison()
    prior = priors(base)
    passes = int(cur.protocol.get("passes") or 1)
    ids = [cid for cid, case in sorted(cur.cases.items()) if case.status == Status.OK and cid in base.cases]
    out.supported = supported_tolerance_notes(base, ids, passes, tol, prior)
    for cid, case in sorted(cur.cases.items()):
        if case.status != Status.OK:
            continue
        if cid not in base.cases:
            out.new.append(cid)
            continue
        try:
            checks = compare_case(base.cases[cid], case, tol, prior)
        except IncompatibleBaseline as exc:
            out.refused[cid] = str(exc)
            continue
        final = final_verdict(checks, Circumstances.of(case, base.cases[cid]))
        out.checks[cid] = final.checks
        if final.verdict not in (Verdict.UNCHANGED, Verdict.NOT_COMPARED):
            out.changes[cid] = changes(
                Recorded(base.cases[cid], base.device, base.environment, base.protocol), Recorded(case, cur.device, cur.environment, cur.protocol)
            )
        out.support += supports(base.cases[cid], case.passes or passes, tol, prior, case)
    out.missing = sorted(set(base.cases) - set(cur.cases))
    return out


def unfit_to_gate(baseline: ResultsFile, case_ids: list[str], passes: int, tol: Tolerances) -> list[Support]:
    """The cases of this run (`case_ids`) that `baseline` (the file about to be written) could not
    gate at their tolerance: what it would support is wider. Checked before a baseline is saved."""
    prior = priors(baseline)
    out = []
    for cid in case_ids:
        entry = baseline.cases.get(cid)
        if entry is not None and entry.status == Status.OK:
            out += [s for s in supports(entry, passes, tol, prior) if s.noise is not None and not s.meets_tolerance]
    return out


def unfit_message(unfit: list[Support], forced: bool) -> str:
    """One plain message for a baseline that cannot gate its tolerance: the cases, what each would
    support, how to get a quiet run, and whether it was written anyway."""
    cases = "; ".join(f"{s.case_id} {s.metric} +/-{s.noise:.1%} (tolerance {s.tolerance:.0%})" for s in unfit if s.noise is not None)
    quiet = (
        "for a quiet run: nothing else running on the machine, more passes (--e3p-passes 5), a fixed thread count "
        "(--e3p-threads), --e3p-malloc fixed, or a wider tolerance that the data support (--e3p-tolerance)"
    )
    if forced:
        return f"baseline written although too noisy to gate its tolerance (--e3p-save-noisy-baseline): {cases}; {quiet}"
    return (
        f"baseline NOT written: this run is too noisy to gate its tolerance; the baseline would support only {cases}; "
        f"{quiet}; or keep it anyway with --e3p-save-noisy-baseline"
    )
