"""A static dashboard of a run history (`python -m pytest_e3p dashboard DIR --out SITE`).

SITE/index.html and SITE/assets/ open from file:// with no network: the charts are matplotlib SVG
inlined in the page, the CSS and the few lines of JavaScript (filters, error capture) are files of
the site. The page has a summary of every case's latest run, a regressions section listing where a
series stepped, and per case a trend chart of energy, latency and top-1 over the runs.

A case's series is keyed by (device, case id, precision, batch size, image size): a run under other
conditions starts another series, as the gate refuses to compare them. Measured and estimated
energy are separate rows of a chart, never one axis.

Change points (`detect_steps`), in the spirit of asv's step detection (a penalised L1 fit of a
piecewise-constant curve), simpler:
  1. noise sigma = median |x[i+1] - x[i]| / (0.6745 * sqrt 2), the robust spread of successive
     differences (a step moves one difference only), floored at 0.2% of the series' median;
  2. cut the series into segments minimising  sum over segments of sum |x - median(segment)|
     + beta per segment, beta = 4 * sigma * ln(n), solved exactly by dynamic programming
     (optimal partitioning; a greedy binary segmentation misses a step up and back down);
  3. merge neighbouring segments whose medians differ by less than the minimum step (the energy
     tolerance, 5% by default; 10% latency; 0.5 points top-1), and fold a lone interior point whose
     neighbours agree back into them (an outlier, not a step).
The first run of each remaining segment is the commit where the series stepped. A series needs
3 runs; a step at the newest run is reported at once (the gate's verdict says the same of the last
pair), to be confirmed by the next run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import heapq
import html
import io
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gate import DEFAULT_ENERGY_TOLERANCE, Verdict
from ..hardware.sensors.base import EnergyKind
from ..storage.history import Run, load_history, read_results_file
from ..storage.results import CaseResult, ResultsFileError, Status, Top1Source, write_atomic
from ..text import slug, terminal_safe
from . import footprint
from .attribution import dashboard_html as attribution_html
from .figures import PLAIN_TEXT
from .verdicts import case_label, changes_text

# -- change points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePoint:
    """A step in a series: `index` is the first value after it."""

    index: int
    before: float  # median of the segment before
    after: float  # median of the segment after

    def change(self, relative: bool = True) -> float:
        return self.after / self.before - 1.0 if relative else self.after - self.before


def _l1_costs(x: list[float]) -> list[list[float]]:
    """cost[s][e - s - 1] = sum |x[i] - median(x[s:e])| for every segment, in O(n^2 log n).

    For each start the segment grows one value at a time, its median kept by two heaps (lower
    half as a max-heap, upper half as a min-heap) with their sums: the L1 cost around the median is
    sum(upper) - sum(lower), plus the median itself when the lower half holds one value more."""
    costs = []
    for s in range(len(x)):
        lower: list[float] = []  # negated: a max-heap
        upper: list[float] = []
        sum_lower = sum_upper = 0.0
        row = []
        for v in x[s:]:
            if lower and v > -lower[0]:
                heapq.heappush(upper, v)
                sum_upper += v
            else:
                heapq.heappush(lower, -v)
                sum_lower += v
            if len(lower) > len(upper) + 1:
                moved = -heapq.heappop(lower)
                sum_lower -= moved
                heapq.heappush(upper, moved)
                sum_upper += moved
            elif len(upper) > len(lower):
                moved = heapq.heappop(upper)
                sum_upper -= moved
                heapq.heappush(lower, -moved)
                sum_lower += moved
            odd = -lower[0] if len(lower) > len(upper) else 0.0
            row.append(sum_upper - sum_lower + odd)
        costs.append(row)
    return costs


def _differ(a: float, b: float, min_step: float, relative: bool) -> bool:
    if relative:
        return abs(b - a) >= min_step * abs(a) if a else b != 0
    return abs(b - a) >= min_step


MAX_STEP_RUNS = 1000  # steps are looked for in a series' newest 1000 runs: the search is O(n^2 log n)


def detect_steps(values: Sequence[float], min_step: float, relative: bool = True, penalty: float = 4.0) -> list[ChangePoint]:
    """The steps of a series (see the module's docstring); min_step is relative or absolute."""
    x = [float(v) for v in values]
    offset = max(0, len(x) - MAX_STEP_RUNS)
    x = x[offset:]
    n = len(x)
    if n < 3:
        return []  # two points cannot tell a step from noise: the gate judges the last pair
    diffs = [abs(b - a) for a, b in zip(x, x[1:])]
    sigma = statistics.median(diffs) / (0.6745 * math.sqrt(2))
    sigma = max(sigma, 0.002 * abs(statistics.median(x)), 1e-12)
    beta = penalty * sigma * math.log(n)

    # optimal partitioning: best[e] = the least cost of x[:e] cut into segments, each paying beta
    cost = _l1_costs(x)
    best = [0.0] + [math.inf] * n
    last_cut = [0] * (n + 1)
    for e in range(1, n + 1):
        for s in range(e):
            total = best[s] + cost[s][e - s - 1] + beta
            if total < best[e]:
                best[e], last_cut[e] = total, s
    bounds, e = [], n
    while last_cut[e] > 0:
        bounds.append(last_cut[e])
        e = last_cut[e]
    bounds.reverse()

    def medians(bs: list[int]) -> list[float]:
        edges = [0, *bs, n]
        return [statistics.median(x[a:b]) for a, b in zip(edges, edges[1:])]

    changed = True
    while changed and bounds:
        changed = False
        meds = medians(bounds)
        # the smallest step first: merging it changes its neighbours' medians
        small = [
            (abs(meds[i + 1] - meds[i]) / (abs(meds[i]) or 1.0) if relative else abs(meds[i + 1] - meds[i]), i)
            for i in range(len(bounds))
            if not _differ(meds[i], meds[i + 1], min_step, relative)
        ]
        if small:
            bounds.pop(min(small)[1])
            changed = True
            continue
        edges = [0, *bounds, n]
        for i in range(1, len(edges) - 2):  # interior segments only
            if edges[i + 1] - edges[i] == 1 and not _differ(meds[i - 1], meds[i + 1], min_step, relative):
                del bounds[i - 1 : i + 1]  # an outlier between two agreeing segments
                changed = True
                break
    meds = medians(bounds)
    return [ChangePoint(b + offset, meds[i], meds[i + 1]) for i, b in enumerate(bounds)]


# -- series ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # axis label, with the unit
    field: str  # the case's field
    relative: bool  # steps and tolerances relative (energy, latency) or in points (top-1)
    higher_is_worse: bool
    kind: EnergyKind | None = None  # energy only: measured or estimate


ENERGY_MEASURED = Metric("energy_measured", "energy/image (mJ)\nmeasured", "energy_mj_per_image", True, True, EnergyKind.MEASURED)
ENERGY_ESTIMATE = Metric("energy_estimate", "energy/image (mJ)\nESTIMATE", "energy_mj_per_image", True, True, EnergyKind.ESTIMATE)
ENERGY_OF_KIND = {EnergyKind.MEASURED: ENERGY_MEASURED, EnergyKind.ESTIMATE: ENERGY_ESTIMATE}
LATENCY = Metric("latency", "latency/image (ms)", "latency_ms_per_image", True, True)
TOP1 = Metric("top1", "top-1 (%)\nmeasured", "top1", False, False)
METRICS = (ENERGY_MEASURED, ENERGY_ESTIMATE, LATENCY, TOP1)
TOLERANCE_OF = {"energy_measured": "energy", "energy_estimate": "energy", "latency": "latency", "top1": "top1"}
DEFAULT_MIN_STEP = {"energy": DEFAULT_ENERGY_TOLERANCE, "latency": 0.10, "top1": 0.5}


def metric_value(metric: Metric, case: dict[str, Any]) -> float | None:
    """The case's value on this metric, or None (not measured, another energy kind, not ok)."""
    if case.get("status", Status.OK) != Status.OK:
        return None
    if metric.kind and case.get("energy_kind") != metric.kind:
        return None
    if metric is TOP1 and case.get("top1_source") != Top1Source.MEASURED:
        return None  # timm's reference figure is a constant, not a trend
    value = case.get(metric.field)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass
class Point:
    run: Run
    case: dict[str, Any]


@dataclass
class Step:
    series: Series
    metric: Metric
    point: ChangePoint
    run: Run  # the first run after the step: its commit is where the series stepped

    @property
    def regression(self) -> bool:
        worse = self.point.after > self.point.before
        return worse if self.metric.higher_is_worse else not worse

    def change_text(self) -> str:
        return f"{self.point.change():+.1%}" if self.metric.relative else f"{self.point.change(False):+.2f} pt"

    def describe(self) -> str:
        unit = {"top1": "%"}.get(self.metric.key, "ms" if self.metric is LATENCY else "mJ")
        return f"{_metric_name(self.metric)} {self.change_text()} ({self.point.before:.4g} -> {self.point.after:.4g} {unit})"


@dataclass
class Series:
    """One case under one set of conditions, over the runs that measured it (oldest first)."""

    key: str  # anchor-safe, unique
    case_id: str
    model: str
    device: str  # the run's device key: profile name (hardware name)
    dataset: str
    conditions: str  # the other axes: precision, batch, image size
    points: list[Point] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def latest(self) -> Point:
        return self.points[-1]

    def values(self, metric: Metric) -> list[tuple[int, float]]:
        """(position in the series, value) of the runs that have this metric."""
        return [(i, v) for i, p in enumerate(self.points) if (v := metric_value(metric, p.case)) is not None]


def _metric_name(m: Metric) -> str:
    return {"energy_measured": "energy", "energy_estimate": "estimated energy", "latency": "latency", "top1": "top-1"}[m.key]


def _conditions(case: dict[str, Any]) -> tuple[str, Any, str]:
    size = case.get("image_size")
    size_text = "x".join(str(s) for s in size[1:]) if isinstance(size, list) and len(size) == 3 else ""
    return str(case.get("precision", "")), case.get("batch_size", ""), size_text


def build_series(runs: list[Run]) -> list[Series]:
    by_key: dict[tuple, Series] = {}
    for run in runs:
        for cid, case in sorted(run.cases.items()):
            precision, batch, size = _conditions(case)
            key = (run.device_key, cid, precision, batch, size)
            if key not in by_key:
                digest = hashlib.sha1(repr(key).encode()).hexdigest()[:8]
                # the variant too where it is not fp32: two forms of a model otherwise read the same
                variant = str(case.get("variant") or "fp32")
                conditions = ", ".join(t for t in (variant if variant != "fp32" else "", precision, f"batch {batch}" if batch != "" else "", size) if t)
                by_key[key] = Series(f"case-{slug(cid)}-{digest}", cid, str(case.get("model", "")), run.device_key, str(case.get("dataset", "")), conditions)
            by_key[key].points.append(Point(run, case))
    return sorted(by_key.values(), key=lambda s: (s.device, s.dataset, s.model, s.case_id, s.conditions))


def find_steps(series: Series, min_steps: dict[str, float]) -> None:
    series.steps = []
    for metric in METRICS:
        vals = series.values(metric)
        for cp in detect_steps([v for _, v in vals], min_steps[TOLERANCE_OF[metric.key]], metric.relative):
            series.steps.append(Step(series, metric, cp, series.points[vals[cp.index][0]].run))


# -- baselines and tolerances ----------------------------------------------------------------


@dataclass
class Reference:
    """Where a point's baseline and tolerance band come from."""

    files: dict[tuple[str, str], dict[str, Any]]  # (case id, energy kind) -> baseline case dict
    tolerance_override: dict[str, float | None]

    def tolerance(self, metric: Metric, run: Run) -> float | None:
        name = TOLERANCE_OF[metric.key]
        if name in self.tolerance_override:
            return self.tolerance_override[name]
        tols = run.protocol.get("tolerances")
        if isinstance(tols, dict) and name in tols and (tols[name] is None or isinstance(tols[name], (int, float))):
            return tols[name]
        return DEFAULT_ENERGY_TOLERANCE if name == "energy" else None  # the gate's defaults: energy on, the rest off

    def baseline(self, metric: Metric, point: Point) -> float | None:
        value = metric_value(metric, point.case)
        change = point.case.get("change_vs_baseline")
        if metric.kind and value is not None and isinstance(change, (int, float)) and change > -1:
            return value / (1.0 + change)  # the baseline the gate used in that run
        base = self.files.get((str(point.case.get("case_id", "")), str(point.case.get("energy_kind", ""))))
        return metric_value(metric, base) if base else None


def read_baselines(paths: Sequence[str | Path]) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    found, problems = {}, []
    for path in paths:
        try:
            rf = read_results_file(path, follow_symlinks=True)  # named by the user; a regular file under the cap
        except ResultsFileError as exc:
            problems.append(str(exc))
            continue
        for cid, case in rf.cases.items():
            found[(cid, case.energy_kind)] = case.to_dict()
    return found, problems


# -- charts ----------------------------------------------------------------------------------

DEFAULT_MAX_CHARTS = 500  # about 35 s of drawing at ~70 ms a chart


def _regressed(s: Series) -> bool:
    return s.latest.case.get("verdict") == Verdict.REGRESSED or any(st.regression for st in s.steps)


def by_relevance(series: list[Series]) -> list[Series]:
    """The series in the order their charts are worth drawing: regressed (the gate's latest verdict
    or a step for the worse) first, then any other step, then a latest verdict other than unchanged,
    then the rest; the page's order within each."""

    def rank(s: Series) -> int:
        if _regressed(s):
            return 0
        if s.steps:
            return 1
        return 2 if s.latest.case.get("verdict") not in (Verdict.UNCHANGED, "", None) else 3

    return sorted(series, key=rank)  # stable: the page's order within a rank


COLORS = {"energy_measured": "#1f77b4", "energy_estimate": "#d97706", "latency": "#6d28d9", "top1": "#047857"}


def chart_svg(series: Series, ref: Reference) -> str | None:
    """The trend chart of a series as an SVG element, one row per metric it has; "" without any,
    None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    rows = [m for m in METRICS if series.values(m)]
    if not rows:
        return ""
    # every label is a recorded string (commit ticks): plain text, so "$x^{2$" is not a mathtext error
    with matplotlib.rc_context(PLAIN_TEXT):
        return _draw_chart(series, ref, rows)


def _draw_chart(series: Series, ref: Reference, rows: list[Metric]) -> str:
    return _svg_element(chart_figure(series, ref, rows), series.key)


def chart_figure(series: Series, ref: Reference, rows: list[Metric]) -> Any:
    """The trend chart's matplotlib figure (one row per metric), legend and ticks inside it."""
    fig, axes = _chart_figure(len(rows))
    for ax, metric in zip(axes, rows):
        vals = series.values(metric)
        _plot_run_values(ax, series, metric, vals)
        _plot_baseline_band(ax, series, metric, ref)
        _mark_gate_regressions(ax, series, metric, vals)
        _mark_steps(ax, series, metric, vals)
        _style_row(ax, metric)
        _min_span(ax, metric, [v for _, v in vals])
    _commit_axis(axes[-1], series)
    _legend_below(fig, axes)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.97, bottom=LEGEND_AND_TICKS_IN / fig.get_figheight(), hspace=0.12)
    return fig


LEGEND_AND_TICKS_IN = 1.0  # inches under the axes: rotated commit ticks, the axis label, one legend row


def _legend_below(fig: Any, axes: list[Any]) -> None:
    """One legend for the whole chart, in a row under the axes: a legend beside the axes was cut at
    the figure's right edge, and one inside a row covered the step annotations. The run value's
    colour differs per row; its entry shows the first row's."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=len(entries), fontsize=7, frameon=False)


def _chart_figure(rows: int) -> tuple[Any, list[Any]]:
    """A figure of `rows` stacked axes sharing the run axis, drawn by the SVG backend."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 1.6 * rows + 0.2 + LEGEND_AND_TICKS_IN), dpi=100)
    FigureCanvasSVG(fig)
    return fig, list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])


def _plot_run_values(ax: Any, series: Series, metric: Metric, vals: list[tuple[int, float]]) -> None:
    ax.plot(
        [i for i, _ in vals],
        [v for _, v in vals],
        "-o",
        color=COLORS[metric.key],
        ms=3.5,
        lw=1.3,
        label="run value (median of its passes)",
        gid=f"{series.key}-{metric.key}-line",
    )


def _plot_baseline_band(ax: Any, series: Series, metric: Metric, ref: Reference) -> None:
    """The baseline and its tolerance band, per run: a refreshed baseline shows as a step in the line."""
    bx, by, lo, hi = [], [], [], []
    for i, p in enumerate(series.points):
        b = ref.baseline(metric, p)
        if b is None:
            continue
        tol = ref.tolerance(metric, p.run)
        bx.append(i)
        by.append(b)
        width = (b * tol if metric.relative else tol) if tol is not None else 0.0
        lo.append(b - width)
        hi.append(b + width)
    if bx:
        ax.plot(bx, by, "--", color="#555", lw=1, label="baseline", drawstyle="steps-mid")
        if any(h > l for h, l in zip(hi, lo)):
            ax.fill_between(bx, lo, hi, step="mid", color="#9ca3af", alpha=0.25, lw=0, label="tolerance")


def _mark_gate_regressions(ax: Any, series: Series, metric: Metric, vals: list[tuple[int, float]]) -> None:
    """The gate's regressions, as recorded in each run (its verdict is on energy)."""
    reg = [(i, v) for i, v in vals if series.points[i].case.get("verdict") == Verdict.REGRESSED]
    if reg and metric.key.startswith("energy"):
        ax.plot([i for i, _ in reg], [v for _, v in reg], "x", color="#dc2626", ms=9, mew=2.2, label="gate: regressed", gid=f"{series.key}-gate-regressed")


def _mark_steps(ax: Any, series: Series, metric: Metric, vals: list[tuple[int, float]]) -> None:
    """A dotted line before each run where the series stepped, with the change above it."""
    for k, step in enumerate(s for s in series.steps if s.metric is metric):
        x = vals[step.point.index][0]
        c = "#dc2626" if step.regression else "#16a34a"
        ax.axvline(x - 0.5, color=c, lw=1.4, ls=":", gid=f"{series.key}-step-{metric.key}-{k}")
        ax.annotate(
            step.change_text(),
            (x - 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            color=c,
            fontsize=8,
            fontweight="bold",
        )


def _style_row(ax: Any, metric: Metric) -> None:
    ax.set_ylabel(metric.label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.margins(x=0.03, y=0.15)


MIN_SPAN = {"energy": 0.10, "latency": 0.10, "top1": 2.0}  # of the median (relative), or points


def _min_span(ax: Any, metric: Metric, values: list[float]) -> None:
    """Widen a row to at least +/- 5 % of the series' median (2 points of top-1) around its values:
    auto-scaled, a flat series' 0.1 % wobble filled the row and read as a cliff."""
    if not values:
        return
    mid = statistics.median(values)
    span = 1.05 * MIN_SPAN[TOLERANCE_OF[metric.key]] * (abs(mid) if metric.relative else 1.0)  # a margin above the minimum
    low, high = ax.get_ylim()
    if high - low < span:
        ax.set_ylim(min(low, mid - span / 2), max(high, mid + span / 2))


def _commit_axis(ax: Any, series: Series) -> None:
    """The shared run axis, labelled with the runs' commits (at most ~24 labels)."""
    n = len(series.points)
    every = max(1, math.ceil(n / 24))
    ax.set_xticks(range(0, n, every))
    ax.set_xticklabels([series.points[i].run.commit.short[:7] for i in range(0, n, every)], rotation=45, ha="right", fontsize=7, family="monospace")
    ax.set_xlabel("commit (runs in order)", fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)


def _svg_element(fig: Any, salt: str) -> str:
    """The figure as an inline <svg> element: text stays text (smaller, searchable), and a per-chart
    salt keeps ids unique across the page's SVGs."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


# -- the page --------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".4g") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    cls = "worse" if value > 0.0005 else "better" if value < -0.0005 else ""
    return f'<span class="{cls}">{value:+.1%}</span>'


VERDICT_CLASS: dict[str, str] = {
    Verdict.REGRESSED: "bad",
    Verdict.IMPROVED: "good",
    Verdict.WITHIN_NOISE: "neutral",
    Verdict.UNCHANGED: "neutral",
    Verdict.INCONCLUSIVE: "warn",
}


def _energy_change_vs_previous(series: Series) -> float | None:
    kind = series.latest.case.get("energy_kind", "")
    metric = ENERGY_OF_KIND.get(kind)
    vals = series.values(metric) if metric else []
    if len(vals) < 2 or vals[-1][0] != len(series.points) - 1 or not vals[-2][1]:
        return None  # the latest run has no energy of this kind, or no earlier one to compare
    return vals[-1][1] / vals[-2][1] - 1.0


def _energy_change_vs_baseline(series: Series, ref: Reference) -> float | None:
    case = series.latest.case
    change = case.get("change_vs_baseline")
    if isinstance(change, (int, float)):
        return float(change)
    metric = ENERGY_OF_KIND.get(case.get("energy_kind", ""))
    value = metric_value(metric, case) if metric else None
    base = ref.baseline(metric, series.latest) if metric else None
    return value / base - 1.0 if value is not None and base else None


def _data_attrs(s: Series, regressed: bool) -> str:
    return f'data-case="{_esc(s.key)}" data-device="{_esc(s.device)}" data-model="{_esc(s.model)}" data-dataset="{_esc(s.dataset)}" data-regressed="{"yes" if regressed else "no"}"'


def _summary_row(s: Series, ref: Reference, show_footprint: bool = False) -> str:
    c = s.latest.case
    kind = c.get("energy_kind", EnergyKind.UNAVAILABLE)
    energy = _num(c.get("energy_mj_per_image")) if kind in ENERGY_OF_KIND else "-"
    if kind == EnergyKind.ESTIMATE and energy != "-":
        energy += ' <span class="badge est" title="no power sensor: an estimate, never compared with measurements">est.</span>'
    top1 = _num(c.get("top1"), ".2f")
    if c.get("top1_source") == Top1Source.REFERENCE and top1 != "-":
        top1 += ' <span class="badge ref" title="timm\'s published ImageNet top-1, not measured">ref.</span>'
    sam = _num(c.get("sam"), ".3f")
    if c.get("sam_note") and sam != "-":
        sam = f'<span title="{_esc(c["sam_note"])}">{sam}*</span>'
    verdict = str(c.get("verdict") or "")
    if c.get("status", Status.OK) != Status.OK:
        # the reason in the row itself, not only in a tooltip: a skipped case says why it did not run
        badge = "warn" if c.get("status") == Status.SKIPPED else "bad"
        verdict_html = (
            f'<span class="badge {badge}">{_esc(c.get("status"))}</span><div class="cond reason">{_esc(c.get("reason") or "no reason recorded")}</div>'
        )
    else:
        verdict_html = f'<span class="badge {VERDICT_CLASS.get(verdict, "none")}">{_esc(case_label(c) or "not compared")}</span>'
        if changes_text(c):  # what the results files record as changed since the baseline
            verdict_html += f'<div class="cond reason">{_esc(changes_text(c))}</div>'
    steps = [st for st in s.steps if st.regression]
    step_html = "<br>".join(f'<span class="worse">{_esc(_metric_name(st.metric))} at {_esc(st.run.commit.short[:7])}</span>' for st in steps) or "-"
    regressed = verdict == Verdict.REGRESSED or bool(steps)
    return (
        f'<tr class="case-row" {_data_attrs(s, regressed)}>'
        f'<td><a href="#{_esc(s.key)}">{_esc(s.model)}</a></td><td>{_esc(s.device)}</td><td>{_esc(s.dataset)}</td><td class="cond">{_esc(s.conditions)}</td>'
        f'<td class="num">{len(s.points)}</td><td class="num">{energy}</td><td class="num">{_num(c.get("latency_ms_per_image"))}</td>'
        f'<td class="num">{top1}</td><td class="num">{sam}</td><td class="num">{_pct(_energy_change_vs_baseline(s, ref))}</td>'
        f'<td class="num">{_pct(_energy_change_vs_previous(s))}</td><td>{verdict_html}</td><td>{step_html}</td>'
        + (footprint.dashboard_cell(c, _esc) if show_footprint else "")
        + "</tr>"
    )


def _step_row(st: Step, newest_time: dict[str, str]) -> str:
    s, commit = st.series, st.run.commit
    latest = ' <span class="badge warn">newest run</span>' if st.run.time == newest_time.get(s.key) else ""
    subject = f'<div class="subject">{_esc(commit.subject)}</div>' if commit.subject else ""
    return (
        f'<tr class="step-row" {_data_attrs(s, True)}><td><a href="#{_esc(s.key)}">{_esc(s.case_id)}</a><div class="cond">{_esc(s.conditions)}</div></td>'
        f'<td>{_esc(_metric_name(st.metric))}</td><td><code title="{_esc(commit.sha)}">{_esc(commit.label())}</code>{latest}{subject}</td>'
        f'<td>{_esc(st.run.time[:16].replace("T", " "))}</td><td class="num">{_esc(_num(st.point.before))} &rarr; {_esc(_num(st.point.after))}</td>'
        f'<td class="num worse">{_esc(st.change_text())}</td></tr>'
    )


def _case_article(s: Series, ref: Reference, svg: str | None) -> str:
    regressed = _regressed(s)
    if svg is None:
        chart = "<p class=\"note\">No chart: matplotlib is not installed (<code>pip install 'pytest-e3p[report]'</code>).</p>"
    elif not svg:
        chart = '<p class="note">No energy, latency or measured top-1 in these runs.</p>'
    else:
        chart = f'<div class="chart" data-chart-for="{_esc(s.key)}">{svg}</div>'
    steps = "".join(
        f'<li class="{"worse" if st.regression else "better"}">{_esc(st.describe())} at <code>{_esc(st.run.commit.label())}</code></li>' for st in s.steps
    )
    c = s.latest.case
    meta = f"{_esc(s.conditions)}; energy: {_esc(c.get('energy_kind', '?'))} ({_esc(c.get('energy_source', '?'))}); {len(s.points)} run(s)"
    return (
        f'<article class="case" id="{_esc(s.key)}" {_data_attrs(s, regressed)}>'
        f'<h3>{_esc(s.model)} <span class="dim">on</span> {_esc(s.device)} <span class="dim">/</span> {_esc(s.dataset)}</h3>'
        f'<p class="meta"><code>{_esc(s.case_id)}</code> &middot; {meta}</p>{chart}' + (f'<ul class="steps">{steps}</ul>' if steps else "") + "</article>"
    )


def _undrawn_table(series: list[Series], svgs: dict[str, str | None]) -> str:
    """The series over the chart cap, one row each: the summary's links land here."""
    rows = "".join(
        f'<tr class="undrawn-row" id="{_esc(s.key)}" {_data_attrs(s, _regressed(s))}><td><code>{_esc(s.case_id)}</code></td><td>{_esc(s.device)}</td>'
        f'<td class="cond">{_esc(s.conditions)}</td><td class="num">{len(s.points)}</td></tr>'
        for s in series
        if s.key not in svgs
    )
    if not rows:
        return ""
    return (
        f'<h3 id="undrawn">{len(series) - len(svgs)} case(s) without a chart</h3><p class="note">Charts are drawn for the {len(svgs)} most relevant '
        "series (regressed or stepped first): each takes about 70 ms to draw. <code>dashboard --max-charts N</code> draws more.</p>"
        f'<table class="undrawn"><thead><tr><th>case</th><th>device</th><th>conditions</th><th>runs</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _select(axis: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{_esc(v)}">{_esc(v)}</option>' for v in values)
    return f'<label>{label} <select id="f-{axis}" data-axis="{axis}"><option value="">all</option>{options}</select></label>'


def latest_cases(runs: list[Run]) -> list[CaseResult]:
    """The cases of each device's newest run, the ones the answer speaks of. The history is read as
    untrusted: a case dict that does not make a CaseResult is left out of the answer (its row and
    chart still show what it holds)."""
    newest: dict[str, Run] = {}
    for run in runs:  # oldest first: the last one of a device wins
        newest[run.device_key] = run
    cases = []
    for run in newest.values():
        for case in run.cases.values():
            try:
                cases.append(CaseResult.from_dict(case))
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
    return cases


def _answer_html(runs: list[Run]) -> str:
    """The answer's plain lines (answer.answer_lines), escaped: every name in them is recorded."""
    from .answer import answer_lines  # here, not at the top: it needs the tables, which import torch

    cases = latest_cases(runs)
    try:
        lines = answer_lines(cases) if cases else []
    except (TypeError, ValueError, ZeroDivisionError):
        lines = ["No answer: the newest runs hold a value of the wrong type (the tables below show every case)."]
    if not lines:
        return ""
    body = "".join(f"<p>{_esc(line)}</p>" for line in lines)
    return f'<section id="answer"><h2>The answer: the newest run of each device</h2><div class="answer">{body}</div></section>'


def render_page(runs: list[Run], series: list[Series], ref: Reference, svgs: dict[str, str | None], problems: list[str], title: str) -> str:
    steps = sorted((st for s in series for st in s.steps), key=lambda st: (st.run.time, st.series.case_id), reverse=True)
    newest = {s.key: s.latest.run.time for s in series}
    reg_rows = "".join(_step_row(st, newest) for st in steps if st.regression)
    imp = [st for st in steps if not st.regression]
    imp_html = "".join(
        f'<li><a href="#{_esc(st.series.key)}">{_esc(st.series.case_id)}</a>: {_esc(st.describe())} at <code>{_esc(st.run.commit.label())}</code></li>'
        for st in imp
    )
    devices = sorted({s.device for s in series})
    commits = [r.commit for r in runs]
    span = f"{_esc(commits[0].label())} &rarr; {_esc(commits[-1].label())}" if commits else "no runs yet"
    head_note = (
        f"{len(runs)} run(s), {len(series)} case(s) on {len(devices)} device(s); commits {span}"
        if runs
        else "No runs yet: pytest appends one to the history folder with --e3p-history DIR"
    )
    skipped = "".join(f"<li>{_esc(p)}</li>" for p in problems)
    any_est = any(s.latest.case.get("energy_kind") == EnergyKind.ESTIMATE for s in series)
    show_footprint = footprint.dashboard_shown(s.latest.case for s in series)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<script>{ERROR_CAPTURE_JS}</script>
<link rel="stylesheet" href="assets/dashboard.css">
</head>
<body data-e3p-status="loading">
<header><h1>{_esc(title)}</h1><p>{head_note}. Generated {dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}.</p></header>
<div id="e3p-errors" role="alert" hidden></div>
<nav class="filters">{_select("device", "Device", devices)}{_select("model", "Model", sorted({s.model for s in series}))}{_select("dataset", "Dataset", sorted({s.dataset for s in series}))}
<label><input type="checkbox" id="f-regressed"> regressions only</label> <span id="f-count"></span></nav>
<main>
{_answer_html(runs)}
{attribution_html(latest_cases(runs))}
<section id="summary"><h2>Summary: latest run of each case</h2>
<table class="summary"><thead><tr><th>model</th><th>device</th><th>dataset</th><th>conditions</th><th>runs</th><th>energy/img (mJ)</th><th>latency/img (ms)</th><th>top-1 (%)</th><th>SAM</th><th>energy vs baseline</th><th>energy vs previous run</th><th>verdict</th><th>steps (regressions)</th>{footprint.dashboard_header() if show_footprint else ""}</tr></thead>
<tbody>{"".join(_summary_row(s, ref, show_footprint) for s in series)}</tbody></table>
{'<p class="note"><span class="badge est">est.</span> energy is an estimate (no power sensor on that machine): never compared with measurements, and drawn on its own axis.</p>' if any_est else ""}
</section>
<section id="regressions"><h2>Regressions: where a series stepped up</h2>
{f'<table class="regressions"><thead><tr><th>case</th><th>metric</th><th>commit where it stepped</th><th>run (UTC)</th><th>median before &rarr; after</th><th>change</th></tr></thead><tbody>{reg_rows}</tbody></table>' if reg_rows else '<p class="none">No step for the worse in any series.</p>'}
{f"<details><summary>{len(imp)} step(s) for the better</summary><ul>{imp_html}</ul></details>" if imp else ""}
</section>
<section id="cases"><h2>Trends</h2>
<p class="note">Per run, the run's value (the median of its passes, each the median of its rounds); the dashed line is the baseline the run was compared with and the grey band its tolerance; &times; marks a run the gate failed; a dotted line marks a step found over the whole history (the change and the commit are listed under the chart).</p>
{"".join(_case_article(s, ref, svgs[s.key]) for s in series if s.key in svgs)}
{_undrawn_table(series, svgs)}
</section>
{f'<section id="skipped"><h2>Files skipped</h2><ul>{skipped}</ul></section>' if skipped else ""}
</main>
<footer><p>pytest-e3p dashboard. Steps: an exact penalised L1 step fit (optimal partitioning) with a noise-scaled penalty and a minimum step (the tolerance); see <code>pytest_e3p/report/dashboard.py</code>.</p></footer>
<script src="assets/dashboard.js"></script>
</body></html>
"""


# Runs first, in <head>: page errors, failed asset loads and console.error land in #e3p-errors,
# so a headless browser's DOM dump shows them.
ERROR_CAPTURE_JS = """
(function () {
  var errors = window.__e3pErrors = [];
  function show() {
    var box = document.getElementById("e3p-errors");
    if (!box) return;
    box.textContent = errors.join("\\n");
    box.hidden = errors.length === 0;
    if (errors.length) document.body.setAttribute("data-e3p-status", "error");
  }
  window.__e3pShowErrors = show;
  window.addEventListener("error", function (e) {
    var t = e.target;
    var message = String(e.message || e);
    errors.push(t && t !== window && (t.src || t.href) ? "failed to load " + (t.src || t.href) : (/^Uncaught/.test(message) ? "" : "Uncaught ") + message);
    show();
  }, true);
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    show();
    return original.apply(console, arguments);
  };
  document.addEventListener("DOMContentLoaded", show);
})();
"""

DASHBOARD_JS = """// Filters by device, model and dataset (also from the URL: index.html?device=cpu&model=...).
(function () {
  "use strict";
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-axis]"));
  var onlyRegressed = document.getElementById("f-regressed");
  var count = document.getElementById("f-count");
  var rows = document.querySelectorAll("tr.case-row");
  var params = new URLSearchParams(window.location.search);

  // A chart rendered when its SVG has a size: checked before any filter hides one.
  document.querySelectorAll(".chart").forEach(function (chart) {
    var svg = chart.querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : null;
    chart.setAttribute("data-rendered", box && box.width > 0 && box.height > 0 && svg.querySelector("path") ? "yes" : "no");
  });

  function apply() {
    var want = {};
    selects.forEach(function (s) { want[s.getAttribute("data-axis")] = s.value; });
    var only = onlyRegressed.checked;
    document.querySelectorAll("[data-case]").forEach(function (el) {
      var show = Object.keys(want).every(function (axis) {
        return !want[axis] || el.getAttribute("data-" + axis) === want[axis];
      });
      if (only && el.getAttribute("data-regressed") !== "yes") show = false;
      el.hidden = !show;
    });
    var shown = Array.prototype.filter.call(rows, function (r) { return !r.hidden; }).length;
    count.textContent = shown + " of " + rows.length + " cases";
  }

  selects.forEach(function (s) {
    var v = params.get(s.getAttribute("data-axis"));
    if (v !== null) {
      // "?device=cpu" also picks "cpu (Intel Xeon)": the profile name is enough
      var opt = Array.prototype.find.call(s.options, function (o) { return o.value === v; }) ||
                Array.prototype.find.call(s.options, function (o) { return o.value.indexOf(v + " (") === 0; });
      if (opt) s.value = opt.value;
    }
    s.addEventListener("change", apply);
  });
  onlyRegressed.checked = params.get("regressed") === "1";
  onlyRegressed.addEventListener("change", apply);
  apply();
  if (window.__e3pShowErrors) window.__e3pShowErrors();
  if (document.body.getAttribute("data-e3p-status") !== "error") document.body.setAttribute("data-e3p-status", "ready");
})();
"""

DASHBOARD_CSS = """:root { --bad: #dc2626; --good: #16a34a; --warn: #b45309; --dim: #6b7280; --line: #e5e7eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #111827; background: #f9fafb; }
header, main, nav.filters, footer { max-width: 1280px; margin: 0 auto; padding: 0 20px; }
header h1 { margin: 18px 0 2px; font-size: 22px; }
header p, .meta, .note, footer, .cond, .dim, .subject { color: var(--dim); }
.cond, .subject { font-size: 12px; }
nav.filters { position: sticky; top: 0; z-index: 2; background: #f9fafb; padding-top: 8px; padding-bottom: 8px; border-bottom: 1px solid var(--line); display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
select { font: inherit; padding: 2px 4px; }
#f-count { color: var(--dim); margin-left: auto; }
#e3p-errors { max-width: 1240px; margin: 8px auto; padding: 8px 12px; background: #fee2e2; color: var(--bad); white-space: pre-wrap; }
h2 { font-size: 17px; margin: 26px 0 8px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:hover td { background: #f8fafc; }
a { color: #1d4ed8; text-decoration: none; } a:hover { text-decoration: underline; }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px; font-weight: 600; background: #e5e7eb; color: #374151; white-space: nowrap; }
.badge.bad { background: #fee2e2; color: var(--bad); } .badge.good { background: #dcfce7; color: var(--good); }
.badge.warn, .badge.est { background: #fef3c7; color: var(--warn); } .badge.ref { background: #e0e7ff; color: #3730a3; }
.worse { color: var(--bad); } .better { color: var(--good); }
article.case { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
article.case[data-regressed="yes"] { border-left: 4px solid var(--bad); }
article.case h3 { margin: 0; font-size: 15px; }
.meta { margin: 2px 0 6px; font-size: 12px; }
.chart svg { width: 100%; height: auto; display: block; }
#answer .answer { background: #fff; border: 1px solid var(--line); border-left: 4px solid #1d4ed8; border-radius: 6px; padding: 6px 14px; }
#answer .answer p { margin: 4px 0; white-space: pre-wrap; }
ul.steps { margin: 4px 0 0; padding-left: 20px; font-size: 13px; }
p.none { color: var(--good); }
[hidden] { display: none !important; }
footer { padding-top: 20px; padding-bottom: 30px; font-size: 12px; }
"""


@dataclass
class Site:
    """What `write_dashboard` wrote."""

    index: Path
    runs: list[Run]
    series: list[Series]
    problems: list[str]  # files skipped, one line each
    undrawn: list[Series] = field(default_factory=list)  # listed without a chart: over max_charts

    @property
    def regressions(self) -> list[Step]:
        return [st for s in self.series for st in s.steps if st.regression]


def write_dashboard(
    history_dir: str | Path,
    out_dir: str | Path,
    baselines: Sequence[str | Path] = (),
    tolerance: str = "",
    title: str = "pytest-e3p energy dashboard",
    max_charts: int = DEFAULT_MAX_CHARTS,
) -> Site:
    """Write out_dir/index.html and out_dir/assets/ from a history folder.

    A chart costs about 70 ms to draw (matplotlib), so 10^5 cases would take two hours: only the
    `max_charts` most relevant series (`by_relevance`) get one; the rest are listed in a table."""
    from ..gate.baseline import parse_tolerances

    runs, problems = load_history(history_dir)
    files, base_problems = read_baselines(baselines)
    problems += base_problems
    override: dict[str, float | None] = {}
    if tolerance:
        tol = parse_tolerances(tolerance)  # ToleranceError (a ValueError) on bad input
        override = {"energy": tol.energy, "latency": tol.latency, "top1": tol.top1}
    ref = Reference(files, override)
    series = build_series(runs)
    for s in series:
        # the minimum step is the gate's tolerance: a step is a change the gate would care about
        min_steps = {TOLERANCE_OF[m.key]: ref.tolerance(m, s.latest.run) or DEFAULT_MIN_STEP[TOLERANCE_OF[m.key]] for m in METRICS}
        find_steps(s, min_steps)
    drawn = {s.key for s in by_relevance(series)[: max(0, max_charts)]}
    svgs = {s.key: chart_svg(s, ref) for s in series if s.key in drawn}
    out = Path(out_dir)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    write_atomic(out / "assets" / "dashboard.css", DASHBOARD_CSS)
    write_atomic(out / "assets" / "dashboard.js", DASHBOARD_JS)
    index = out / "index.html"
    write_atomic(index, render_page(runs, series, ref, svgs, problems, title))
    return Site(index, runs, series, problems, [s for s in series if s.key not in drawn])


def _dashboard_command(args: argparse.Namespace) -> int:
    import time

    from ..gate.baseline import ToleranceError

    if not Path(args.folder).is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        site = write_dashboard(args.folder, args.out, args.baseline, args.tolerance, args.title, args.max_charts)
    except ToleranceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in site.problems:
        print(f"skipped: {terminal_safe(p)}", file=sys.stderr)  # listed on the page too; one bad file does not stop the site
    print(f"dashboard written to {site.index} in {time.perf_counter() - t0:.1f} s: {len(site.runs)} run(s), {len(site.series)} case(s)")
    if site.undrawn:
        print(f"charts drawn for {len(site.series) - len(site.undrawn)} case(s); {len(site.undrawn)} more listed without a chart (--max-charts)")
    for st in site.regressions:  # also what CI puts in the job summary: recorded strings, shown not obeyed
        print(terminal_safe(f"STEP {st.series.case_id} ({st.series.conditions}): {st.describe()} at {st.run.commit.label()}"))
    return 0


def add_cli(subparsers: Any) -> None:
    """Add `dashboard DIR --out SITE` to cli.main's subcommands."""
    p = subparsers.add_parser("dashboard", help="static HTML dashboard (trends, steps, regressions) of a history folder")
    p.add_argument("folder", metavar="DIR", help="the history folder (--e3p-history)")
    p.add_argument("--out", required=True, metavar="SITE", help="folder for index.html and assets/")
    p.add_argument("--baseline", action="append", default=[], metavar="FILE", help="baseline file(s) to draw where a run recorded no comparison (repeatable)")
    p.add_argument(
        "--tolerance",
        default="",
        help=f"bands and minimum steps, e.g. energy=5%%,latency=10%% (default: each run's own, energy {DEFAULT_ENERGY_TOLERANCE:.0%}%)",
    )
    p.add_argument("--title", default="pytest-e3p energy dashboard", help="the page's title")
    p.add_argument(
        "--max-charts",
        type=int,
        default=DEFAULT_MAX_CHARTS,
        metavar="N",
        help="draw the charts of the N most relevant cases, regressed first (each takes about 70 ms); the rest are listed",
    )
    p.set_defaults(run=_dashboard_command)
