"""A case as flat named values, units in the names: the columns of the CSV, and the params and
metrics of an MLflow run, so both name a figure the same way.

Relative figures (spread, change against the baseline) are percentages; MiB is written _mb, as in
the results file. A value is None where the case has no such figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..storage.results import CaseResult


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100.0


def _footprint(name: str) -> Callable[[CaseResult], Any]:
    return lambda c: getattr(c.footprint, name) if c.footprint is not None else None


def _memory_peak(c: CaseResult) -> float | None:
    return c.peak_memory_mb if c.peak_memory_mb is not None else (c.memory.peak_mb if c.memory is not None else None)


# (column, value): the order a reader scans a row in. Units in the names; MiB is written _mb, as in
# the results file.
COLUMNS: list[tuple[str, Callable[[CaseResult], Any]]] = [
    ("case_id", lambda c: c.case_id),
    ("status", lambda c: str(c.status)),
    ("reason", lambda c: c.reason),
    # the conditions
    ("model", lambda c: c.model),
    ("variant", lambda c: c.variant),
    ("device", lambda c: c.device),
    ("dataset", lambda c: c.dataset),
    ("batch_size", lambda c: c.batch_size),
    ("image_size", lambda c: "x".join(str(s) for s in c.image_size)),
    ("precision", lambda c: c.precision),
    ("threads", lambda c: c.threads),
    ("protocol", lambda c: c.protocol),
    ("weights", lambda c: c.weights),
    ("passes", lambda c: c.passes),
    # the figures
    ("energy_mj_per_image", lambda c: c.energy_mj_per_image),
    ("latency_ms_per_image", lambda c: c.latency_ms_per_image),
    ("power_w", lambda c: c.power_w),
    ("idle_power_w", lambda c: c.idle_power_w),
    ("energy_spread_pct", lambda c: _pct(c.energy_spread)),
    ("latency_spread_pct", lambda c: _pct(c.latency_spread)),
    ("energy_mj_per_image_sd", lambda c: c.energy_mj_per_image_sd),
    ("latency_ms_per_image_sd", lambda c: c.latency_ms_per_image_sd),
    ("energy_raw_mj_per_image", lambda c: c.energy_raw_mj_per_image),
    ("background_power_w", lambda c: c.background_power_w),
    ("top1_pct", lambda c: c.top1),
    ("top5_pct", lambda c: c.top5),
    ("top1_ref_pct", lambda c: c.top1_ref),
    ("agreement_top1_pct", lambda c: c.agreement_top1_pct),
    ("params_millions", lambda c: c.params_m),
    ("gmacs", lambda c: c.gmacs),
    ("netscore", lambda c: c.netscore),
    ("sam", lambda c: c.sam),
    ("efficiency_pct_per_mj", lambda c: c.efficiency_pct_per_mj),
    ("peak_memory_mb", _memory_peak),
    ("memory_growth_mb", lambda c: c.memory_growth_mb),
    ("temperature_c_max", lambda c: c.temperature_c_max),
    ("clock_ratio_min", lambda c: c.clock_ratio_min),
    ("throttled_rounds", lambda c: c.throttled_rounds),
    ("prepare_s", lambda c: c.prepare_s),
    ("eval_images", lambda c: c.eval_images),
    ("eval_energy_mj", lambda c: c.eval_energy_mj),
    ("eval_duration_s", lambda c: c.eval_duration_s),
    # the footprint at the factors the run was given (empty where a factor was not)
    ("energy_kwh_per_million_images", _footprint("energy_kwh_per_million_images")),
    ("carbon_g_per_kwh", _footprint("carbon_g_per_kwh")),
    ("co2e_g_per_million_images", _footprint("co2e_g_per_million_images")),
    ("price_per_kwh", _footprint("price_per_kwh")),
    ("cost_per_million_images", _footprint("cost_per_million_images")),
    # the pass values, in the order measured
    ("energy_mj_per_image_passes", lambda c: c.energy_mj_per_image_passes),
    ("latency_ms_per_image_passes", lambda c: c.latency_ms_per_image_passes),
    # against the baseline
    ("verdict", lambda c: c.verdict),
    ("energy_change_vs_baseline_pct", lambda c: _pct(c.change_vs_baseline)),
    ("energy_noise_vs_baseline_pct", lambda c: _pct(c.noise_vs_baseline)),
    ("unstable", lambda c: c.unstable),
    ("changes_vs_baseline", lambda c: c.changes_vs_baseline),
    # the sources
    ("energy_kind", lambda c: c.energy_kind),
    ("energy_source", lambda c: c.energy_source),
    ("boundary", lambda c: c.boundary),
    ("top1_source", lambda c: str(c.top1_source)),
    ("top1_ref_source", lambda c: c.top1_ref_source),
    ("memory_method", lambda c: c.memory_method),
]

# The columns that are the conditions of a measurement (MLflow params), not its figures (metrics)
CONDITIONS = ("model", "variant", "device", "dataset", "batch_size", "image_size", "precision", "threads", "protocol", "weights", "passes")
# The sources of the figures: measured or estimated energy, reference or measured top-1
SOURCES = ("energy_kind", "energy_source", "boundary", "top1_source", "top1_ref_source", "memory_method")
