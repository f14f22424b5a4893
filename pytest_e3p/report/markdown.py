"""The Markdown report with plots: one or more results files (one per device) merged.

The answer first (answer.py: per device x dataset, which model and form is the most
energy-efficient, what ties with it and what the run cannot decide), then per dataset: stage 1
(NetScore), the cases asked for that did not run and why, per device the SAM ranking,
accuracy-vs-energy plots with the Pareto front, NetScore rank against device rank with Kendall's
tau, savings against a reference model, which model wins where, the sustained runs' plots and the
conditions. A case is named by `labels.case_labels` everywhere: model plus whatever axis (variant,
batch, size) tells it apart from the cases beside it. matplotlib is optional (`[report]`): without it
the Markdown is still written and says how to get the plots.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..config import DEFAULTS
from ..hardware.sensors.base import EnergyKind
from ..measure.sustained import plot_name
from ..metrics import kendall_tau, noise_ranks, pareto_front, ranks, sam
from ..storage.results import CaseResult, ResultsFile, Status, Top1Source, write_atomic
from ..text import markdown_cell as _md
from ..text import slug as _slug
from .answer import answer_markdown
from .attribution import markdown_lines as attribution_markdown
from .figures import log_interval, place_labels, pyplot, save_png
from .footprint import footprint_markdown
from .labels import case_labels
from .sections import Section, SectionKind, by_kind, case_sections
from .table3 import EDGEVIT, plot_fig5, protocol_conditions
from .terminal import ranked_groups
from .variants import plot_variants
from .verdicts import markdown_section as verdicts_section


class ReportError(Exception):
    pass


def short_name(c: CaseResult) -> str:
    """The model as in the test id: the bare arch where the tag is timm's default, arch.tag otherwise
    (two tags of one arch, like the TinyViTs and their distilled versions, stay apart)."""
    suffix = f"-{c.device}-{c.dataset}"
    return c.case_id[: -len(suffix)] if c.case_id.endswith(suffix) else c.model


def accuracy_energy_figure(cases: list[CaseResult], front: list[int], title: str, labels: dict[str, str]) -> tuple[Any, list[Any], list[str]] | None:
    """The top-1 vs energy plot of usable cases: (figure, its point labels, the key of the points
    numbered for want of room), or None without matplotlib. Energy from zero, with its error bars
    from the log pass values (never below zero); every point named by its label."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    xs = [_energy(c) for c in cases]
    ys = [_top1(c) for c in cases]
    bars = [energy_error_bars(c) for c in cases]
    xerr = [[x - lo for x, (lo, _) in zip(xs, bars)], [hi - x for x, (_, hi) in zip(xs, bars)]]
    ax.errorbar(xs, ys, xerr=xerr, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, zorder=3)
    pts = sorted((xs[i], ys[i]) for i in front)
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="tab:red", label="Pareto front", zorder=2)
        ax.legend(loc="lower right", fontsize=8)
    est = " (ESTIMATED energy)" if any(c.energy_kind == EnergyKind.ESTIMATE for c in cases) else ""
    ax.set_xlabel(f"energy per image (mJ){est}; error bars x/\u00f7 exp(2 sd of the log pass values)")
    ref = " (REFERENCE, not measured)" if any(c.top1_source == Top1Source.REFERENCE for c in cases) else ""
    ax.set_ylabel(f"top-1 accuracy (%){ref}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # energy from zero: the distance between two points reads as their ratio, not as a cliff
    ax.set_xlim(0, max(hi for _, hi in bars) * 1.25)
    # top-1 spans at least 4 points around its values: 0.1 point is not drawn as the whole height
    lo_y, hi_y = min(ys), max(ys)
    pad = max(2.0 - (hi_y - lo_y) / 2, 0.0) + 0.12 * (hi_y - lo_y) + 0.5
    ax.set_ylim(lo_y - pad, hi_y + pad)
    fig.tight_layout()  # before the labels: their offsets hold only for a final layout
    order = sorted(range(len(cases)), key=lambda i: (xs[i], ys[i]))
    texts, key = place_labels(ax, [(xs[i], ys[i], labels.get(cases[i].case_id, short_name(cases[i]))) for i in order])
    return fig, texts, key


def _plot(cases: list[CaseResult], front: list[int], title: str, path: Path, labels: dict[str, str]) -> list[str] | None:
    """Write the top-1 vs energy plot; the key of its numbered points, or None without matplotlib."""
    drawn = accuracy_energy_figure(cases, front, title, labels)
    if drawn is None:
        return None
    save_png(drawn[0], path)
    return drawn[2]


def energy_error_bars(c: CaseResult) -> tuple[float, float]:
    """The (low, high) ends of a case's energy error bar: its energy x/÷ exp(2 sd of the logs of its
    pass values). Multiplicative like the gate's noise (energy spreads in ratios, not in mJ), so a
    noisy case's bar never reaches zero, as 2 sd of the linear values did. Fewer than two pass
    values: no spread is claimed, the bar is the point."""
    return log_interval(_energy(c), c.energy_mj_per_image_passes)


def latency_error_bars(c: CaseResult) -> tuple[float, float]:
    """The latency error bar, like the energy's (x/÷ exp(2 sd of the log pass values))."""
    assert c.latency_ms_per_image is not None
    return log_interval(c.latency_ms_per_image, c.latency_ms_per_image_passes)


def _escaped(c: CaseResult) -> CaseResult:
    """The case with every recorded string made safe for a Markdown table cell (`markdown_cell`),
    for the tables other modules render from it; plots get the raw case (text there is not markup)."""
    strings: dict[str, Any] = {f.name: _md(getattr(c, f.name)) for f in dataclasses.fields(c) if isinstance(getattr(c, f.name), str)}
    return dataclasses.replace(c, **strings)


def _usable(c: CaseResult) -> bool:
    return c.status == Status.OK and c.energy_mj_per_image is not None and c.top1 is not None


def _energy(c: CaseResult) -> float:
    """Energy per image of a case the report ranks (_usable: it has one)."""
    assert c.energy_mj_per_image is not None
    return c.energy_mj_per_image


def _top1(c: CaseResult) -> float:
    """Top-1 of a case the report ranks (_usable: it has one)."""
    assert c.top1 is not None
    return c.top1


def write_report(files: list[ResultsFile], out_dir: str | Path, reference_model: str = DEFAULTS["reference_model"], budget_mj: float | None = None) -> Path:
    """Write out_dir/report.md (and PNG plots where matplotlib is installed); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = [c for f in files for c in f.cases.values()]
    if not cases:
        raise ReportError("the results files hold no cases: nothing to report")
    by_dataset: dict[str, list[CaseResult]] = defaultdict(list)
    for c in cases:
        by_dataset[c.dataset].append(c)
    table_set = any(f.protocol.get("model_set") == "edgevit-table3" for f in files)
    # the answer heads the report (and so the CI job summary, which is this file)
    lines = ["# E3P-ViT energy-efficiency report", "", *answer_markdown(cases, budget_mj), "", *verdicts_section(cases, _md)]
    plots_missing = False
    for dataset, dcases in sorted(by_dataset.items()):
        lines += [f"## Dataset: {_md(dataset)}", ""]
        lines += _stage1_section(dcases, files)
        ran = [c for c in dcases if c.status != Status.SKIPPED]
        lines += _not_run_section([c for c in dcases if c.status == Status.SKIPPED], case_labels(dcases))
        winners = {}
        for (device, _, source), group in ranked_groups(ran).items():
            section = _device_section(group, device, dataset, source, out, reference_model, table_set)
            lines += section.lines
            plots_missing |= section.plot_missing
            if section.winner is not None:
                winners[device] = section.winner
        lines += _across_devices(winners, case_labels(list(winners.values())))
    lines += footprint_markdown(cases)
    lines += _sustained_section(files, out)
    lines += _conditions(files, cases)
    if plots_missing:
        lines += ["", "_Plots were not drawn: matplotlib is not installed. `pip install 'pytest-e3p[report]'` adds them._"]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _not_run_section(skipped: list[CaseResult], labels: dict[str, str]) -> list[str]:
    """The cases the run asked for and did not run, with why: a skipped case is accounted for, not
    dropped (it has no figure to rank)."""
    if not skipped:
        return []
    rows = [[_md(labels.get(c.case_id, short_name(c))), _md(c.device), _md(c.variant), str(c.status), _md(c.reason or "no reason recorded")] for c in skipped]
    return [
        f"### Asked for, not run ({len(skipped)})",
        "",
        tabulate(rows, headers=["case", "device", "variant", "status", "reason"], tablefmt="github", disable_numparse=True),
        "",
    ]


def sustained_plot_name(c: CaseResult) -> str:
    """The file name the session gives a case's sustained-run plot (measure.sustained.plot_name)."""
    return plot_name(c.case_id)


def _sustained_section(files: list[ResultsFile], out: Path) -> list[str]:
    """A link to each sustained run's plot (power, temperature, clock, latency over time): the run
    writes it into its report folder, or beside its results file without one."""
    lines = []
    for f in files:
        for c in f.cases.values():
            if c.sustained is None:
                continue
            name = sustained_plot_name(c)
            beside = Path(f.source).parent / name if f.source else None
            if (out / name).is_file():
                where = f"![Sustained run of {_md(c.case_id)}]({name})"
            elif beside is not None and beside.is_file():
                rel = Path(os.path.relpath(beside, out)).as_posix()
                where = f"![Sustained run of {_md(c.case_id)}]({_md(rel)})"
            else:
                where = f"_the plot {_md(name)} is not in this folder: the run writes it into its --e3p-report folder, or beside its results file_"
            lines += [f"- **{_md(c.case_id)}**: {where}"]
    return ["## Sustained runs", "", *lines, ""] if lines else []


@dataclass
class _DeviceSection:
    lines: list[str]
    winner: CaseResult | None  # the best SAM (or lowest energy) of the group's usable cases
    plot_missing: bool  # the accuracy-vs-energy plot could not be drawn (no matplotlib)


def _device_section(group: list[CaseResult], device: str, dataset: str, source: str, out: Path, reference_model: str, table_set: bool) -> _DeviceSection:
    """One device x dataset x energy source: the report sections of its cases, laid out between
    the plots, the Pareto front, theory against device and the savings."""
    parts = by_kind(case_sections([_escaped(c) for c in group], fmt="github", table3_set=table_set))
    lines = [f"### {_md(device)}: stage 2 ranking by SAM (energy {_md(source)})", ""]
    lines += [s.table for s in parts[SectionKind.RANKING]] + [""]
    lines += [f"- {note}" for s in parts[SectionKind.FOOTNOTES] for note in s.notes] + [""]
    for s in parts[SectionKind.RAILS] + parts[SectionKind.EVAL_PASS] + parts[SectionKind.PROFILE]:
        lines += [f"*{s.title}*", "", s.table, ""]  # caption line, then the table as its own block
    usable = [c for c in group if _usable(c)]
    labels = case_labels(group)
    winner, plot_missing = None, False
    if usable:
        winner = usable[0] if usable[0].sam is not None else min(usable, key=_energy)
        front = pareto_front([(_top1(c), _energy(c)) for c in usable], [True, False])
        png = f"accuracy_energy_{_slug(device)}_{_slug(dataset)}.png"
        key = _plot(usable, front, f"Top-1 vs energy per image: {device} / {dataset}", out / png, labels)
        if key is not None:
            lines += [f"![Top-1 vs energy on {_md(device)} / {_md(dataset)}]({png})", ""]
            if key:  # the points numbered in the plot for want of room beside them
                lines += ["Numbered points: " + "; ".join(_md(k) for k in key), ""]
        else:
            plot_missing = True
        lines += ["Pareto front (accuracy up, energy down): " + ", ".join(_md(labels.get(usable[i].case_id, short_name(usable[i]))) for i in front), ""]
        lines += _theory_vs_device(usable, device, labels)
        lines += _savings(usable, device, reference_model, labels)
    for s in parts[SectionKind.VARIANTS]:
        lines += [f"#### {s.title[0].upper()}{s.title[1:]}", "", s.table, ""] + [f"- {n}" for n in s.notes] + [""]
    if parts[SectionKind.VARIANTS]:
        png = f"variants_{_slug(device)}_{_slug(dataset)}.png"
        if plot_variants(group, out / png):
            lines += [f"![Energy saved against accuracy lost per variant on {_md(device)} / {_md(dataset)}]({png})", ""]
    lines += attribution_markdown(group, out, f"attribution_{_slug(device)}_{_slug(dataset)}.png")
    if parts[SectionKind.TABLE3]:
        edgevit = [c for c in group if c.protocol == EDGEVIT]
        lines += _table3_section(parts, edgevit, device, dataset, out)  # its plot is missing exactly when _plot's is
    return _DeviceSection(lines, winner, plot_missing)


def _across_devices(winners: dict[str, CaseResult], labels: dict[str, str]) -> list[str]:
    """Which model wins on each device, where a dataset ran on several."""
    if len(winners) <= 1:
        return []
    lines = ["### Across devices", ""]
    name = {d: _md(labels.get(c.case_id, short_name(c))) for d, c in winners.items()}
    lines += [
        f"- on **{_md(d)}** the best is **{name[d]}** (SAM {c.sam:.3f})" if c.sam is not None else f"- on **{_md(d)}** the lowest energy is **{name[d]}**"
        for d, c in sorted(winners.items())
    ]
    if len({c.model for c in winners.values()}) > 1:
        lines += ["", "The best model differs between devices."]
    return lines + [""]


def _table3_section(parts: dict[SectionKind, list[Section]], cases: list[CaseResult], device: str, dataset: str, out: Path) -> list[str]:
    """The EdgeViT paper's Table 3 and Fig. 5 for the edgevit-protocol cases (table3.py)."""
    lines = [f"#### EdgeViT Table 3 on {_md(device)}", ""]
    for s in parts[SectionKind.TABLE3]:
        lines += [s.table, ""] + [f"- {n}" for n in s.notes] + [""]
    for s in parts[SectionKind.TABLE3_UNAVAILABLE][:1]:  # the same lines after each table: once here
        lines += [f"- {line}" for line in s.notes] + [""]
    png = f"fig5_{_slug(device)}_{_slug(dataset)}.png"
    if plot_fig5(cases, f"Top-1 vs latency and energy per inference: {device} / {dataset}", out / png):
        lines += [f"![Top-1 vs latency and energy per inference on {_md(device)} / {_md(dataset)}]({png})", ""]
    return lines


def _stage1_section(cases: list[CaseResult], files: list[ResultsFile]) -> list[str]:
    seen: dict[str, CaseResult] = {}
    for c in cases:
        seen.setdefault(c.model, c)
    kept = {row["model"]: row for f in files for row in f.screening}
    rows = []
    for model, c in sorted(seen.items(), key=lambda kv: -(kv[1].netscore or -1e9)):
        screening = kept.get(model)
        status = "-" if screening is None else ("kept" if screening["kept"] else f"dropped ({_md(screening['why'])})")
        rows.append(
            [
                _md(model),
                f"{c.params_m:.2f}" if c.params_m else "-",
                f"{c.gmacs:.3f}" if c.gmacs else "-",
                f"{c.top1_ref:.2f}" if c.top1_ref else "-",
                f"{c.netscore:.1f}" if c.netscore else "-",
                status,
            ]
        )
    return [
        "### Stage 1: NetScore (device-agnostic)",
        "",
        tabulate(rows, headers=["model", "params (M)", "GMACs", "reference top-1 (%)", "NetScore", "screening"], tablefmt="github", disable_numparse=True),
        "",
    ]


def _theory_vs_device(cases: list[CaseResult], device: str, labels: dict[str, str]) -> list[str]:
    with_ns = [c for c in cases if c.netscore is not None]
    if len(with_ns) < 3:
        return []
    ns_rank = ranks([c.netscore for c in with_ns if c.netscore is not None], higher_is_better=True)  # the filter narrows the type only
    # device ranks tie where the measured spread does not separate two models (a 95 % band, 2 sd)
    energy_rank = noise_ranks([_energy(c) for c in with_ns], [2 * _cv(c) * _energy(c) for c in with_ns], higher_is_better=False)
    sams = [c.sam for c in with_ns if c.sam is not None]
    has_sam = len(sams) == len(with_ns)
    sam_rank = noise_ranks(sams, [_sam_halfwidth(c) for c in with_ns], higher_is_better=True) if has_sam else None
    device_rank = sam_rank or energy_rank

    def name(c: CaseResult) -> str:
        return _md(labels.get(c.case_id, short_name(c)))

    rows = []
    for i in sorted(range(len(with_ns)), key=lambda i: ns_rank[i]):  # by NetScore rank
        c = with_ns[i]
        rows.append([name(c), ns_rank[i], sam_rank[i] if sam_rank else "-", energy_rank[i], f"{device_rank[i] - ns_rank[i]:+d}"])
    tau_sam = kendall_tau(ns_rank, sam_rank) if sam_rank else None
    tau_energy = kendall_tau(ns_rank, energy_rank)
    movers = sorted(range(len(with_ns)), key=lambda i: -abs(device_rank[i] - ns_rank[i]))[:3]
    lines = [f"#### Theory against device ({_md(device)})", ""]
    lines += [tabulate(rows, headers=["model", "NetScore rank", "SAM rank", "energy rank", "move"], tablefmt="github"), ""]
    taus = []
    if tau_sam is not None:
        taus.append(f"NetScore vs SAM: {tau_sam:.2f}")
    if tau_energy is not None:
        taus.append(f"NetScore vs energy: {tau_energy:.2f}")
    if taus:
        lines.append("Kendall's tau, " + "; ".join(taus) + ".")
    if len(set(device_rank)) < len(device_rank):
        lines.append("Models whose device figures are within their measured spread share a rank: no order between them is claimed.")
    moved = [f"{name(with_ns[i])} ({ns_rank[i]} -> {device_rank[i]})" for i in movers if device_rank[i] != ns_rank[i]]
    if moved:
        lines.append("Rank moves most from NetScore to the device: " + ", ".join(moved) + ".")
    best_theory = with_ns[ns_rank.index(1)]
    best_device = with_ns[device_rank.index(1)]
    if device_rank[ns_rank.index(1)] != 1:
        lines.append(f"The best NetScore model ({name(best_theory)}) is not the best on {_md(device)} ({name(best_device)}).")
    return lines + [""]


def _cv(c: CaseResult) -> float:
    return c.energy_spread or 0.0


def _sam_halfwidth(c: CaseResult) -> float:
    """Half the SAM range over energy +/- 2 sd of its passes."""
    if c.sam is None or not _cv(c) or c.top1 is None:
        return 0.0
    lo, hi = _energy(c) * (1 - 2 * _cv(c)), _energy(c) * (1 + 2 * _cv(c))
    values = [v for v in (sam(c.top1 / 100.0, lo, c.sam_alpha), sam(c.top1 / 100.0, hi, c.sam_alpha)) if v is not None]
    return (max(values) - min(values)) / 2 if len(values) == 2 else float("inf")


def savings_line(cases: list[CaseResult], device: str, reference_model: str, labels: dict[str, str] | None = None) -> str | None:
    """The most energy-efficient case against the reference model; cases named by `labels` (the
    short name where a case has none)."""
    ref = next((c for c in cases if c.model == reference_model or short_name(c) == reference_model), None)
    if ref is None:
        return None

    def name(c: CaseResult) -> str:
        return (labels or {}).get(c.case_id, short_name(c))

    best = min(cases, key=_energy)
    if best is ref:
        return f"{name(ref)} itself uses the least energy per image on {device}"
    saving = 1.0 - _energy(best) / _energy(ref)
    return f"{name(best)} uses {saving:.0%} less energy per image than {name(ref)} on {device}"


def _savings(cases: list[CaseResult], device: str, reference_model: str, labels: dict[str, str]) -> list[str]:
    line = savings_line(cases, device, reference_model, labels)
    if line is None:
        return [f"_No savings line: the reference model {_md(reference_model)} was not measured on {_md(device)}._", ""]
    est = " (estimated energy)" if cases[0].energy_kind == EnergyKind.ESTIMATE else ""
    return [f"**Savings:** {_md(line)}{est}.", ""]


def _conditions(files: list[ResultsFile], cases: list[CaseResult]) -> list[str]:
    lines = ["## Conditions", ""]
    for f in files:
        d, p, e = f.device, f.protocol, f.environment
        identity = d.get("identity")
        ident = ", ".join(f"{k}: {v}" for k, v in identity.items()) if isinstance(identity, dict) else str(identity or "")
        lines.append(f"- **{_md(d.get('name'))}** ({_md(ident)})")
        variants = p.get("variants") or [p.get("precision", "?")]
        lines.append(
            _md(
                f"  - energy: {p.get('energy_kind', '?')} by {p.get('energy_source', '?')} ({p.get('boundary', '?')}); "
                f"{protocol_conditions(p)}; variants {', '.join(map(str, variants)) if isinstance(variants, list) else variants}"
            )
        )
        versions = ", ".join(f"{k} {v}" for k, v in sorted(e.items()))
        lines.append("  - " + _md(f"{versions or 'versions unknown'}; from {f.source or 'this run'}"))
    if any(c.energy_kind == EnergyKind.ESTIMATE for c in cases):
        lines.append("- Energy figures marked est. are ESTIMATES (no power sensor), never compared with measurements.")
    if any(c.top1_source == Top1Source.REFERENCE for c in cases):
        lines.append("- top-1 'reference' is timm's published ImageNet-1k accuracy, not measured in this run.")
    subsets = {c.eval_subset for c in cases if c.eval_subset}
    for s in sorted(subsets):
        lines.append(f"- accuracy on a subset: {_md(s)}")
    weights = {c.weights for c in cases}
    lines.append(f"- weights: {_md(', '.join(sorted(weights)))}")
    return lines
