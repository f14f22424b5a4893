"""A clearly labelled *estimate* of CPU energy where no sensor can be read (a VM, a laptop without root).

energy = CPU time of this process (all its threads) x an assumed power per busy core. It follows the
work the model does, so it moves when a change makes the model slower, but it is not a measurement:
results carry kind "estimate", and an estimate is never compared with a measured figure.
"""

from __future__ import annotations

import time

from .base import ESTIMATE, EnergyReading, EnergySensor, SensorInfo

DEFAULT_W_PER_CORE = 10.0  # a busy server/desktop core at load: package TDP / cores, roughly

HINT = (
    "for a real CPU reading, make RAPL readable (sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj) "
    "on a machine that has it"
)


class CpuTimeEstimate(EnergySensor):
    def __init__(self, w_per_core: float = DEFAULT_W_PER_CORE):
        self.w_per_core = w_per_core
        self.info = SensorInfo(
            "cpu-time-estimate",
            ESTIMATE,
            f"estimate: process CPU time x {w_per_core:g} W per busy core (assumed, not measured)",
            "s (CPU time)",
            0.01,
        )
        self._start_cpu_s = 0.0

    def start(self) -> None:
        self._start_cpu_s = time.process_time()

    def read(self) -> EnergyReading:
        cpu_s = time.process_time() - self._start_cpu_s
        return EnergyReading(time.monotonic(), cpu_s * self.w_per_core * 1000.0)
