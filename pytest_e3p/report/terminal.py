"""Tables for the terminal: the stage-2 ranking per device x dataset, stage-1 screening, and the
comparison with a baseline. (The Markdown report with plots is in markdown.py.)"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from ..gate import Check, Comparison, Verdict
from ..hardware.sensors.base import EnergyKind
from ..models.screening import Stage1Row
from ..storage.results import CaseResult, Status, Top1Source
from .labels import case_axes
from .verdicts import terminal_lines as verdict_notes


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _energy_text(energy_mj: float | None, kind: str) -> str:
    if energy_mj is None:
        return "unavailable"
    text = _num(energy_mj, ".4g")
    return f"~{text} (est.)" if kind == EnergyKind.ESTIMATE else text


def energy_cell(r: CaseResult) -> str:
    if r.status != Status.OK and r.energy_mj_per_image is None:
        return "-"  # not measured at all (skipped, failed): not a missing sensor
    return _energy_text(r.energy_mj_per_image, r.energy_kind)


def spread_cell(r: CaseResult) -> str:
    """The coefficient of variation of the case's pass values; "unstable" when it (or its noise
    against the baseline) is wider than the energy tolerance."""
    cv = r.energy_spread if r.energy_spread is not None else r.latency_spread
    text = "-" if cv is None else f"+/-{cv:.1%}"
    if r.unstable:
        text += " unstable"
    if r.throttled_rounds:
        text += f" throttled {r.throttled_rounds}/{len(r.round_throttled)}"
    return text


def model_names(cases: Iterable[CaseResult]) -> dict[str, str]:
    """case_id -> the model, and the axes on which the cases shown together differ
    (`deit_tiny_patch16_224.fb_in1k int8 b64`): four forms of one model are four names, and a
    ranking of distinct models stays bare (labels.case_axes)."""
    cases = list(cases)
    axes = case_axes(cases)
    return {c.case_id: " ".join([c.model, *axes[c.case_id]]) for c in cases}


def rank_key(r: CaseResult) -> tuple:
    """Best SAM first; lowest energy where SAM is unavailable; then fastest."""
    return (
        r.status != Status.OK,
        r.sam is None,
        -(r.sam or 0.0),
        r.energy_mj_per_image is None,
        r.energy_mj_per_image or 0.0,
        r.latency_ms_per_image or float("inf"),
    )


def ranked_groups(cases: Iterable[CaseResult]) -> dict[tuple[str, str, str], list[CaseResult]]:
    """Cases ranked together: same device, dataset and energy source. After a sensor fault a run can
    hold measured and estimated cases; an estimate is never ranked against a measurement."""
    groups: dict[tuple[str, str, str], list[CaseResult]] = defaultdict(list)
    not_run = []
    for r in cases:
        if r.status != Status.OK and r.energy_mj_per_image is None:
            not_run.append(r)  # no figure to keep apart: it joins its device x dataset's table below
        else:
            groups[(r.device, r.dataset, f"{r.energy_kind}/{r.energy_source}")].append(r)
    for r in not_run:
        # a case that did not run (skipped, failed) is listed with the cases it was requested beside
        key = next((k for k in sorted(groups, key=_group_order) if k[:2] == (r.device, r.dataset)), (r.device, r.dataset, f"{r.energy_kind}/{r.energy_source}"))
        groups[key].append(r)
    return {k: sorted(groups[k], key=rank_key) for k in sorted(groups, key=_group_order)}


def _group_order(key: tuple[str, str, str]) -> tuple:
    """Device, dataset, then measured energy before an estimate (the figures a reader trusts first)."""
    device, dataset, source = key
    return (device, dataset, source.startswith(f"{EnergyKind.ESTIMATE}/"), source)


def ranking_rows(cases: list[CaseResult], checks: dict[str, list[Check]] | None = None) -> tuple[list[str], list[list[int | str]]]:
    alpha = cases[0].sam_alpha if cases else 5.0
    headers = [
        "#",
        "model",
        "params (M)",
        "GMACs",
        "NetScore",
        "top-1 (%)",
        "top-1 from",
        "latency (ms/img)",
        "energy (mJ/img)",
        "spread",
        "power (W)",
        f"SAM{alpha:g}",
    ]
    memory = any(r.peak_memory_mb is not None for r in cases)
    if memory:
        headers.append("peak memory (MiB)")
    if checks is not None:
        headers += ["baseline (mJ/img)", "change", "noise", "verdict"]
    rows = []
    names = model_names(cases)
    for i, r in enumerate(cases, 1):
        row = [
            i if r.status == Status.OK else r.status,
            names[r.case_id],
            _num(r.params_m, ".2f"),
            _num(r.gmacs, ".3f"),
            _num(r.netscore, ".1f"),
            _num(r.top1, ".2f"),
            "-" if r.status != Status.OK and r.top1 is None else r.top1_source,
            _num(r.latency_ms_per_image, ".3g"),
            energy_cell(r),
            spread_cell(r),
            _num(r.power_w, ".3g") + (" (est.)" if r.power_w is not None and r.energy_kind == EnergyKind.ESTIMATE else ""),
            _num(r.sam, ".3f") + (" *" if r.sam is not None and r.energy_kind == EnergyKind.ESTIMATE else ""),
        ]
        if memory:
            row.append(_num(r.peak_memory_mb, ".0f"))
        if checks is not None:
            row += _baseline_cells(r, checks.get(r.case_id))
        rows.append(row)
    return headers, rows


def _baseline_cells(r: CaseResult, checks: list[Check] | None) -> list[int | str]:
    """Baseline, change, noise and verdict of a case's energy; the verdict cell names every metric
    that regressed. `checks` None: the case was not compared (new, or it did not finish)."""
    if checks is None:
        return ["-", "-", "-", Verdict.NEW if r.verdict == Verdict.NEW else "-"]
    energy = next((c for c in checks if c.metric == "energy"), None)
    regressed = ", ".join(f"{c.metric} regressed" for c in checks if c.verdict == Verdict.REGRESSED)
    return [
        _num(energy.baseline, ".4g") if energy else "-",
        f"{energy.change:+.1%}" if energy else "-",
        f"+/-{energy.noise:.1%}" if energy and energy.noise is not None else "-",
        regressed or (energy.label if energy else Verdict.UNCHANGED),
    ]


def ranking_tables(cases: Iterable[CaseResult], checks: dict[str, list[Check]] | None = None, fmt: str = "simple") -> list[tuple[str, str]]:
    """(title, table) per device x dataset."""
    out = []
    for (device, dataset, _source), group in ranked_groups(cases).items():
        headers, rows = ranking_rows(group, checks)
        first = group[0]
        if first.status == Status.OK or first.energy_mj_per_image is not None:
            title = f"E3P stage 2 on {device} / {dataset}: energy {first.energy_kind} by {first.energy_source} ({first.boundary})"
        else:
            title = f"E3P stage 2 on {device} / {dataset}: no case measured"
        out.append((title, tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)))
    return out


def footnotes(cases: Iterable[CaseResult]) -> list[str]:
    cases = list(cases)
    notes = []
    if any(r.energy_kind == EnergyKind.ESTIMATE for r in cases):
        notes.append("~ / est. / *: energy is an ESTIMATE (no power sensor readable), never compared with measured figures")
    sources = sorted(
        {
            (r.top1_ref_source or "timm results-imagenet.csv").removeprefix("reference (").removesuffix(")")
            for r in cases
            if r.top1_source == Top1Source.REFERENCE
        }
    )
    if sources:
        notes.append(f"top-1 from 'reference': published ImageNet-1k accuracy ({'; '.join(sources)}), not measured in this run")
    untrained = [r for r in cases if r.weights == "random"]
    if untrained:
        # One line for all: the reason is usually the same (offline), and the detail names one model as its example.
        notes.append(f"weights: {len(untrained)} of {len(cases)} case(s) ran with random weights, e.g. {untrained[0].weights_detail}")
    passes = max((r.passes for r in cases), default=1)
    notes.append(
        f"spread: coefficient of variation of the {passes} pass values of each case; noise: the smallest change the gate "
        "calls significant (p<0.01) against the baseline's passes and runs; unstable: either is wider than the energy tolerance"
    )
    if any(r.unstable for r in cases):
        notes.append(
            "unstable cases: their energy differences from other cases and from the baseline are within noise; no ranking or regression conclusion rests on them"
        )
    throttled = [r for r in cases if r.throttled_rounds]
    if throttled:
        notes.append(
            "throttled k/n: the device throttled in k of the case's n rounds ("
            + "; ".join(f"{r.case_id}: {', '.join(r.throttle_reasons)}" for r in throttled)
            + "); its figures are those of a throttled device"
        )
    notes += verdict_notes(cases)  # each verdict other than unchanged, and what changed since the baseline
    idle = [r.idle_power_w for r in cases if r.idle_power_w is not None]
    if idle:
        notes.append(f"idle power before the cases: {min(idle):.3g}-{max(idle):.3g} W (included in the energy, as MLPerf and the paper do)")
    for r in cases:
        if r.status != Status.OK:
            notes.append(f"{r.case_id}: {r.status}: {r.reason}")
        elif r.top1 is None and r.reason:
            notes.append(f"{r.case_id}: top-1 unavailable: {r.reason}")
    return notes


def stage1_table(rows: list[Stage1Row], fmt: str = "simple") -> str:
    ordered = sorted(rows, key=lambda r: (not r.kept, -(r.netscore or -1e9)))
    table = [
        [r.model, _num(r.params_m, ".2f"), _num(r.gmacs, ".3f"), _num(r.top1_ref, ".2f"), _num(r.netscore, ".1f"), "kept" if r.kept else "dropped", r.why]
        for r in ordered
    ]
    return tabulate(table, headers=["model", "params (M)", "GMACs", "ref top-1 (%)", "NetScore", "screening", "why"], tablefmt=fmt, disable_numparse=True)


def comparison_table(cmp: Comparison, fmt: str = "simple") -> str:
    rows = []
    for cid, checks in sorted(cmp.checks.items()):
        for c in checks:
            change = f"{c.change:+.2f} pt" if c.metric == "top1" else f"{c.change:+.1%}"
            noise = "-" if c.noise is None else f"+/-{c.noise:.1%}"
            rows.append(
                [
                    cid,
                    c.metric,
                    f"{c.baseline:.4g} {c.unit}",
                    f"{c.current:.4g} {c.unit}",
                    change,
                    noise,
                    "-" if c.p_value is None else f"{c.p_value:.2g}",
                    c.label,
                ]
            )
    for cid in cmp.new:
        rows.append([cid, "-", "-", "-", "-", "-", "-", "new (not in baseline)"])
    for cid in cmp.missing:
        rows.append([cid, "-", "-", "-", "-", "-", "-", "in baseline, not run"])
    for cid, why in cmp.refused.items():
        rows.append([cid, "-", "-", "-", "-", "-", "-", f"refused: {why}"])
    return tabulate(rows, headers=["case", "metric", "baseline", "current", "change", "noise", "p", "verdict"], tablefmt=fmt, disable_numparse=True)


def rails_table(cases: Iterable[CaseResult], fmt: str = "simple") -> str | None:
    """Per-rail energy per image (Jetson), the total rail marked; None when no case has rails."""
    with_rails = [r for r in cases if r.rails_mj_per_image]
    if not with_rails:
        return None
    names = sorted({n for r in with_rails for n in r.rails_mj_per_image})
    total = with_rails[0].total_rail
    headers = ["model"] + [f"{n} (total)" if n == total else n for n in names]
    labels = model_names(with_rails)
    rows = [[labels[r.case_id]] + [_num(r.rails_mj_per_image.get(n), ".4g") for n in names] for r in with_rails]
    note = f"the total used for SAM is {total}" if total and total != "sum" else "the total used for SAM is the sum of the rails"
    return f"per-rail energy (mJ/img); {note}\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def eval_pass_table(cases: Iterable[CaseResult], fmt: str = "simple") -> str | None:
    """The measured accuracy passes, data loading included, beside the steady-state figures of the
    same cases; None when no case evaluated a dataset."""
    passes = [r for r in cases if r.eval_images]
    if not passes:
        return None
    rows = []
    labels = model_names(passes)
    for r in passes:
        assert r.eval_images and r.eval_duration_s is not None  # the accuracy pass sets both
        per_image_ms = 1e3 * r.eval_duration_s / r.eval_images
        energy = None if r.eval_energy_mj is None else r.eval_energy_mj / r.eval_images
        steady = r.latency_ms_per_image
        rows.append(
            [
                labels[r.case_id],
                f"{r.eval_images}" + (" (subset)" if r.eval_subset else ""),
                _num(r.eval_duration_s, ".3g"),
                _num(per_image_ms, ".3g"),
                _num(steady, ".3g"),
                "-" if not steady else f"{steady / per_image_ms:.2f}",
                _energy_text(energy, r.energy_kind),
                energy_cell(r),
            ]
        )
    headers = ["model", "images", "pass (s)", "pass (ms/img)", "steady (ms/img)", "pass/steady throughput", "pass energy (mJ/img)", "steady energy (mJ/img)"]
    return "accuracy pass, data loading included\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
