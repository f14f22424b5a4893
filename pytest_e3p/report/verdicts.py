"""The gate's verdicts as the reports show them: the word with its reason, and beside every verdict
other than "unchanged" what the results files record as changed since the baseline
(CaseResult.changes_vs_baseline, made by gate.changes). The terminal's notes, report.md's section
(which CI's job summary is) and the dashboard's badge read them from here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..gate import Verdict, verdict_label
from ..storage.results import CaseResult, Status

# verdicts a reader wants explained: the ones where something moved, or might have
EXPLAINED = (Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.WITHIN_NOISE)


def case_label(case: CaseResult | Mapping[str, Any]) -> str:
    """A case's recorded verdict with its reason ("inconclusive: noise +/-12.0% > change +8.0%"),
    from a CaseResult or a results file's case dict."""
    get = case.get if isinstance(case, Mapping) else lambda key: getattr(case, key, None)
    verdict, change, noise = str(get("verdict") or ""), get("change_vs_baseline"), get("noise_vs_baseline")
    # inconclusive beyond its noise: only throttling (this run's, not the baseline's) makes it so
    beyond_noise = change is not None and noise is not None and noise < abs(change)
    throttled = verdict == Verdict.INCONCLUSIVE and bool(get("throttled_rounds")) and (noise is None or beyond_noise)
    return verdict_label(verdict, change, noise, throttled)


def changes_text(case: CaseResult | Mapping[str, Any]) -> str:
    """What changed since the baseline, joined ("" for a verdict not explained)."""
    get = case.get if isinstance(case, Mapping) else lambda key: getattr(case, key, None)
    if get("verdict") not in EXPLAINED:
        return ""
    return "; ".join(get("changes_vs_baseline") or [])


def explained(cases: Iterable[CaseResult]) -> list[CaseResult]:
    return [c for c in cases if c.status == Status.OK and c.verdict in EXPLAINED]


def terminal_lines(cases: Iterable[CaseResult]) -> list[str]:
    """One note per case whose verdict is not "unchanged": the verdict and what changed."""
    return [f"{c.case_id}: {case_label(c)}; since the baseline: {changes_text(c) or 'not recorded'}" for c in explained(cases)]


def markdown_section(cases: Iterable[CaseResult], esc: Any = str) -> list[str]:
    """report.md's "Against the baseline" table (also CI's job summary); [] where nothing to explain.
    `esc` escapes recorded text for a Markdown table cell."""
    rows = explained(cases)
    if not rows:
        return []
    lines = ["### Against the baseline", "", "| case | energy change | noise | verdict | what changed since the baseline |", "| --- | --- | --- | --- | --- |"]
    for c in rows:
        change = "-" if c.change_vs_baseline is None else f"{c.change_vs_baseline:+.1%}"
        noise = "-" if c.noise_vs_baseline is None else f"+/-{c.noise_vs_baseline:.1%}"
        lines.append(f"| {esc(c.case_id)} | {change} | {noise} | {esc(case_label(c))} | {esc(changes_text(c) or 'not recorded')} |")
    return [*lines, ""]
