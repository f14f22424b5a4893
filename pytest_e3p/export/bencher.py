"""`--e3p-export bencher[=PATH]`: Bencher Metric Format (BMF) JSON, for `bencher run --adapter json --file PATH`.

BMF is `{benchmark: {measure: {"value", "lower_value", "upper_value"}}}` (https://bencher.dev/docs/reference/bencher-metric-format).
The benchmark is the case id; the measures are `energy-mj` (per image) and `latency-ms` (per image):
the value is the case's median over its passes and the bounds are the lowest and highest pass value,
so Bencher's plots show the spread the gate saw. An estimated energy goes under its own measure,
`energy-mj-estimate`, so Bencher never compares an estimate against a measurement. Only measured
cases (status ok) are written: a skipped, failed or invalid case holds no figure worth tracking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..storage.files import write_atomic
from ..storage.results import OK, CaseResult, ResultsFile
from .context import ExportContext

ENERGY, ENERGY_ESTIMATE, LATENCY = "energy-mj", "energy-mj-estimate", "latency-ms"


def _metric(value: float | None, passes: list[float]) -> dict[str, float] | None:
    if value is None:
        return None
    metric = {"value": float(value)}
    if passes:
        metric.update(lower_value=float(min(passes)), upper_value=float(max(passes)))
    return metric


def measures(c: CaseResult) -> dict[str, dict[str, float]]:
    """A case's BMF measures (those it has a figure for)."""
    energy_slug = ENERGY_ESTIMATE if c.energy_kind == "estimate" else ENERGY
    out = {}
    if c.energy_kind in ("measured", "estimate"):
        energy = _metric(c.energy_mj_per_image, c.energy_mj_per_image_passes)
        if energy is not None:
            out[energy_slug] = energy
    latency = _metric(c.latency_ms_per_image, c.latency_ms_per_image_passes)
    if latency is not None:
        out[LATENCY] = latency
    return out


def bmf(rf: ResultsFile) -> dict[str, Any]:
    """The results file as BMF: its measured cases, by case id."""
    doc = {}
    for cid in sorted(rf.cases):
        c = rf.cases[cid]
        if c.status == OK:
            m = measures(c)
            if m:
                doc[cid] = m
    return doc


def export(rf: ResultsFile, dest: str, ctx: ExportContext) -> str:
    doc = bmf(rf)
    write_atomic(Path(dest), json.dumps(doc, indent=2, sort_keys=True) + "\n")
    left = len(rf.cases) - len(doc)
    return f"{len(doc)} case(s) written to {dest}" + (f" ({left} not measured left out)" if left else "")
