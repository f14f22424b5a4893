"""Reporting: the sections of a run (sections.py), led by the answer in words (answer.py), printed as pytest's terminal summary and written
as report.md with its plots (markdown.py); the comparison table of `compare`; the dashboard of a
history folder (dashboard.py). The tables themselves are in terminal.py, variants.py, table3.py and
deployment.py.

The names below are loaded on first use: the EdgeViT tables import torch, and `python -m
pytest_e3p dashboard` must not wait for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .answer import answer_lines, answer_markdown
    from .dashboard import write_dashboard
    from .labels import case_labels, format_change
    from .markdown import ReportError, write_report
    from .sections import Section, SectionKind, case_sections, summary_sections, write_terminal
    from .terminal import comparison_table, ranking_tables, stage1_table

_HOME = {
    "answer_lines": "answer",
    "answer_markdown": "answer",
    "case_labels": "labels",
    "format_change": "labels",
    "write_dashboard": "dashboard",
    "ReportError": "markdown",
    "write_report": "markdown",
    "Section": "sections",
    "SectionKind": "sections",
    "case_sections": "sections",
    "summary_sections": "sections",
    "write_terminal": "sections",
    "comparison_table": "terminal",
    "ranking_tables": "terminal",
    "stage1_table": "terminal",
}

__all__ = [
    "ReportError",
    "Section",
    "SectionKind",
    "answer_lines",
    "answer_markdown",
    "case_labels",
    "case_sections",
    "comparison_table",
    "format_change",
    "ranking_tables",
    "stage1_table",
    "summary_sections",
    "write_dashboard",
    "write_report",
    "write_terminal",
]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
