"""Where the energy goes (--e3p-attribution): per case, a table of its parts with both methods side by
side (the terminal, report.md, the dashboard), and a stacked bar chart across the cases of a run
(models, and the variants of a model: where the savings of int8, pruning or ToMe come from)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from tabulate import tabulate

from ..storage.records import AttributedPart, Attribution
from ..storage.results import CaseResult
from .figures import pyplot, save_png

FLAG = "power not proportional to time here"
TITLE = "where the energy goes"
HEADERS = ["part", "time share %", "Method 1 mJ/img", "Method 2 mJ/img +/- noise", "M1 - M2 mJ/img", "flag"]
# the chart's stack, in this order; a role not named here is stacked under its own name after these
# a block's or a stage's own time: what runs in it outside its named parts (residual adds, reshapes)
ROLE_NAMES = {"block": "rest of block", "stage": "rest of stage"}
ROLE_ORDER = [
    "stem",
    "downsample",
    "attention",
    "global sparse attention",
    "LocalAgg",
    "LocalProp",
    "token merging",
    "mlp",
    "norm",
    "block",
    "stage",
    "head",
    "other",
]


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _m2_cell(p: AttributedPart) -> str:
    if p.method2_mj_per_image is None:
        return "-"
    return f"{p.method2_mj_per_image:.3g} +/- {_num(p.method2_noise_mj_per_image, '.2g')}"


def by_role(a: Attribution) -> dict[tuple[str, str], float]:
    """Method 1's time share of each (group, role): the fine parts summed."""
    out: dict[tuple[str, str], float] = {}
    for p in a.parts:
        out[(p.group, p.role)] = out.get((p.group, p.role), 0.0) + (p.time_share or 0.0)
    return out


def table_rows(a: Attribution) -> list[list[str]]:
    """A row per group (both methods), then its roles (Method 1) indented under it."""
    roles = by_role(a)
    energy = a.case_energy_mj_per_image
    rows = []
    for g in a.groups:
        diff = None if g.method1_mj_per_image is None or g.method2_mj_per_image is None else g.method1_mj_per_image - g.method2_mj_per_image
        rows.append(
            [g.name, _num(100 * (g.time_share or 0.0), ".1f"), _num(g.method1_mj_per_image), _m2_cell(g), _num(diff, "+.2g"), FLAG if g.disagree else ""]
        )
        inner = [(role, share) for (group, role), share in roles.items() if group == g.name and role != g.name]
        if len(inner) > 1:
            for role, share in sorted(inner, key=lambda rs: -rs[1]):
                rows.append([f"{g.name}: {ROLE_NAMES.get(role, role)}", _num(100 * share, ".1f"), _num(None if energy is None else energy * share), "", "", ""])
    return rows


def header_lines(c: CaseResult, a: Attribution) -> list[str]:
    """What the table rests on: the methods' labels, the energy kind, the checks, the notes."""
    est = " (estimates: the case's energy is estimated, not measured)" if a.energy_kind == "estimate" else ""
    lines = [f"Method 1: {a.method1_label}, spreading {a.spread}{est}"]
    if a.mode == "both":
        lines.append(f"Method 2: {a.method2_label} of truncated models on the case's sensor{est}; noise: {a.noise_rule or 'n/a'}")
    else:
        lines.append("Method 2: not run (--e3p-attribution time)")
    checks = []
    if a.method1_sum_ratio is not None:
        checks.append(f"Method 1's parts sum to {100 * a.method1_sum_ratio:.1f} % of the whole ({'ok' if a.method1_sum_ok else 'off by more than 2 %'})")
    if a.prefixes_monotone is not None:
        checks.append("prefixes monotone within noise" if a.prefixes_monotone else "prefixes NOT monotone within noise")
    if a.whole_matches_case is not None:
        checks.append("the whole model matches the case within noise" if a.whole_matches_case else "the whole model does NOT match the case within noise")
    if a.profiler_overhead_ratio is not None:
        checks.append(f"profiled forward {a.profiler_overhead_ratio:.2f}x the unprofiled one")
    checks.append(f"cost {a.cost_s:.1f} s after the passes")
    lines.append("; ".join(checks))
    lines += a.notes
    return lines


def attribution_tables(cases: Iterable[CaseResult], fmt: str = "simple") -> list[tuple[str, str, list[str]]]:
    """(title, table, notes) per case with an attribution."""
    out = []
    for c in cases:
        a = c.attribution
        if a is None:
            continue
        title = f"{TITLE}: {c.case_id}"
        table = tabulate(table_rows(a), headers=HEADERS, tablefmt=fmt, disable_numparse=True) if a.groups else ""
        out.append((title, table, header_lines(c, a)))
    return out


def _stack_of(a: Attribution) -> dict[str, float]:
    """Method 1's energy (or time share, without energy) of each role, over the whole model."""
    out: dict[str, float] = {}
    scale = a.case_energy_mj_per_image if a.case_energy_mj_per_image is not None else 1.0
    for p in a.parts:
        out[p.role] = out.get(p.role, 0.0) + (p.time_share or 0.0) * scale
    return out


def plot_attribution(cases: Iterable[CaseResult], path: Path) -> bool:
    """The stacked bars "where the energy goes": a bar per case (models, and a model's variants side by
    side), stacked by role with Method 1's energy; Method 2's whole-model figure marked where measured.
    False where matplotlib is missing or no case has an attribution."""
    chosen = [c for c in cases if c.attribution is not None and c.attribution.parts]
    plt = pyplot()
    if not chosen or plt is None:
        return False
    chosen.sort(key=lambda c: (c.model, c.variant, c.case_id))
    stacks = [_stack_of(c.attribution) for c in chosen if c.attribution is not None]
    roles = [r for r in ROLE_ORDER if any(r in s for s in stacks)] + sorted({r for s in stacks for r in s} - set(ROLE_ORDER))
    with_energy = all(c.attribution is not None and c.attribution.case_energy_mj_per_image is not None for c in chosen)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(chosen) + 3), 5), dpi=110)
    bottoms = [0.0] * len(chosen)
    for role in roles:
        values = [s.get(role, 0.0) for s in stacks]
        ax.bar(range(len(chosen)), values, bottom=bottoms, label=ROLE_NAMES.get(role, role))
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ticks = 0
    for i, c in enumerate(chosen):
        a = c.attribution
        if with_energy and a is not None and a.prefixes and a.prefixes[-1].energy_mj_per_image is not None:
            ax.plot([i], [a.prefixes[-1].energy_mj_per_image], marker="_", markersize=22, color="black")
            ticks += 1
    ax.set_xticks(range(len(chosen)))
    ax.set_xticklabels([f"{c.model}\n{c.variant}" for c in chosen], fontsize=7, rotation=30, ha="right")
    est = any(c.energy_kind == "estimate" for c in chosen)
    ax.set_ylabel(("energy per image, mJ" + (" (estimate)" if est else "")) if with_energy else "share of the forward's time")
    # two lines: one bar's figure is narrow, and a one-line title ran off both edges
    method = "Method 1, attributed by time share" + ("; black tick: Method 2's whole model" if ticks else "") if with_energy else "time share"
    ax.set_title(f"Where the energy goes\n({method})", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save_png(fig, path)
    return True


def markdown_lines(cases: list[CaseResult], out: Path, png: str) -> list[str]:
    """report.md's section: each case's table, then the chart across them."""
    tables = attribution_tables(cases, fmt="github")
    if not tables:
        return []
    lines = ["#### Where the energy goes (--e3p-attribution)", ""]
    for title, table, notes in tables:
        lines += [f"*{title}*", ""] + [f"- {n}" for n in notes] + [""]
        if table:
            lines += [table, ""]
    if plot_attribution(cases, out / png):
        lines += [f"![Where the energy goes]({png})", ""]
    return lines


def dashboard_html(cases: Iterable[CaseResult]) -> str:
    """The dashboard's section: each newest case's table ("" where none has an attribution)."""
    tables = attribution_tables(cases, fmt="html")
    if not tables:
        return ""
    body = "".join(f"<h3>{html.escape(title)}</h3>{''.join(f'<p class=note>{html.escape(n)}</p>' for n in notes)}{table}" for title, table, notes in tables)
    return f'<section id="attribution"><h2>Where the energy goes: the newest run of each device</h2>{body}</section>'
