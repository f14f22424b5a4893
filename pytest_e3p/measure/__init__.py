"""The measurement layer: what a case's figures are made of, on whatever device and sensor the run has.

- context: MeasureContext, the instruments one measurement reads (sensor, clock, synchronisation,
  thermal monitor), passed as one value to every protocol;
- protocols: the e3p protocol (timed rounds, median per pass) and the EdgeViT per-inference protocol;
- sustained: a case run back to back for minutes, cut into windows (drift, throttling);
- accuracy: the accuracy pass over a labelled dataset, data loading included;
- memory: peak memory of a case, from the device's own accounting;
- thermal: the round monitor (temperature, clocks, throttling per round) over hardware.thermal's sources.

Everything is imported on first use: the accuracy pass imports torch."""

from __future__ import annotations

from typing import Any

from ..lazy import lazy_attribute

__all__ = [
    "EvalResult",
    "MeasureContext",
    "MemoryPeak",
    "MemoryUnavailable",
    "PeakMemory",
    "Protocol",
    "Round",
    "RoundThermal",
    "SteadyState",
    "SustainedRun",
    "ThermalMonitor",
    "ThermalSettings",
    "Window",
    "check_budget",
    "evaluate",
    "make_loader",
    "open_thermal",
    "run_edgevit",
    "run_protocol",
    "run_sustained",
]

_LAZY = {
    "MeasureContext": "context",
    "Protocol": "protocols",
    "Round": "protocols",
    "SteadyState": "protocols",
    "run_protocol": "protocols",
    "run_edgevit": "protocols",
    "SustainedRun": "sustained",
    "Window": "sustained",
    "run_sustained": "sustained",
    "EvalResult": "accuracy",
    "evaluate": "accuracy",
    "make_loader": "accuracy",
    "MemoryPeak": "memory",
    "MemoryUnavailable": "memory",
    "PeakMemory": "memory",
    "check_budget": "memory",
    "RoundThermal": "thermal",
    "ThermalMonitor": "thermal",
    "ThermalSettings": "thermal",
    "open_thermal": "thermal",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
