"""The report's sections, built once from the results; the terminal summary and report.md lay them out.

A section is a title, a table (formatted for its medium: "simple" for the terminal, "github" for
Markdown) or lines, and its notes. `case_sections` builds the list from a set of cases: the
terminal passes every case of the run, report.md one device x dataset x energy source at a time.
`write_terminal` prints a list as pytest's summary; markdown.write_report places each kind under
its headings, between its plots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..gate import Check
from ..models.screening import Stage1Row
from ..storage.results import CaseResult
from .answer import answer_lines
from .attribution import attribution_tables
from .deployment import profile_tables
from .footprint import footprint_tables
from .table3 import table3_tables, unavailable_lines
from .terminal import eval_pass_table, footnotes, rails_table, ranked_groups, ranking_tables, stage1_table
from .variants import variants_tables


class SectionKind(Enum):
    STAGE1 = "stage 1 screening"
    LINES = "lines"  # plain lines: the device's and the sensor's notes, what the run wrote
    RANKING = "stage 2 ranking"  # one per device x dataset x energy source
    RAILS = "per-rail energy"
    EVAL_PASS = "accuracy pass"
    VARIANTS = "variants"  # one per model x device x dataset x batch x size with variants
    PROFILE = "deployment profile"  # batch, resolution, sustained runs
    FOOTPRINT = "carbon and cost"  # per million images, where a factor was given (footprint.py)
    TABLE3 = "EdgeViT Table 3"
    TABLE3_UNAVAILABLE = "Table 3 models not available"
    MISSING = "baseline cases not run"
    ATTRIBUTION = "where the energy goes"  # --e3p-attribution: one per case (report/attribution.py)
    FOOTNOTES = "footnotes"
    ANSWER = "the answer"  # in words, after the tables: which model and form is most efficient (answer.py)


@dataclass(frozen=True)
class Section:
    kind: SectionKind
    title: str = ""  # a heading, or the caption of a table that has no heading of its own
    table: str = ""
    notes: tuple[str, ...] = ()  # lines under the table, or the section's lines
    group: tuple[str, str, str] = ("", "", "")  # a ranking's device, dataset and energy source


STAGE1_TITLE = "E3P stage 1: NetScore screening (device-agnostic)"
ANSWER_TITLE = "E3P answer: the most energy-efficient model on each device"


def _captioned(kind: SectionKind, text: str | None) -> list[Section]:
    """A table whose first line is its caption (rails_table and the like), as a section."""
    if not text:
        return []
    caption, table = text.split("\n", 1)
    return [Section(kind, caption, table)]


def case_sections(
    cases: Iterable[CaseResult],
    checks: dict[str, list[Check]] | None = None,
    fmt: str = "simple",
    *,
    table3_set: bool = False,
    baseline_ids: Iterable[str] | None = None,
) -> list[Section]:
    """The sections of these cases, in the terminal's order. `checks`: the comparison with a
    baseline (a column of the rankings); `table3_set`: the run measured the edgevit-table3 set (the
    paper's models timm lacks are named); `baseline_ids`: the baseline's cases, to name those not run."""
    cases = list(cases)
    groups = list(ranked_groups(cases))
    out = [Section(SectionKind.RANKING, title, table, group=key) for key, (title, table) in zip(groups, ranking_tables(cases, checks, fmt))]
    out += _captioned(SectionKind.RAILS, rails_table(cases, fmt)) + _captioned(SectionKind.EVAL_PASS, eval_pass_table(cases, fmt))
    out += [Section(SectionKind.VARIANTS, title, table, tuple(notes)) for title, table, notes in variants_tables(cases, fmt)]
    out += [s for text in profile_tables(cases, fmt) for s in _captioned(SectionKind.PROFILE, text)]
    out += [Section(SectionKind.FOOTPRINT, title, table, tuple(notes)) for title, table, notes in footprint_tables(cases, fmt)]
    for title, table, notes in table3_tables(cases, fmt):
        out.append(Section(SectionKind.TABLE3, title, table, tuple(notes)))
        if table3_set:
            out.append(Section(SectionKind.TABLE3_UNAVAILABLE, notes=tuple(unavailable_lines())))
    out += [Section(SectionKind.ATTRIBUTION, title, table, tuple(notes)) for title, table, notes in attribution_tables(cases, fmt)]
    if baseline_ids is not None:
        missing = sorted(set(baseline_ids) - {c.case_id for c in cases})
        if missing:
            out.append(Section(SectionKind.MISSING, notes=(f"in the baseline but not run: {', '.join(missing)}",)))
    out.append(Section(SectionKind.FOOTNOTES, notes=tuple(footnotes(cases))))
    return out


def summary_sections(
    stage1: Sequence[Stage1Row],
    cases: Iterable[CaseResult],
    checks: dict[str, list[Check]] | None = None,
    *,
    lead: Sequence[str] = (),
    closing: Sequence[str] = (),
    table3_set: bool = False,
    baseline_ids: Iterable[str] | None = None,
    budget_mj: float | None = None,
) -> list[Section]:
    """The end-of-run summary: the screening, then (where cases ran) `lead` lines, the cases'
    sections, the answer in words (with the most accurate case within `budget_mj` mJ/img when
    set) and `closing` lines (what the run wrote)."""
    out = [Section(SectionKind.STAGE1, STAGE1_TITLE, stage1_table(list(stage1)))] if stage1 else []
    cases = list(cases)
    if not cases:
        return out
    out.append(Section(SectionKind.LINES, notes=tuple(lead)))
    out += case_sections(cases, checks, table3_set=table3_set, baseline_ids=baseline_ids)
    out.append(Section(SectionKind.ANSWER, ANSWER_TITLE, notes=tuple(answer_lines(cases, budget_mj))))
    out.append(Section(SectionKind.LINES, notes=tuple(closing)))
    return out


class TerminalWriter(Protocol):
    """What write_terminal needs of pytest's terminal reporter."""

    def write_sep(self, sep: str, title: str) -> object: ...

    def write_line(self, line: str) -> object: ...


# Sections under a separator line of their own; other tables print their caption above them.
TERMINAL_SEPARATOR = {SectionKind.STAGE1: "=", SectionKind.RANKING: "=", SectionKind.TABLE3: "=", SectionKind.VARIANTS: "-", SectionKind.ANSWER: "="}


def write_terminal(tr: TerminalWriter, sections: Iterable[Section]) -> None:
    """Print the sections in their order, as pytest's terminal summary."""
    for s in sections:
        if s.kind in TERMINAL_SEPARATOR:
            tr.write_sep(TERMINAL_SEPARATOR[s.kind], s.title)
            if s.table:
                tr.write_line(s.table)
        elif s.table:
            tr.write_line(f"{s.title}\n{s.table}")
        for line in s.notes:
            tr.write_line(line)


def by_kind(sections: Iterable[Section]) -> dict[SectionKind, list[Section]]:
    """The sections of each kind, in their order (an empty list for a kind with none)."""
    out: dict[SectionKind, list[Section]] = {kind: [] for kind in SectionKind}
    for s in sections:
        out[s.kind].append(s)
    return out
