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
from .labels import format_change, short_name

FP32 = "fp32"


def _group_key(c: CaseResult) -> tuple:
    return (c.model, c.device, c.dataset, c.batch_size, tuple(c.image_size), c.energy_kind)


def variant_groups(cases: Iterable[CaseResult]) -> dict[tuple, tuple[CaseResult | None, list[CaseResult]]]:
    """(fp32 case or None, the other variants) per model x device x dataset x batch x size, for the
    groups that hold at least one non-fp32 variant."""
    groups: dict[tuple, list[CaseResult]] = defaultdict(list)
    skipped: list[CaseResult] = []
    for c in cases:
        (skipped if c.status == Status.SKIPPED else groups[_group_key(c)]).append(c)
    for c in skipped:  # no energy kind of its own: it joins its model's measured group, where there is one
        key = _group_key(c)
        groups[next((k for k in groups if k[:-1] == key[:-1]), key)].append(c)
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
                _vs_fp32(c, ref, lat, "latency"),
                "-" if c.energy_mj_per_image is None else f"{c.energy_mj_per_image:.4g}{est}",
                _vs_fp32(c, ref, energy, "energy") if same_kind else "-",
                top1 if c is not ref else "-",
                agreement,
                "-" if c.params_m is None else f"{c.params_m:.2f}",
                "-" if c.gmacs is None else f"{c.gmacs:.3f}",
                "-" if c.sam is None else f"{c.sam:.3f}",
                "-" if c.prepare_s is None else f"{c.prepare_s:.1f}",
            ]
        )
    return headers, rows


def _vs_fp32(c: CaseResult, ref: CaseResult | None, change: float | None, metric: str) -> str:
    """The change against fp32: from the per-pass ratios where the run compared them within each
    pass ("~" within the noise, format_change), else the two medians' change marked "(medians)":
    measured in different passes, a drift of the machine is in it."""
    if c is ref or c.variant == FP32:
        return "-"
    if c.vs_reference is not None and getattr(c.vs_reference, f"{metric}_ratio") is not None:
        return format_change(c.vs_reference, metric)
    return "-" if change is None else f"{change:+.1%} (medians)"


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
        if any(c.vs_reference is not None for c in others):
            notes.append(
                "vs fp32: the median of the per-pass ratios [their min, max], each variant measured right after fp32 in the same pass; ~ : within the noise, no saving claimed"
            )
        title = f"variants of {model} on {device} / {dataset}, batch {batch}, {size[-1]} px"
        out.append((title, tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True), notes))
    return out


def _saved_with_interval(c: CaseResult, ref: CaseResult | None) -> tuple[float, float, float] | None:
    """(energy saved %, its low end, its high end) of a variant against fp32: from the per-pass
    ratios where the run measured both in each pass (`vs_reference`: the median ratio and the
    min-max of the pass ratios), else from the two medians with no interval claimed."""
    vs = c.vs_reference
    if vs is not None and vs.energy_ratio is not None:
        low = vs.energy_ratio_low if vs.energy_ratio_low is not None else vs.energy_ratio
        high = vs.energy_ratio_high if vs.energy_ratio_high is not None else vs.energy_ratio
        return 100.0 * (1.0 - vs.energy_ratio), 100.0 * (1.0 - high), 100.0 * (1.0 - low)
    saved, _, _ = energy_saved_and_top1_lost(c, ref)
    return None if saved is None else (saved, saved, saved)


def plot_variants(cases: list[CaseResult], path: Path) -> bool:
    """Energy saved against accuracy lost, one point per variant with the spread of its per-pass
    ratios as error bar, one panel per model x batch x size (named in its title, so variants of two
    batch sizes are never one panel); False when matplotlib is missing or there is nothing to draw."""
    from .figures import place_labels

    panels: dict[str, list[tuple[str, float, tuple[float, float, float], str]]] = defaultdict(list)
    for (_model, _device, _dataset, batch, size, _kind), (ref, others) in variant_groups(cases).items():
        title = f"{short_name(ref or others[0])}: batch {batch}, {size[-1]} px"
        for c in others:
            saved = _saved_with_interval(c, ref)
            _, lost, axis = energy_saved_and_top1_lost(c, ref)
            if saved is not None and lost is not None and c.status == Status.OK:
                within = c.vs_reference is not None and c.vs_reference.within_noise
                panels[title].append((c.variant + (" (~ within noise)" if within else ""), lost, saved, axis))
    if not panels:
        return False
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), dpi=110, squeeze=False)
    estimated = " (ESTIMATED energy)" if any(c.energy_kind == EnergyKind.ESTIMATE for c in cases) else ""
    for ax, (title, pts) in zip(axes[0], sorted(panels.items())):
        xs, ys = [p[1] for p in pts], [p[2][0] for p in pts]
        yerr = [[y - p[2][1] for y, p in zip(ys, pts)], [p[2][2] - y for y, p in zip(ys, pts)]]
        ax.errorbar(xs, ys, yerr=yerr, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, zorder=3)
        ax.axhline(0, color="tab:gray", lw=0.8)
        ax.axvline(0, color="tab:gray", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(pts[0][3])
        ax.set_ylabel(f"energy saved vs fp32 (%){estimated}\nbars: min-max of the per-pass ratios")
        ax.grid(alpha=0.3)
        # both axes hold zero (no change) and some room around the points for their names
        top = max([abs(v) for p in pts for v in p[2]] + [5.0]) * 1.3
        right = max([abs(x) for x in xs] + [1.0]) * 1.3
        ax.set_ylim(min(-0.15 * top, *(p[2][1] * 1.3 for p in pts)), top)
        ax.set_xlim(min(-0.15 * right, *(x * 1.3 for x in xs)), right)
    fig.tight_layout()
    for ax, (_, pts) in zip(axes[0], sorted(panels.items())):
        place_labels(ax, [(p[1], p[2][0], p[0]) for p in pts])
    save_png(fig, path)
    return True
