"""Power sensors behind one interface (see base.py), one module per backend."""

from __future__ import annotations

import time

from .base import (
    ESTIMATE,
    MEASURED,
    EnergyReading,
    EnergySensor,
    EnergyWindow,
    SamplingSensor,
    SensorFault,
    SensorInfo,
    SensorUnavailable,
    window,
)
from .null import UNAVAILABLE, NullSensor, measures_energy

__all__ = [
    "ESTIMATE",
    "MEASURED",
    "EnergyReading",
    "EnergySensor",
    "EnergyWindow",
    "SamplingSensor",
    "SensorFault",
    "SensorInfo",
    "SensorUnavailable",
    "UNAVAILABLE",
    "NullSensor",
    "measures_energy",
    "measure_update_period_s",
    "window",
]


def measure_update_period_s(sensor: EnergySensor, timeout_s: float = 3.0, changes_wanted: int = 6) -> float | None:
    """How often the hardware value behind a sensor changes, observed by polling its raw value.

    None when it did not change at least twice within timeout_s (an idle counter can do that)."""
    stamps: list[float] = []
    last = sensor.raw_value()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(stamps) < changes_wanted:
        value = sensor.raw_value()
        if value != last:
            stamps.append(time.monotonic())
            last = value
        time.sleep(0.0005)
    if len(stamps) < 3:
        return None
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)
