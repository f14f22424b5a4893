"""`--e3p-export openmetrics[=PATH | =http://HOST:PORT]`: the results as Prometheus metrics.

A PATH (default: next to the results file, `results.prom`) gets the Prometheus text exposition format
for node_exporter's textfile collector, written as its documentation asks: to a temporary file in the
same folder, then renamed over the old one, so the collector never reads half a file. An
http(s):// address is a Pushgateway: the metrics are pushed (HTTP PUT, which replaces the group's
previous run) under job "pytest_e3p", grouped by device (/metrics/job/pytest_e3p/device/NAME).

Naming follows Prometheus' conventions: base units (joules, seconds, bytes, ratios from 0 to 1) as
the name's suffix, so `e3p_energy_per_image_joules` is the results file's energy_mj_per_image / 1000.
Every metric carries the labels model, variant, device, dataset, batch, size and energy_kind
("measured" or "estimate": a dashboard must filter an estimate out of a comparison with a
measurement). A reference top-1 (the published figure) is a metric of its own, never the measured one.
Only measured cases (status ok) are exported; the textfile collector allows no timestamps, so the
run's time is a metric (`e3p_results_created_timestamp_seconds`).
"""

from __future__ import annotations

import urllib.error
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..metrics import MJ_PER_KWH
from ..storage.files import write_atomic
from ..storage.results import MEASURED_TOP1, OK, REFERENCE_TOP1, CaseResult, ResultsFile
from ..text import terminal_safe
from .context import ExportContext
from .errors import ExportError, require

JOB = "pytest_e3p"
LABELS = ("model", "variant", "device", "dataset", "batch", "size", "energy_kind")


def _scaled(attr: str, factor: float) -> Callable[[CaseResult], float | None]:
    def get(c: CaseResult) -> float | None:
        value = getattr(c, attr)
        return None if value is None else float(value) * factor

    return get


def _top1_measured(c: CaseResult) -> float | None:
    return c.top1 / 100.0 if c.top1 is not None and c.top1_source == MEASURED_TOP1 else None


def _top1_reference(c: CaseResult) -> float | None:
    """The published top-1: the case's top1 where it was taken from the reference, else top1_ref."""
    value = c.top1 if c.top1_source == REFERENCE_TOP1 and c.top1 is not None else c.top1_ref
    return None if value is None else value / 100.0


def _footprint(attr: str, factor: float = 1.0) -> Callable[[CaseResult], float | None]:
    def get(c: CaseResult) -> float | None:
        value = getattr(c.footprint, attr) if c.footprint is not None else None
        return None if value is None else float(value) * factor

    return get


def _regressed(c: CaseResult) -> float | None:
    return None if not c.verdict else float(c.verdict == "regressed")


J_PER_KWH = MJ_PER_KWH / 1e3  # the metrics are in base units: joules

# (name, help, value of a case: None leaves the case out of that metric)
METRICS: list[tuple[str, str, Callable[[CaseResult], float | None]]] = [
    ("e3p_energy_per_image_joules", "energy per image, median over the passes (energy_kind says measured or estimated)", _scaled("energy_mj_per_image", 1e-3)),
    ("e3p_latency_per_image_seconds", "latency per image, median over the passes", _scaled("latency_ms_per_image", 1e-3)),
    ("e3p_power_watts", "average power over the rounds", _scaled("power_w", 1.0)),
    ("e3p_energy_per_image_spread_ratio", "coefficient of variation of the per-pass energy per image", _scaled("energy_spread", 1.0)),
    ("e3p_latency_per_image_spread_ratio", "coefficient of variation of the per-pass latency per image", _scaled("latency_spread", 1.0)),
    ("e3p_top1_accuracy_ratio", "top-1 accuracy measured by this run's accuracy pass", _top1_measured),
    ("e3p_top1_reference_accuracy_ratio", "published top-1 of these weights (not measured here)", _top1_reference),
    ("e3p_peak_memory_bytes", "peak memory while the case ran", _scaled("peak_memory_mb", 2.0**20)),
    ("e3p_energy_change_vs_baseline_ratio", "relative change of energy per image against the baseline", _scaled("change_vs_baseline", 1.0)),
    ("e3p_regressed", "1 when the gate found a regression against the baseline, 0 when compared without one", _regressed),
    ("e3p_energy_per_million_images_joules", "energy of a million images", _footprint("energy_kwh_per_million_images", J_PER_KWH)),
    ("e3p_co2e_per_million_images_grams", "CO2e of a million images at the grid intensity the run was given", _footprint("co2e_g_per_million_images")),
    ("e3p_cost_per_million_images", "cost of a million images at the price per kWh the run was given (its currency)", _footprint("cost_per_million_images")),
]


def labels(c: CaseResult) -> dict[str, str]:
    return {
        "model": c.model,
        "variant": c.variant,
        "device": c.device,
        "dataset": c.dataset,
        "batch": str(c.batch_size),
        "size": str(c.image_size[-1]) if c.image_size else "",
        "energy_kind": c.energy_kind,
    }


def _created_s(rf: ResultsFile) -> float | None:
    try:
        return datetime.fromisoformat(rf.created).timestamp() if rf.created else None
    except ValueError:
        return None


def registry(rf: ResultsFile, cases: list[CaseResult]) -> Any:
    """A prometheus_client CollectorRegistry holding `cases`' figures."""
    prom = require("prometheus_client", "prometheus-client", "prometheus")
    reg = prom.CollectorRegistry()
    for name, help_text, get in METRICS:
        values = [(c, v) for c in cases if (v := get(c)) is not None]
        if not values:
            continue
        gauge = prom.Gauge(name, help_text, LABELS, registry=reg)
        for c, v in values:
            gauge.labels(**labels(c)).set(float(f"{v:.6g}"))  # the file's precision, not 0.006500000000000001
    created = _created_s(rf)
    if created is not None:
        devices = sorted({c.device for c in cases})
        gauge = prom.Gauge("e3p_results_created_timestamp_seconds", "when the run that measured these results began", ["device"], registry=reg)
        for device in devices:
            gauge.labels(device=device).set(created)
    return reg


def measured(rf: ResultsFile) -> list[CaseResult]:
    return [rf.cases[cid] for cid in sorted(rf.cases) if rf.cases[cid].status == OK]


def is_gateway(dest: str) -> bool:
    return dest.startswith(("http://", "https://"))


def export(rf: ResultsFile, dest: str, ctx: ExportContext) -> str:
    cases = measured(rf)
    if is_gateway(dest):
        return push(rf, cases, dest, ctx.timeout_s)
    prom = require("prometheus_client", "prometheus-client", "prometheus")
    if not dest.endswith(".prom"):
        # node_exporter's textfile collector reads *.prom only: a file it would never read is no export
        raise ExportError("node_exporter's textfile collector reads only *.prom files: name the file PATH.prom")
    write_atomic(Path(dest), prom.generate_latest(registry(rf, cases)))
    return f"{len(cases)} case(s) written to {dest}"


def push(rf: ResultsFile, cases: list[CaseResult], gateway: str, timeout_s: float) -> str:
    """One PUT per device to the Pushgateway: a device's group holds this run only."""
    prom = require("prometheus_client", "prometheus-client", "prometheus")
    by_device: dict[str, list[CaseResult]] = defaultdict(list)
    for c in cases:
        by_device[c.device].append(c)
    for device, group in sorted(by_device.items()):
        try:
            prom.push_to_gateway(gateway, job=JOB, registry=registry(rf, group), grouping_key={"device": device}, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            raise ExportError(f"the Pushgateway refused the push: HTTP {exc.code} {terminal_safe(exc.reason)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ExportError(
                f"no Pushgateway answered ({terminal_safe(reason)}): start it, or fix the address in --e3p-export openmetrics=http://HOST:PORT"
            ) from None
    devices = ", ".join(sorted(by_device)) or "no device"
    return f"{len(cases)} case(s) pushed to the Pushgateway at {gateway} (job {JOB}, device {devices})"
