"""Energy as carbon and cost: each case's footprint (CaseResult.footprint, made by run.record) per
million images, in the terminal, report.md and the dashboard.

Shown only where the user gave a factor (--e3p-carbon-g-per-kwh, --e3p-price-per-kwh): the kWh
alone restate the energy column. Cases are ranked by cost per million images, or by energy where no
price was given, within one energy kind and one set of factors: an estimated energy is never ranked
against a measured one, and every table says the factors it was worked out at.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from tabulate import tabulate

from ..hardware.sensors.base import EnergyKind
from ..storage.records import Footprint
from ..storage.results import CaseResult, Status
from ..text import markdown_cell
from .labels import case_labels

SECTION_TITLE = "Cost per million images"
FACTOR_OPTIONS = "--e3p-carbon-g-per-kwh/--e3p-price-per-kwh"


def has_factor(fp: Footprint | None) -> bool:
    return fp is not None and (fp.carbon_g_per_kwh is not None or fp.price_per_kwh is not None)


def factors_text(carbon_g_per_kwh: float | None, price_per_kwh: float | None) -> str:
    """`at 350 g CO2e/kWh and 0.3 per kWh, given by --e3p-carbon-g-per-kwh/--e3p-price-per-kwh`."""
    given = [f"{carbon_g_per_kwh:g} g CO2e/kWh" if carbon_g_per_kwh else "", f"{price_per_kwh:g} per kWh" if price_per_kwh else ""]
    return f"at {' and '.join(g for g in given if g)}, given by {FACTOR_OPTIONS}"


def _value(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    return f"~{value:.3g} (est.)" if kind == EnergyKind.ESTIMATE else f"{value:.3g}"


def _rank_key(c: CaseResult) -> tuple[float, float]:
    fp = c.footprint
    assert fp is not None  # only cases with a footprint are ranked
    return (fp.cost_per_million_images if fp.cost_per_million_images is not None else 0.0, fp.energy_kwh_per_million_images)


def footprint_groups(cases: Iterable[CaseResult]) -> dict[tuple[str, float | None, float | None], list[CaseResult]]:
    """(energy kind, carbon factor, price factor) -> its cases with a footprint and a factor, the
    cheapest (or, with no price, the least energy) first; measured energy before an estimate."""
    groups: dict[tuple[str, float | None, float | None], list[CaseResult]] = defaultdict(list)
    for c in cases:
        fp = c.footprint
        if c.status == Status.OK and fp is not None and has_factor(fp):
            groups[(fp.energy_kind, fp.carbon_g_per_kwh, fp.price_per_kwh)].append(c)
    order = sorted(groups, key=lambda k: (k[0] == EnergyKind.ESTIMATE, k[1] or 0.0, k[2] or 0.0))
    return {k: sorted(groups[k], key=_rank_key) for k in order}


def footprint_tables(cases: Iterable[CaseResult], fmt: str = "simple", escape: bool = False) -> list[tuple[str, str, list[str]]]:
    """(title, table, notes) per energy kind x factors; [] where no factor was given. `escape`:
    recorded strings made safe for Markdown cells."""
    cases = list(cases)
    cell = markdown_cell if escape else str
    out = []
    for (kind, carbon, price), group in footprint_groups(cases).items():
        labels = case_labels(group)
        headers = ["#", "case", "device", "energy (mJ/img)", "kWh / 1M img"]
        headers += ["g CO2e / 1M img"] if carbon else []
        headers += ["cost / 1M img"] if price else []
        rows = []
        for i, c in enumerate(group, 1):
            fp = c.footprint
            assert fp is not None
            row: list[Any] = [i, cell(labels[c.case_id]), cell(c.device), _value(c.energy_mj_per_image, kind), _value(fp.energy_kwh_per_million_images, kind)]
            row += [_value(fp.co2e_g_per_million_images, kind)] if carbon else []
            row += [_value(fp.cost_per_million_images, kind)] if price else []
            rows.append(row)
        energy = "ESTIMATED energy" if kind == EnergyKind.ESTIMATE else "measured energy"
        title = f"{SECTION_TITLE} ({energy}), {factors_text(carbon, price)}"
        notes = [f"ranked by {'cost' if price else 'energy'} per million images; the energy of one image times a million, at the steady state measured"]
        if kind == EnergyKind.ESTIMATE:
            notes.append("~ / est.: worked out from an ESTIMATED energy (no power sensor readable), never ranked against measured figures")
        boundaries = sorted({c.boundary for c in group if c.boundary})
        if len(boundaries) > 1:
            notes.append(f"the energy covers each device's own boundary ({'; '.join(cell(b) for b in boundaries)})")
        out.append((title, tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True), notes))
    return out


def footprint_markdown(cases: Iterable[CaseResult]) -> list[str]:
    """report.md's section: a table per energy kind x factors; [] where no factor was given."""
    tables = footprint_tables(cases, fmt="github", escape=True)
    if not tables:
        return []
    lines = [f"## {SECTION_TITLE}", ""]
    for title, table, notes in tables:
        lines += [f"*{markdown_cell(title)}*", "", table, ""] + [f"- {n}" for n in notes] + [""]
    return lines


# -- the dashboard's summary table (case dicts of the history, read as untrusted) ------------------


def _recorded(case: Mapping[str, Any]) -> Footprint | None:
    data = case.get("footprint")
    if not isinstance(data, dict):
        return None
    try:
        fp = Footprint.from_dict(data)
    except (TypeError, ValueError):
        return None
    return fp if isinstance(fp.energy_kwh_per_million_images, (int, float)) else None


def dashboard_shown(cases: Iterable[Mapping[str, Any]]) -> bool:
    """The dashboard's footprint column is there when a case of the latest runs has a factor."""
    return any(has_factor(_recorded(c)) for c in cases)


def dashboard_header() -> str:
    return '<th title="per million images, at the factors the run was given">kWh / g CO2e / cost per 1M img</th>'


def dashboard_cell(case: Mapping[str, Any], esc: Any) -> str:
    """The case's footprint, one figure a line, "est." where its energy is an estimate; `esc` is
    the page's HTML escape."""
    fp = _recorded(case)
    if fp is None:
        return '<td class="num">-</td>'
    est = ' <span class="badge est">est.</span>' if fp.energy_kind == EnergyKind.ESTIMATE else ""
    lines = [f"{fp.energy_kwh_per_million_images:.3g} kWh"]
    if isinstance(fp.co2e_g_per_million_images, (int, float)):
        lines.append(f"{fp.co2e_g_per_million_images:.3g} g CO2e")
    if isinstance(fp.cost_per_million_images, (int, float)):
        lines.append(f"{fp.cost_per_million_images:.3g} at {fp.price_per_kwh:g}/kWh")
    return f'<td class="num">{"<br>".join(esc(line) for line in lines)}{est}</td>'
