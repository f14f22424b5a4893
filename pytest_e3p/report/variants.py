"""The variants table and plot: each optimised form of a model against its fp32 eager case
on the same device, dataset, batch and resolution.

Per variant: latency and energy per image, their change against fp32 (%), the top-1 change in points
where both top-1 were measured on a labelled dataset (otherwise only the agreement with fp32 on the
same images, and the table says so), the agreement itself, parameters and MACs where the variant
changes them, and SAM. An energy change is shown only between figures of the same kind: an estimate
is never set against a measurement. A variant outside its agreement bound is listed as broken, never
as a saving.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from tabulate import tabulate

from ..hardware.sensors.base import EnergyKind
from ..storage.results import CaseResult, Status, Top1Source
from .figures import pyplot, save_png

FP32 = "fp32"


def _group_key(c: CaseResult) -> tuple:
    return (c.model, c.device, c.dataset, c.batch_size, tuple(c.image_size), c.energy_kind)


def variant_groups(cases: Iterable[CaseResult]) -> dict[tuple, tuple[CaseResult | None, list[CaseResult]]]:
    """(fp32 case or None, the other variants) per model x device x dataset x batch x size, for the
    groups that hold at least one non-fp32 variant."""
    groups: dict[tuple, list[CaseResult]] = defaultdict(list)
    for c in cases:
        groups[_group_key(c)].append(c)
    out = {}
    for key, group in groups.items():
        others = [c for c in group if c.variant != FP32]
        if others:
            out[key] = (next((c for c in group if c.variant == FP32), None), others)
    return out


def _change(value: float | None, ref: float | None) -> float | None:
    return None if value is None or not ref else value / ref - 1.0


def energy_saved_and_top1_lost(c: CaseResult, ref: CaseResult | None) -> tuple[float | None, float | None, str]:
    """(energy saved %, accuracy lost in points, what the accuracy axis is): top-1 points where both
    are measured, else the share of images whose top-1 differs from fp32's."""
    saved = None
    if ref is not None and ref.status == Status.OK and c.status == Status.OK and c.energy_kind == ref.energy_kind:
        change = _change(c.energy_mj_per_image, ref.energy_mj_per_image)
        saved = None if change is None else -100.0 * change
    if ref is not None and c.top1_source == Top1Source.MEASURED and ref.top1_source == Top1Source.MEASURED and c.top1 is not None and ref.top1 is not None:
        return saved, ref.top1 - c.top1, "top-1 lost (points)"
    if c.agreement_top1_pct is not None:
        return saved, 100.0 - c.agreement_top1_pct, "top-1 disagreement with fp32 (%)"
    return saved, None, ""


def variants_rows(ref: CaseResult | None, others: list[CaseResult]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "variant",
        "latency (ms/img)",
        "vs fp32",
        "energy (mJ/img)",
        "vs fp32",
        "top-1 vs fp32 (points)",
        "agreement",
        "params (M)",
        "GMACs",
        "SAM",
        "prepare (s)",
    ]
    rows = []
    for c in [*([ref] if ref else []), *others]:
        est = " (est.)" if c.energy_kind == EnergyKind.ESTIMATE else ""
        broken = c.status != Status.OK and c.reason.startswith("broken variant")
        same_kind = ref is not None and ref.energy_kind == c.energy_kind
        lat = _change(c.latency_ms_per_image, ref.latency_ms_per_image if ref else None)
        energy = _change(c.energy_mj_per_image, ref.energy_mj_per_image if ref and same_kind else None)
        top1 = (
            f"{c.top1 - ref.top1:+.2f}"
            if ref and c.top1_source == Top1Source.MEASURED and ref.top1_source == Top1Source.MEASURED and c.top1 is not None and ref.top1 is not None
            else "-"
        )
        agreement = (
            "reference" if c.variant == FP32 else "-" if c.agreement_top1_pct is None else f"{c.agreement_top1_pct:.0f} %, err {c.max_rel_logit_error:.2g}"
        )
        rows.append(
            [
                c.variant + (" (BROKEN: outside its bound)" if broken else "" if c.status == Status.OK else f" ({c.status})"),
                "-" if c.latency_ms_per_image is None else f"{c.latency_ms_per_image:.3g}",
                "-" if lat is None or c is ref else f"{lat:+.1%}",
                "-" if c.energy_mj_per_image is None else f"{c.energy_mj_per_image:.4g}{est}",
                "-" if energy is None or c is ref else f"{energy:+.1%}",
                top1 if c is not ref else "-",
                agreement,
                "-" if c.params_m is None else f"{c.params_m:.2f}",
                "-" if c.gmacs is None else f"{c.gmacs:.3f}",
                "-" if c.sam is None else f"{c.sam:.3f}",
                "-" if c.prepare_s is None else f"{c.prepare_s:.1f}",
            ]
        )
    return headers, rows


def variants_tables(cases: Iterable[CaseResult], fmt: str = "simple") -> list[tuple[str, str, list[str]]]:
    """(title, table, notes) per model x device x dataset x batch x size with variants."""
    out = []
    for (model, device, dataset, batch, size, _kind), (ref, others) in sorted(variant_groups(cases).items(), key=lambda kv: str(kv[0])):
        headers, rows = variants_rows(ref, others)
        notes = []
        if ref is None:
            notes.append("no fp32 case of this model in the run: changes against fp32 are not shown (add fp32 to --e3p-variants)")
        if not any(c.top1_source == Top1Source.MEASURED for c in others):
            notes.append("top-1 not measured (no labelled dataset, or random weights): the agreement with fp32 on the same images is the accuracy check")
        notes += [f"{c.variant}: {c.reason}" for c in others if c.status != Status.OK and c.reason]
        title = f"variants of {model} on {device} / {dataset}, batch {batch}, {size[-1]} px"
        out.append((title, tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True), notes))
    return out


def plot_variants(cases: list[CaseResult], path: Path) -> bool:
    """Energy saved against accuracy lost, one point per variant, one panel per model; False when
    matplotlib is missing or there is nothing to draw."""
    points: dict[str, list[tuple[str, float, float, str]]] = defaultdict(list)
    for (model, *_), (ref, others) in variant_groups(cases).items():
        for c in others:
            saved, lost, axis = energy_saved_and_top1_lost(c, ref)
            if saved is not None and lost is not None and c.status == Status.OK:
                points[model].append((c.variant, lost, saved, axis))
    if not points:
        return False
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.5), dpi=110, squeeze=False)
    for ax, (model, pts) in zip(axes[0], sorted(points.items())):
        ax.scatter([p[1] for p in pts], [p[2] for p in pts], color="tab:blue", zorder=3)
        for name, x, y, _ in pts:
            ax.annotate(name, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.axhline(0, color="tab:gray", lw=0.8)
        ax.axvline(0, color="tab:gray", lw=0.8)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel(pts[0][3])
        ax.set_ylabel("energy saved vs fp32 (%)" + (" (ESTIMATED energy)" if any(c.energy_kind == EnergyKind.ESTIMATE for c in cases) else ""))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    return True
