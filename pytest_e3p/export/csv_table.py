"""`--e3p-export csv[=PATH]`: one row per case, for a spreadsheet or pandas.

Every case is a row, a skipped or failed one too (its status and reason say why it holds no figures).
Each figure's unit is in its column name; the conditions, the verdict and the sources (measured or
estimated energy, reference or measured top-1) are columns beside them, so a row read on its own says
what it is. Per-pass values are one column each, the values joined by ";". Relative figures (spread,
change against the baseline) are percentages here, as a reader of a table expects.

Written with the standard csv module (RFC 4180, UTF-8, a header row) and atomically, so a spreadsheet
that has the file open never sees half of it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..storage.files import write_atomic
from ..storage.results import CaseResult, ResultsFile
from .context import ExportContext
from .fields import COLUMNS

# A cell a spreadsheet would run as a formula (OWASP's CSV injection list): a recorded string (a
# model name, a skip reason) is data, so it is quoted with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):  # pass values; the lines of what changed since the baseline
        return (";" if all(isinstance(v, (int, float)) for v in value) else "; ").join(_plain(v) for v in value)
    return str(value)


def cell(value: Any) -> str:
    """One value as the CSV holds it: "" for none, 6 significant digits, lists joined by ";", and
    a recorded string that a spreadsheet would take for a formula quoted."""
    text = _plain(value)
    is_text = isinstance(value, str) or (isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value))
    return "'" + text if is_text and text.startswith(_FORMULA_START) else text


def rail_columns(cases: list[CaseResult]) -> list[str]:
    """The rails any case measured (Jetson boards), as energy_mj_per_image columns."""
    return sorted({rail for c in cases for rail in c.rails_mj_per_image})


def rows(rf: ResultsFile) -> tuple[list[str], list[list[str]]]:
    """The header and a row per case, in case-id order."""
    cases = [rf.cases[cid] for cid in sorted(rf.cases)]
    rails = rail_columns(cases)
    header = [name for name, _ in COLUMNS] + [f"rail_{r}_mj_per_image" for r in rails]
    body = [[cell(get(c)) for _, get in COLUMNS] + [cell(c.rails_mj_per_image.get(r)) for r in rails] for c in cases]
    return header, body


def export(rf: ResultsFile, dest: str, ctx: ExportContext) -> str:
    header, body = rows(rf)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(body)
    write_atomic(Path(dest), out.getvalue())
    return f"{len(body)} case(s) written to {dest}"
