"""The one small interface every power sensor implements.

A sensor reports *cumulative* energy since it started, in millijoules, per rail and in total.
The measurement protocol reads it at both edges of a window and takes the difference, so counter
sensors (NVML, RAPL) and sampling sensors (Jetson rails, NVML instantaneous power) look the same
from outside.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from ...strenum import StrEnum


class SensorUnavailable(Exception):
    """No reading is possible on this machine; the message says why and how to fix it."""


class SensorFault(Exception):
    """A sensor broke during a run (file vanished, garbage value, counter went backwards)."""


class EnergyKind(StrEnum):
    """What a case's energy is: read from a sensor, estimated from CPU time, or not known.
    A measurement and an estimate are never compared with each other."""

    MEASURED = "measured"
    ESTIMATE = "estimate"
    UNAVAILABLE = "unavailable"


# The names the sensor backends and the run layer use (many call sites).
MEASURED, ESTIMATE = EnergyKind.MEASURED, EnergyKind.ESTIMATE


@dataclass(frozen=True)
class SensorInfo:
    """What a sensor measures, so every report can state its boundary and source."""

    name: str  # e.g. "nvml-counter", "jetson-ina3221", "rapl", "cpu-time-estimate"
    kind: EnergyKind  # MEASURED or ESTIMATE: the two are never compared with each other
    boundary: str  # what the energy covers: "GPU board", "Jetson module input (VDD_IN)", ...
    unit: str  # unit of the raw value the sensor reads
    update_period_s: float  # how often the underlying value changes (or our sampling period)
    total_rail: str | None = None  # which rail the total is, where there are rails
    rails: tuple[str, ...] = ()
    # Rails the hardware has but outside the boundary (a Jetson carrier board's monitors): named so a
    # user knows they exist, never read into the energy or shown beside the total.
    outside_rails: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnergyReading:
    """Cumulative energy since the sensor started (mJ), at monotonic time t_s."""

    t_s: float
    total_mj: float
    rails_mj: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EnergyWindow:
    """Energy spent between two readings."""

    duration_s: float
    energy_mj: float
    rails_mj: dict[str, float]

    @property
    def power_w(self) -> float:
        return self.energy_mj / 1000.0 / self.duration_s if self.duration_s > 0 else float("nan")


def window(start: EnergyReading, end: EnergyReading) -> EnergyWindow:
    """Energy between two readings; a window whose energy went down is a sensor fault."""
    energy_mj = end.total_mj - start.total_mj
    if energy_mj < 0:
        raise SensorFault(f"energy counter went backwards ({start.total_mj:.1f} -> {end.total_mj:.1f} mJ)")
    rails = {name: end.rails_mj[name] - start.rails_mj.get(name, 0.0) for name in end.rails_mj}
    return EnergyWindow(end.t_s - start.t_s, energy_mj, rails)


class EnergySensor(ABC):
    """Start it, read cumulative energy as often as needed, close it."""

    info: SensorInfo

    def start(self) -> None:  # noqa: B027 - optional hook: most sensors need no start
        """Begin counting; called once before the first read."""

    @abstractmethod
    def read(self) -> EnergyReading:
        """Cumulative energy since start(); raises SensorFault when the sensor broke."""

    def close(self) -> None:  # noqa: B027 - optional hook: most sensors hold nothing
        """Release threads and handles."""

    def raw_value(self) -> float:
        """The value the hardware updates (a counter, or instantaneous power), to observe how often
        it changes."""
        return self.read().total_mj

    def __enter__(self) -> EnergySensor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sample_on_grid(period_s: float, stop: threading.Event, lock: threading.Lock, sample: Callable[[], bool]) -> None:
    """A sampler thread's loop: `sample()` under `lock` every `period_s` on a fixed grid, until `stop`
    is set or `sample()` returns False. Deadlines are slept with time.sleep: an Event.wait wake-up
    costs about 110 us of CPU here against 45 us for a sleep, and a sampler must stay cheap beside the
    model."""
    next_t = time.monotonic()
    while not stop.is_set():
        next_t += period_s
        time.sleep(max(0.0, next_t - time.monotonic()))
        with lock:
            if not sample():
                return


class SamplingSensor(EnergySensor):
    """A sensor that only reads instantaneous power: a background thread samples it and
    integrates by trapezoid. read() takes one more sample on the spot, so window edges are exact
    to the sample rather than to the sampling period."""

    def __init__(self, rate_hz: float):
        if rate_hz <= 0:
            raise ValueError("sampling rate must be positive")
        self.period_s = 1.0 / rate_hz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fault: SensorFault | None = None
        self._last_t: float | None = None
        self._last_mw: dict[str, float] = {}
        self._energy_mj: dict[str, float] = {}
        self.samples = 0

    @abstractmethod
    def sample_mw(self) -> dict[str, float]:
        """Instantaneous power of each rail, in milliwatts. Raise SensorFault on a bad value."""

    @abstractmethod
    def total_mj(self, rails_mj: dict[str, float]) -> float:
        """The total of the boundary from the per-rail energies (one rail, or a sum)."""

    def raw_value(self) -> float:
        return sum(self.sample_mw().values())

    def _sample_locked(self) -> None:
        if self._fault is not None:
            return
        before = time.monotonic()
        try:
            power_mw = self.sample_mw()
        except SensorFault as exc:
            self._fault = exc
            return
        except OSError as exc:
            self._fault = SensorFault(f"{self.info.name}: {exc}")
            return
        now = 0.5 * (before + time.monotonic())  # the readings were taken between the two
        if self._last_t is not None:
            dt = now - self._last_t
            for rail, p in power_mw.items():
                prev = self._last_mw.get(rail, p)
                self._energy_mj[rail] = self._energy_mj.get(rail, 0.0) + 0.5 * (prev + p) * dt
        else:
            self._energy_mj = {rail: 0.0 for rail in power_mw}
        self._last_t, self._last_mw = now, power_mw
        self.samples += 1

    def _step(self) -> bool:
        self._sample_locked()
        return self._fault is None

    def _run(self) -> None:
        sample_on_grid(self.period_s, self._stop, self._lock, self._step)

    def start(self) -> None:
        with self._lock:
            self._sample_locked()
        if self._fault is not None:
            raise self._fault
        self._thread = threading.Thread(target=self._run, name=f"e3p-{self.info.name}", daemon=True)
        self._thread.start()

    def read(self) -> EnergyReading:
        with self._lock:
            self._sample_locked()
            if self._fault is not None:
                raise self._fault
            rails = dict(self._energy_mj)
            return EnergyReading(self._last_t or time.monotonic(), self.total_mj(rails), rails)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
