"""The sensor of a machine without one: it measures nothing and says why.

A null object in place of `None` (Zeus's EmptySoC plays the same part), so the session, the
protocols and the reports read `sensor.info` alike everywhere. It never gives a number: its energy
kind and source are "unavailable", its boundary is the note saying why, and reading it is an error,
so no code can turn its absence into joules.
"""

from __future__ import annotations

from .base import EnergyKind, EnergyReading, EnergySensor, SensorInfo, SensorUnavailable

UNAVAILABLE = EnergyKind.UNAVAILABLE  # the energy kind and source of a run without a sensor


class NullSensor(EnergySensor):
    """No power sensor; `note` says why (it becomes the boundary every record states)."""

    def __init__(self, note: str = "no power sensor"):
        self.note = note
        # update period 0: rounds are as long as the protocol asks, and any inference "resolves"
        self.info = SensorInfo(UNAVAILABLE, UNAVAILABLE, note, "", 0.0)

    def read(self) -> EnergyReading:
        raise SensorUnavailable(f"energy is unavailable: {self.note}")


def measures_energy(sensor: EnergySensor) -> bool:
    """Whether reading `sensor` gives energy: every sensor but the null one."""
    return sensor.info.kind != UNAVAILABLE
