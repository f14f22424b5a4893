"""The answer in words: which model, in which form, is the most energy-efficient on this device.

The tables are precise line by line, but the question a user comes with is one sentence. Per device x
dataset (and energy source: an estimate is never set against a measurement) a few plain lines say:

- the best by SAM and the lowest energy per image, named by labels that tell forms apart;
- the models tied with it within the noise: their energy intervals overlap, each interval the
  energy x/÷ exp(2 sd of the log pass values), as the report's error bars (report.markdown's
  energy_error_bars) and the gate's log-ratio noise read them; SAM's interval is SAM at both ends;
- the most accurate model within an energy budget, when one is set;
- what the run cannot decide (unstable cases, one pass, estimated energy, published accuracy,
  skipped cases) and what would decide it.

The interval helpers live here because markdown.py's are private to it (and not this module's to
change): one implementation, used by the answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..hardware.sensors.base import EnergyKind
from ..metrics import sam
from ..storage.results import CaseResult, Status, Top1Source
from ..text import markdown_cell
from .figures import log_interval
from .labels import FP32, case_labels, change_within_noise
from .terminal import ranked_groups


@dataclass(frozen=True)
class Interval:
    """A figure and the band its pass values support (low <= value <= high)."""

    value: float
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def energy_interval(c: CaseResult) -> Interval | None:
    """The energy per image x/÷ exp(2 sd of the logs of the pass values) (multiplicative: energy
    spreads in ratios, and a band never reaches zero); the recorded spread stands in where the
    pass values are missing; the point alone with neither. None without an energy figure."""
    e = c.energy_mj_per_image
    if e is None or e <= 0:
        return None
    low, high = log_interval(e, c.energy_mj_per_image_passes)  # the report's error bars, the same band
    if low == high and c.energy_spread:  # fewer than two pass values: the recorded spread stands in
        factor = math.exp(2 * c.energy_spread)
        low, high = e / factor, e * factor
    return Interval(e, low, high)


def sam_interval(c: CaseResult) -> Interval | None:
    """SAM at the two ends of the energy interval (SAM falls as energy rises); an end where SAM is
    undefined (energy <= 1 mJ) is unbounded. None without a SAM."""
    energy = energy_interval(c)
    if c.sam is None or c.top1 is None or energy is None:
        return None
    frac = min(max(c.top1 / 100.0, 0.0), 1.0)
    at_high = sam(frac, energy.high, c.sam_alpha)
    at_low = sam(frac, energy.low, c.sam_alpha)
    return Interval(c.sam, c.sam if at_high is None else min(at_high, c.sam), math.inf if at_low is None else max(at_low, c.sam))


def _ran(c: CaseResult) -> bool:
    """Measured with an energy figure that can be ranked: the edgevit protocol's net energy (the
    background subtracted) can come out at or below zero on a flat rail, which no interval holds."""
    return c.status == Status.OK and energy_interval(c) is not None


NAMES_SHOWN = 6  # a line that names 12 of 13 models is read as a table, not an answer


def _names(labels: dict[str, str], cases: Sequence[CaseResult]) -> str:
    names = [labels[c.case_id] for c in cases]
    more = len(names) - NAMES_SHOWN
    return ", ".join(names[:NAMES_SHOWN]) + (f" and {more} more (the table lists them)" if more > 0 else "")


def _fp32_ties(winner: CaseResult, cases: Sequence[CaseResult]) -> CaseResult | None:
    """The winner's fp32 case when the winner is a variant whose energy change against it is
    within the noise of the passes they were measured in together (vs_reference)."""
    vs = winner.vs_reference
    if winner.variant == FP32 or vs is None or change_within_noise(vs, "energy") is not True:
        return None
    return next((c for c in cases if c.case_id == vs.reference_case_id), None)


def _group_lines(device: str, dataset: str, kind: str, source: str, cases: list[CaseResult], budget_mj: float | None) -> list[str]:
    labels = case_labels(cases)
    estimate = kind == EnergyKind.ESTIMATE
    where = f"On {device} / {dataset}" + (" (ESTIMATED energy, not compared with measured figures)" if estimate else "")
    ran = [c for c in cases if _ran(c)]
    lines: list[str] = []
    if not ran:
        ok = [c for c in cases if c.status == Status.OK]
        if ok:
            fastest = min((c for c in ok if c.latency_ms_per_image is not None), key=lambda c: c.latency_ms_per_image or 0.0, default=None)
            lines.append(
                f"{where}: no energy figure (energy {kind}): the run cannot say which model uses the least energy"
                + (f"; the fastest is {labels[fastest.case_id]} ({fastest.latency_ms_per_image:.3g} ms/img)" if fastest else "")
                + ". A readable power sensor (RAPL, NVML, a Jetson's INA3221) would decide it."
            )
        else:
            lines.append(f"{where}: no case was measured.")
        return lines + _not_run(cases, labels)

    # lowest energy per image, and the cases its interval does not separate from it
    by_energy = min(ran, key=lambda c: c.energy_mj_per_image or 0.0)
    e_best = energy_interval(by_energy)
    assert e_best is not None  # _ran: it has an energy figure
    e_tied = [c for c in ran if c is not by_energy and (i := energy_interval(c)) is not None and i.overlaps(e_best)]
    with_sam = [c for c in ran if c.sam is not None]
    lead = f"{where}: "
    if with_sam:
        by_sam = max(with_sam, key=lambda c: c.sam or 0.0)
        s_best = sam_interval(by_sam)
        s_tied = [c for c in with_sam if c is not by_sam and (i := sam_interval(c)) is not None and s_best is not None and i.overlaps(s_best)]
        lines.append(
            f"{lead}the most energy-efficient by SAM is {labels[by_sam.case_id]} (SAM {by_sam.sam:.3f}, top-1 {by_sam.top1:.1f} %"
            f"{' published' if by_sam.top1_source == Top1Source.REFERENCE else ''}, {by_sam.energy_mj_per_image:.4g} mJ/img"
            f"{' estimated' if estimate else ''}{', unstable' if by_sam.unstable else ''})" + _ties(labels, s_tied, len(with_sam) - 1) + "."
        )
        lead = "  "
    lines.append(
        f"{lead}the least energy per image is {labels[by_energy.case_id]} ({by_energy.energy_mj_per_image:.4g} mJ/img{' estimated' if estimate else ''}{', unstable' if by_energy.unstable else ''})"
        + _ties(labels, e_tied, len(ran) - 1)
        + "."
    )
    winners = [by_sam] if with_sam and by_sam is not by_energy else []
    for winner in [*winners, by_energy]:
        fp32 = _fp32_ties(winner, cases)
        if fp32 is not None:
            lines.append(
                f"  {labels[winner.case_id]}'s energy against {labels[fp32.case_id]} measured in the same passes is within the noise (~): no saving of the {winner.variant} form is claimed."
            )
    if budget_mj is not None:
        lines.append("  " + _budget_line(ran, labels, budget_mj, estimate))
    return lines + _undecided(cases, ran, labels, estimate, kind) + _not_run(cases, labels)


def _ties(labels: dict[str, str], tied: list[CaseResult], others: int) -> str:
    """The cases the winner's noise band does not separate from it; all of them: no winner."""
    if not tied:
        return "; no other case is within its noise"
    if len(tied) == others:
        return f"; but every other case is within its noise ({_names(labels, tied)}): this run names no winner"
    return f"; tied with it within noise: {_names(labels, tied)}"


def _budget_line(ran: list[CaseResult], labels: dict[str, str], budget_mj: float, estimate: bool) -> str:
    est = " (estimated energy)" if estimate else ""
    within = [c for c in ran if (c.energy_mj_per_image or 0.0) <= budget_mj]
    if not within:
        least = min(ran, key=lambda c: c.energy_mj_per_image or 0.0)
        return f"within {budget_mj:g} mJ/img{est}: no case fits; the least is {labels[least.case_id]} at {least.energy_mj_per_image:.4g} mJ/img."
    with_top1 = [c for c in within if c.top1 is not None]
    if not with_top1:
        return f"within {budget_mj:g} mJ/img{est}: {_names(labels, within)} fit, but no top-1 was measured or published for them: a labelled dataset would decide which is most accurate."
    best = max(with_top1, key=lambda c: c.top1 or 0.0)
    band = energy_interval(best)
    edge = " (its noise band reaches above the budget)" if band is not None and band.high > budget_mj else ""
    src = " published" if best.top1_source == Top1Source.REFERENCE else ""
    return f"within {budget_mj:g} mJ/img{est} the most accurate is {labels[best.case_id]} (top-1 {best.top1:.1f} %{src}, {best.energy_mj_per_image:.4g} mJ/img){edge}."


def _undecided(cases: list[CaseResult], ran: list[CaseResult], labels: dict[str, str], estimate: bool, kind: str) -> list[str]:
    """What this run cannot decide, each with what would decide it."""
    out = []
    if estimate:
        out.append(
            "  Not decided: the energy is an ESTIMATE (no power sensor readable), so this order rests on a model of power; a power sensor (RAPL, NVML, a Jetson's INA3221) would decide it."
        )
    unstable = [c for c in ran if c.unstable]
    if unstable:
        out.append(
            f"  Not decided: {len(unstable)} of {len(ran)} case(s) are unstable ({_names(labels, unstable)}): their passes spread wider than the energy tolerance; "
            "more passes (--e3p-passes) on a quiet machine would decide their order."
        )
    single = [c for c in ran if len(c.energy_mj_per_image_passes) < 2 and not c.energy_spread]
    if single:
        out.append(f"  Not decided: {_names(labels, single)} ran 1 pass, which measures no noise; --e3p-passes 3 or more would.")
    reference = [c for c in ran if c.top1_source == Top1Source.REFERENCE]
    if reference:
        out.append(
            f"  top-1 of {len(reference)} case(s) is the published accuracy of the weights, not measured here; a labelled dataset (--e3p-dataset imagenet or a folder) would measure it."
        )
    no_top1 = [c for c in ran if c.top1 is None]
    if no_top1:
        out.append(
            f"  No top-1 for {_names(labels, no_top1)} (random weights or no labels): SAM cannot rank them; pretrained weights and a labelled dataset would."
        )
    return out


def _not_run(cases: list[CaseResult], labels: dict[str, str]) -> list[str]:
    """Every requested case is accounted for: those that did not run, with why."""
    return [f"  Not in this answer: {labels[c.case_id]} ({c.status}: {c.reason or 'no reason recorded'})." for c in cases if c.status != Status.OK]


def answer_lines(cases: Sequence[CaseResult], budget_mj: float | None = None) -> list[str]:
    """The plain-language answer, per device x dataset (x energy source), in plain lines."""
    out: list[str] = []
    # the tables' groups: an estimate apart from a measurement, a case that did not run beside its device's
    for (device, dataset, key), group in ranked_groups(cases).items():
        kind, _, source = key.partition("/")
        out += _group_lines(device, dataset, kind, source, group, budget_mj)
    return out


def answer_markdown(cases: Sequence[CaseResult], budget_mj: float | None = None) -> list[str]:
    """The same answer as Markdown lines: each group's lines a list item, continuations nested,
    every recorded string escaped for Markdown (`text.markdown_cell`)."""
    out = []
    for line in answer_lines(cases, budget_mj):
        nested = line.startswith("  ")
        out.append(("  - " if nested else "- ") + markdown_cell(line.strip()))
    return out
