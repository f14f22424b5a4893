"""The deployment profile tables: batch and resolution as axes, sustained runs.

- Latency against throughput: for each model (and variant, resolution) measured at several batch
  sizes, the latency of one batch at the smallest batch (a camera frame at batch 1) beside the
  throughput at the largest (offline processing), with energy per image at both.
- Resolution: energy and latency per image at each image size against the smallest, beside the
  growth of the pixel count (doubling 224 -> 448 quadruples the tokens, and attention grows with
  their square), so a user sees which models grow worse than linearly in pixels.
- Sustained runs (--e3p-sustained-s): per case, the drift of energy, latency, power and temperature
  between the first and last minute, and the windows that throttled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from ..hardware.sensors.base import EnergyKind
from ..storage.records import SustainedRecord
from ..storage.results import CaseResult, Status


def _key(c: CaseResult, *, drop: str) -> tuple:
    """What a row groups over: every axis but the one the table spreads out (`batch` or `size`)."""
    size = tuple(c.image_size)
    return (c.model, c.device, c.dataset, c.variant, c.energy_kind) + (() if drop == "size" else (size,)) + (() if drop == "batch" else (c.batch_size,))


def _spread_over(cases: Iterable[CaseResult], axis: str) -> list[list[CaseResult]]:
    """The measured cases grouped over every axis but `axis` ("batch" or "size"), for the groups
    that hold more than one value of it."""
    groups: dict[tuple, list[CaseResult]] = defaultdict(list)
    for c in cases:
        if c.status == Status.OK and c.latency_ms_per_image is not None:
            groups[_key(c, drop=axis)].append(c)
    value = (lambda c: c.batch_size) if axis == "batch" else (lambda c: c.image_size[-1])
    return [g for g in groups.values() if len({value(c) for c in g}) > 1]


def _energy(value: float | None, kind: str) -> str:
    if value is None:
        return "unavailable"
    return f"~{value:.4g} (est.)" if kind == EnergyKind.ESTIMATE else f"{value:.4g}"


def batch_table(cases: Iterable[CaseResult], fmt: str = "simple") -> str | None:
    """Latency at the smallest batch beside throughput at the largest; None without a batch axis."""
    rows = []
    for group in _spread_over(cases, "batch"):
        small, large = min(group, key=lambda c: c.batch_size), max(group, key=lambda c: c.batch_size)
        assert small.latency_ms_per_image is not None and large.latency_ms_per_image is not None  # filtered above
        rows.append(
            [
                small.model,
                small.variant,
                f"{small.image_size[-1]}",
                f"{small.batch_size}",
                f"{small.latency_ms_per_image * small.batch_size:.3g}",
                _energy(small.energy_mj_per_image, small.energy_kind),
                f"{large.batch_size}",
                f"{1000.0 / large.latency_ms_per_image:.4g}",
                _energy(large.energy_mj_per_image, large.energy_kind),
                f"{small.latency_ms_per_image / large.latency_ms_per_image:.2f}x",
            ]
        )
    if not rows:
        return None
    headers = [
        "model",
        "variant",
        "px",
        "small batch",
        "latency (ms/batch)",
        "energy (mJ/img)",
        "large batch",
        "throughput (img/s)",
        "energy (mJ/img)",
        "speed-up per image",
    ]
    return "latency (smallest batch) against throughput (largest batch)\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def resolution_table(cases: Iterable[CaseResult], fmt: str = "simple") -> str | None:
    """Energy and latency per image against resolution, as growth factors over the smallest size."""
    rows = []
    for group in _spread_over(cases, "size"):
        group = sorted(group, key=lambda c: c.image_size[-1])
        base = group[0]
        assert base.latency_ms_per_image is not None  # filtered above
        for c in group:
            assert c.latency_ms_per_image is not None
            pixels = (c.image_size[-1] * c.image_size[-2]) / (base.image_size[-1] * base.image_size[-2])
            energy = f"{c.energy_mj_per_image / base.energy_mj_per_image:.2f}x" if c.energy_mj_per_image is not None and base.energy_mj_per_image else "-"
            rows.append(
                [
                    c.model,
                    c.variant,
                    f"{c.batch_size}",
                    f"{c.image_size[-1]}",
                    f"{pixels:.2f}x",
                    f"{c.latency_ms_per_image:.3g}",
                    f"{c.latency_ms_per_image / base.latency_ms_per_image:.2f}x",
                    _energy(c.energy_mj_per_image, c.energy_kind),
                    energy,
                    "-" if c.gmacs is None or base.gmacs is None else f"{c.gmacs / base.gmacs:.2f}x",
                ]
            )
    if not rows:
        return None
    headers = ["model", "variant", "batch", "px", "pixels", "latency (ms/img)", "latency growth", "energy (mJ/img)", "energy growth", "MACs growth"]
    return "energy per image against resolution (growth over the smallest size)\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def _drift(run: SustainedRecord, attr: str, fmt: str) -> str:
    d = run.drift.get(attr)
    if d is None or d.first is None or d.last is None:
        return "-"
    change = d.relative_change
    return f"{d.first:{fmt}} -> {d.last:{fmt}}" + (f" ({change:+.1%})" if change is not None else "")


def sustained_table(cases: Iterable[CaseResult], fmt: str = "simple") -> str | None:
    """Per case with a sustained run: first -> last minute of each metric, and throttled windows."""
    rows = []
    span = None
    for c in cases:
        run = c.sustained
        if run is None:
            continue
        span = run.drift_span_s
        rows.append(
            [
                c.case_id,
                f"{run.duration_s:.0f}",
                f"{len(run.windows)}",
                _drift(run, "energy_mj_per_image", ".4g") + (" (est.)" if run.energy_kind == EnergyKind.ESTIMATE else ""),
                _drift(run, "latency_ms_per_image", ".3g"),
                _drift(run, "power_w", ".3g"),
                _drift(run, "temperature_c", ".1f"),
                f"{run.throttled_windows}",
            ]
        )
    if not rows:
        return None
    headers = ["case", "run (s)", "windows", "energy (mJ/img)", "latency (ms/img)", "power (W)", "temperature (C)", "throttled windows"]
    title = f"sustained runs: first -> last {span:g} s (a run shorter than two spans: first -> last window)" if span else "sustained runs"
    return title + "\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def profile_tables(cases: Iterable[CaseResult], fmt: str = "simple") -> list[str]:
    cases = list(cases)
    return [t for t in (batch_table(cases, fmt), resolution_table(cases, fmt), sustained_table(cases, fmt)) if t]
