"""The EdgeViT paper's Table 3 and Fig. 5 for a run under the edgevit protocol (the EdgeViT paper, Sec. 4).

Table 3's columns per model: top-1, latency, energy and power per inference as mean +/- sd, and the
efficiency top-1 (%) / energy (mJ). Models are compared by Pareto optimality, as the paper does, not
by efficiency alone (less accurate models tend to be more efficient): a model is marked E when no
other model of the table is at least as accurate with no more energy per inference (one of the two
strictly; metrics.pareto_front), and L the same for latency. Beside each measured row are the paper's
own figures for the timm model standing for it, and the paper's Pareto marks over the same models, so
a user sees whether their device agrees with the Snapdragon 888 in shape (the absolute numbers of two
devices are not comparable). The paper's models timm lacks are listed as not available, with why.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..hardware.sensors.base import EnergyKind
from ..measure.protocols import EDGEVIT
from ..metrics import pareto_front
from ..models.zoo import EDGEVIT as EDGEVIT_MODELS
from ..models.zoo import EDGEVIT_TABLE3_UNAVAILABLE, edgevit_paper_row
from ..storage.results import CaseResult, Status, Top1Source
from .figures import pyplot, save_png
from .labels import case_axes
from .terminal import ranked_groups

ENERGY, LATENCY = "E", "L"


def _usable(c: CaseResult) -> bool:
    return c.status == Status.OK and c.top1 is not None and c.energy_mj_per_image is not None and c.latency_ms_per_image is not None


def pareto_marks(points: dict[str, tuple[float, float, float]]) -> dict[str, str]:
    """{key: "E L" / "E" / "L" / ""} from {key: (top-1 %, energy mJ, latency ms)}."""
    keys = list(points)
    on_energy = {keys[i] for i in pareto_front([(points[k][0], points[k][1]) for k in keys], [True, False])}
    on_latency = {keys[i] for i in pareto_front([(points[k][0], points[k][2]) for k in keys], [True, False])}
    return {k: " ".join(m for m, front in ((ENERGY, on_energy), (LATENCY, on_latency)) if k in front) for k in keys}


def measured_marks(cases: list[CaseResult]) -> dict[str, str]:
    """Pareto marks of the measured cases (those with top-1, energy and latency), by case id."""
    usable = [c for c in cases if _usable(c)]
    return pareto_marks({c.case_id: (c.top1, c.energy_mj_per_image, c.latency_ms_per_image) for c in usable})  # type: ignore[misc]  # _usable checked


def paper_marks(cases: list[CaseResult]) -> dict[str, str]:
    """The paper's Pareto marks over the paper's rows of the same models, by case id."""
    rows = {c.case_id: edgevit_paper_row(c.model) for c in cases if _usable(c)}
    return pareto_marks({cid: (r.top1, r.energy_mj, r.latency_ms) for cid, r in rows.items() if r is not None})


def _pm(mean: float | None, sd: float | None, fmt: str, estimate: bool = False) -> str:
    if mean is None:
        return "unavailable"
    text = format(mean, fmt) + (f" +/- {sd:{fmt}}" if sd is not None else " (window avg)")
    return f"~{text} (est.)" if estimate else text


def table3_rows(cases: list[CaseResult]) -> tuple[list[str], list[list[str]]]:
    """Table 3 of the cases of one device / dataset / energy source, in the order given."""
    marks, paper = measured_marks(cases), paper_marks(cases)
    headers = [
        "model",
        "top-1 (%)",
        "top-1 from",
        "latency (ms)",
        "energy (mJ)",
        "power (W)",
        "efficiency (%/mJ)",
        "Pareto",
        "paper: latency (ms)",
        "paper: energy (mJ)",
        "paper: %/mJ",
        "paper: Pareto",
    ]
    rows = []
    axes_of = case_axes(cases)
    for c in cases:
        est = c.energy_kind == EnergyKind.ESTIMATE
        ref = edgevit_paper_row(c.model)
        name = " ".join([c.model, *axes_of[c.case_id]]) + (" (EdgeViT)" if c.model.partition(".")[0] in EDGEVIT_MODELS else "")
        rows.append(
            [
                name if c.status == Status.OK else f"{name} ({c.status})",
                "-" if c.top1 is None else f"{c.top1:.1f}",
                c.top1_source,
                _pm(c.latency_ms_per_image, c.latency_ms_per_image_sd, ".3g"),
                _pm(c.energy_mj_per_image, c.energy_mj_per_image_sd if c.per_inference else None, ".4g", est),
                _pm(c.power_w, c.power_w_sd if c.per_inference else None, ".3g", est),
                "-" if c.efficiency_pct_per_mj is None else f"{c.efficiency_pct_per_mj:.3g}" + (" (est.)" if est else ""),
                marks.get(c.case_id, "-") or "",
                "-" if ref is None else f"{ref.latency_ms:g} +/- {ref.latency_ms_sd:g}",
                "-" if ref is None else f"{ref.energy_mj:g} +/- {ref.energy_mj_sd:g}",
                "-" if ref is None else f"{ref.efficiency_pct_per_mj:g}",
                paper.get(c.case_id, "-") or "",
            ]
        )
    return headers, rows


def edgevit_groups(cases: Iterable[CaseResult]) -> dict[tuple[str, str, str], list[CaseResult]]:
    """The edgevit-protocol cases, grouped as the rankings are (device, dataset, energy source), in
    the order measured (for the edgevit-table3 set, the paper's Table 3 order)."""
    cases = [c for c in cases if c.protocol == EDGEVIT]
    order = {c.case_id: i for i, c in enumerate(cases)}
    return {k: sorted(v, key=lambda c: order[c.case_id]) for k, v in ranked_groups(cases).items()}


def footnotes(cases: list[CaseResult]) -> list[str]:
    notes = [
        "Table 3 (EdgeViT protocol): batch 1, fp32; per inference, the median of the passes' means +/- the sd over every inference of every pass; energy and power net of the "
        "idle background measured before each pass; efficiency = top-1 / energy (the paper's %/mJ); Pareto E: no other model is at least as "
        "accurate with less energy, L: the same with latency; paper: Pan et al. 2022, Table 3 (Snapdragon 888, Monsoon monitor)",
    ]
    if any(c.energy_kind == EnergyKind.ESTIMATE for c in cases):
        notes.append("~ / est.: ESTIMATED energy (no power sensor): its Pareto marks and efficiency rest on an estimate, not a measurement")
    if any(c.top1_source == Top1Source.REFERENCE for c in cases):
        notes.append("top-1 'reference': published accuracy, not measured in this run: efficiency and Pareto marks use it")
    notes += [f"{c.model}: {c.resolution_note}" for c in cases if c.resolution_note]
    return notes


def protocol_conditions(protocol: dict[str, Any]) -> str:
    """How a run measured, in words, from its results file's protocol record: the edgevit protocol's
    own steps (background, warm-up, N timed inferences of one image), not the e3p rounds it has none of."""
    p = protocol
    passes = p.get("passes", "?")
    warmup = f"{p.get('warmup_s', '?')} s warm-up"
    idle_s = p.get("idle_s")
    if p.get("protocol") == EDGEVIT:
        background = (
            "no background measured (idle 0 s): energy is not net of it"
            if idle_s == 0
            else f"background power measured idle for {idle_s if idle_s is not None else '?'} s"
        )
        return (
            f"edgevit protocol (Pan et al. 2022, Sec. 4), batch 1: per pass, {background}, {warmup}, then {p.get('inferences', '?')} timed inferences "
            f"of one image, each read at both edges; {passes} passes"
        )
    idle = "no idle power measured" if idle_s == 0 else f"idle power over {idle_s if idle_s is not None else '?'} s"
    return (
        f"e3p protocol, batch {p.get('batch_size', '?')}: {idle}, {warmup}, then {passes} passes x {p.get('rounds', '?')} rounds "
        f"of at least {p.get('min_round_s', '?')} s"
    )


def unavailable_lines() -> list[str]:
    """The paper's Table 2-3 models no timm model stands for, with the reason."""
    return [f"not available: {name}: {why}" for name, why in EDGEVIT_TABLE3_UNAVAILABLE]


def table3_tables(cases: Iterable[CaseResult], fmt: str = "simple") -> list[tuple[str, str, list[str]]]:
    """(title, table, footnotes) per device / dataset / energy source of the edgevit-protocol cases."""
    out = []
    for (device, dataset, source), group in edgevit_groups(cases).items():
        headers, rows = table3_rows(group)
        title = f"EdgeViT Table 3 on {device} / {dataset} (energy {source})"
        out.append((title, tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True), footnotes(group)))
    return out


def sd_error_bars(values: list[float | None], sds: list[float | None]) -> list[list[float]]:
    """matplotlib's [below, above] lengths of +/- 1 sd bars, the lower one cut at zero: an energy or
    a latency is never negative, and a bar to -200 ms reads as a measurement that was not made."""
    below = [0.0 if v is None or sd is None else min(sd, max(v, 0.0)) for v, sd in zip(values, sds)]
    return [below, [sd or 0.0 for sd in sds]]


def plot_fig5(cases: list[CaseResult], title: str, path: Path) -> bool:
    """The paper's Fig. 5 for the measured cases: top-1 vs latency and top-1 vs energy per inference,
    each with its Pareto front, EdgeViTs circled in amber; False when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    usable = [c for c in cases if _usable(c)]
    if not usable:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    est = " (ESTIMATED)" if any(c.energy_kind == EnergyKind.ESTIMATE for c in usable) else ""
    panels = (
        (axes[0], "latency per inference (ms)", lambda c: c.latency_ms_per_image, lambda c: c.latency_ms_per_image_sd),
        (axes[1], f"energy per inference (mJ), background subtracted{est}", lambda c: c.energy_mj_per_image, lambda c: c.energy_mj_per_image_sd),
    )
    axes_of = case_axes(usable)  # a model at two sizes is two labelled points
    for ax, label, x_of, sd_of in panels:
        xs, ys = [x_of(c) for c in usable], [c.top1 or 0.0 for c in usable]  # _usable: every top-1 is set
        edge = [c.model.partition(".")[0] in EDGEVIT_MODELS for c in usable]
        ax.errorbar(xs, ys, xerr=sd_error_bars(xs, [sd_of(c) for c in usable]), fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, zorder=3)
        ax.scatter(
            [x for x, e in zip(xs, edge) if e],
            [y for y, e in zip(ys, edge) if e],
            s=220,
            facecolors="none",
            edgecolors="#FFBF00",
            linewidths=2.5,
            zorder=4,
            label="EdgeViT",
        )
        for c, x, y in zip(usable, xs, ys):
            ax.annotate(" ".join([c.model.partition(".")[0], *axes_of[c.case_id]]), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        front = sorted((xs[i], ys[i]) for i in pareto_front(list(zip(ys, xs)), [True, False]))
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front", zorder=2)
        ax.set_xlim(left=0)  # from zero: a few percent between models must not look like a cliff
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)" + (" (REFERENCE, not measured)" if any(c.top1_source == Top1Source.REFERENCE for c in usable) else ""))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)  # where it hides no point or label
    fig.suptitle(title + " (error bars: 1 sd over the inferences, cut at 0)")
    fig.tight_layout()
    save_png(fig, path)
    return True
