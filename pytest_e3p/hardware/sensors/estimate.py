"""A clearly labelled *estimate* of CPU energy where no sensor can be read (a VM, a laptop without root).

energy = wall time x an assumed static power of the package + CPU time of this process (all its
threads) x an assumed power per busy core. The static term is what a package draws whether its cores
are busy or not, so running longer costs energy even on fewer cores (one thread instead of two is
slower *and* dearer, as on real CPUs); the dynamic term follows the work. It is not a measurement:
results carry kind "estimate", and an estimate is never compared with a measured figure.
"""

from __future__ import annotations

import time

from .base import ESTIMATE, EnergyReading, EnergySensor, SensorInfo

DEFAULT_W_PER_CORE = 10.0  # a busy server/desktop core at load: package TDP / cores, roughly
DEFAULT_STATIC_W = 10.0  # uncore, caches, idle cores: a package's draw before any work

HINT = "for a real CPU reading, make RAPL readable (sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj) on a machine that has it"


class CpuTimeEstimate(EnergySensor):
    def __init__(self, w_per_core: float = DEFAULT_W_PER_CORE, static_w: float = DEFAULT_STATIC_W):
        self.w_per_core, self.static_w = w_per_core, static_w
        self.info = SensorInfo(
            "cpu-time-estimate",
            ESTIMATE,
            f"estimate: {static_w:g} W static x wall time + {w_per_core:g} W per busy core x process CPU time (assumed, not measured)",
            "s (CPU time)",
            # CLOCK_PROCESS_CPUTIME_ID moves in steps of under a microsecond; 1 ms is a safe bound,
            # so the edgevit protocol reads a single inference of 2 ms or more on its own
            0.001,
        )
        self._start_cpu_s = self._start_wall_s = 0.0

    def start(self) -> None:
        self._start_cpu_s, self._start_wall_s = time.process_time(), time.monotonic()

    def read(self) -> EnergyReading:
        now = time.monotonic()
        cpu_s = time.process_time() - self._start_cpu_s
        joules = self.static_w * (now - self._start_wall_s) + self.w_per_core * cpu_s
        return EnergyReading(now, joules * 1000.0)
