"""The regression gate: tolerances, what makes two results comparable, the statistics (stats.py),
the checks of a case against its baseline and the verdict they add up to (verdict.py).

Everything outside gate/ imports these names; the modules' other names are their own.
"""

from .baseline import (
    DEFAULT_ENERGY_TOLERANCE,
    DEFAULT_TOLERANCES,
    Check,
    Comparison,
    IncompatibleBaseline,
    ToleranceError,
    Tolerances,
    check_tolerance,
    compare_case,
    compare_files,
    decide,
    decide_top1,
    device_incompatibility,
    gate_feasibility,
    merge_runs,
    parse_tolerances,
    priors,
    protocol_incompatibility,
    supported_tolerance_note,
)
from .stats import ALPHA, Prior, spread
from .verdict import CaseVerdict, Circumstances, Throttling, Verdict, final_verdict

__all__ = [
    "ALPHA",
    "DEFAULT_ENERGY_TOLERANCE",
    "DEFAULT_TOLERANCES",
    "CaseVerdict",
    "Check",
    "Circumstances",
    "Comparison",
    "IncompatibleBaseline",
    "Prior",
    "Throttling",
    "ToleranceError",
    "Tolerances",
    "Verdict",
    "check_tolerance",
    "compare_case",
    "compare_files",
    "decide",
    "decide_top1",
    "device_incompatibility",
    "final_verdict",
    "gate_feasibility",
    "merge_runs",
    "parse_tolerances",
    "priors",
    "protocol_incompatibility",
    "spread",
    "supported_tolerance_note",
]
