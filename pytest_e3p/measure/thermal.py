"""The thermal monitor of a measurement: the measured device's temperatures and clocks sampled during
each round, and whether the round was throttled. The sources it reads are found by
pytest_e3p.hardware.thermal.

Why: a round that ran while the chip held its clocks down for heat or power is slower and draws a
different power than a cool one; its energy and latency describe the cooling, not the model. A
benchmark has to say so rather than report it as the model's cost. Thermal state is auxiliary: a
source that is missing or breaks makes the thermal columns "unavailable", it never fails a case.

Throttle rule. A round is throttled when, between begin_round() and end_round(), any of these held;
each adds its reason:

1. An Intel throttle counter grew ("throttle count +3"): the CPU's own record that it throttled.
2. NVML reported a clock-event reason of heat or power in any sample ("thermal", "power cap",
   "hw slowdown"): the driver's own statement. Idle, application clocks, sync boost and display
   clocks are not throttling and are ignored.
3. A watched zone reached one of its passive, hot or critical trip points, or an hwmon channel its
   crit temperature ("cpu-thermal 96.0 C reached passive trip 95.0 C"): at a passive trip the
   kernel's thermal governor starts lowering clocks. Trip points at 0 C or below are unset
   (x86_pkg_temp reads 0 until thermald programs it) and ignored; active trips only start fans.
4. The clock of a busy round fell below CLOCK_THROTTLE_RATIO (90%) of its max ("clock 71% of max"),
   only where configuration pins the clock at its max (the performance governor, or a minimum raised
   to the maximum, as `jetson_clocks` does: under a load-following governor such as nvhost_podgov or
   schedutil a batch-1 model with launch gaps holds the clock well below max without throttling),
   and only where the max is a clock a busy chip holds: a Jetson GPU's devfreq, and cpufreq drivers
   without turbo (cpufreq-dt, tegra, scmi...). Not on x86 cpufreq drivers (intel_pstate, acpi-cpufreq,
   amd-pstate): their max is a single-core turbo bin that an all-core load never reaches, so the
   clock there is reported (min_clock_ratio) and the throttle counters decide. Not under the
   powersave or userspace governors, which pin the clock by configuration. Not for NVML, whose
   max is the boost clock and whose reasons say why the clock is lower. Frequency below max alone is
   not proof of throttling because governors lower the clock of an idle chip: only samples taken
   CLOCK_SETTLE_S after begin_round count, once the governor has raised the clock for the work, and
   the rule assumes the round keeps every core of the measured device busy (torch's default threads).

The monitor reads each clock's maximum when it opens, not at every sample: the thermal framework
caps a clock by lowering `scaling_max_freq` / `max_freq` themselves (freq QoS), so the max read later
would move down with the clock and hide the cap.

The sampler is a daemon thread that reads every source each `period_s` (0.5 s) while a round is
open, through sysfs files kept open and re-read with pread (sysfs.Attribute, about 9 us a file), so
it costs next to nothing beside the model. Outside rounds it reads nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..hardware.sensors.base import SensorFault, sample_on_grid
from ..hardware.thermal import ThermalSource, ThermalSources, find_sources, percent_floor, source_now

PERIOD_S = 0.5
CLOCK_THROTTLE_RATIO = 0.9
# Governors raise the clock within tens of ms of work starting (schedutil, ondemand, nvhost_podgov);
# a sample taken sooner after begin_round would see the idle clock of the gap between rounds.
CLOCK_SETTLE_S = 0.2


@dataclass(frozen=True)
class ThermalSettings:
    """How the monitor samples: every period_s while a round is open, and a clock counts only from
    clock_settle_s after begin_round (see the module docstring)."""

    period_s: float = PERIOD_S
    clock_settle_s: float = CLOCK_SETTLE_S

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError("the sampling period must be positive")


@dataclass(frozen=True)
class RoundThermal:
    """The thermal state of one round. available=False: no source, or the monitor stopped (note says
    why); then the temperature and clock are None and throttled is False, because nothing was seen."""

    max_temperature_c: float | None  # hottest sample of the measured device's sensors
    min_clock_ratio: float | None  # lowest clock / max clock of the measured device, settled samples
    throttled: bool
    reasons: tuple[str, ...]  # why it counts as throttled, e.g. ("thermal",), ("throttle count +3",)
    samples: int
    available: bool = True
    note: str = ""


@dataclass
class _Round:
    t0_s: float
    samples: int = 0
    max_temperature_c: float | None = None
    temperature_max_c: dict[int, float] = field(default_factory=dict)  # per index of ThermalMonitor's temperatures
    min_clock_ratio: float | None = None
    min_judged_ratio: float | None = None
    counts_begin: list[int] | None = None
    counts_last: list[int] | None = None
    nvml_reasons: dict[str, None] = field(default_factory=dict)  # an ordered set
    fault: str | None = None


def _lowest(current: float | None, value: float) -> float:
    return value if current is None else min(current, value)


class ThermalMonitor:
    """Samples the measured device's thermal sources (opened by hardware.thermal.find_sources) in a
    background thread while a round is open; closing the monitor closes them.

    begin_round() and end_round() each take a sample on the spot, so even a short round has two.
    A source that breaks mid-run (file vanished, NVML stopped answering) stops the monitor: that
    round and every later one are unavailable with a note saying why, and nothing is raised."""

    def __init__(self, sources: ThermalSources, settings: ThermalSettings = ThermalSettings()):
        self._sources = sources
        self.device_kind = sources.device_kind
        self.period_s, self.clock_settle_s = settings.period_s, settings.clock_settle_s
        self._measured, self._watched = list(sources.measured), list(sources.watched)
        self._temps = self._measured + self._watched  # the measured ones first
        self._clocks, self._counters, self._nvml = list(sources.clocks), list(sources.counters), sources.nvml
        for clock in self._clocks:
            clock.max_mhz = clock.read_max_mhz()
        self._note = sources.note
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round: _Round | None = None
        self._fault: str | None = None
        self.samples = 0  # every sample taken, for tests and cost checks

    @property
    def _has_sources(self) -> bool:
        return bool(self._temps or self._clocks or self._counters or self._nvml)

    @property
    def available(self) -> bool:
        return self._has_sources and self._fault is None

    @property
    def note(self) -> str:
        """Why the monitor is unavailable, or what it lacks (e.g. no temperature, clocks only)."""
        return self._fault or self._note

    def describe(self) -> list[ThermalSource]:
        """The monitor's own sources with their values now."""
        used = (self.device_kind,)
        with self._lock:  # the sampler thread shares the open files
            return [source_now(s, used) for s in self._sources.files()] + ([self._nvml.source()] if self._nvml else [])

    # the sampler

    def _fail(self, why: str) -> None:
        self._fault = f"thermal monitor stopped: {why}"
        if self._round is not None:
            self._round.fault = self._fault

    def _sample_locked(self, begin: bool = False) -> None:
        r = self._round
        if r is None or self._fault is not None or not self._has_sources:
            return
        now = time.monotonic()
        try:
            temps = [t.read_c() for t in self._temps]
            clocks = [c.read_mhz() for c in self._clocks]
            counts = [c.read_count() for c in self._counters]
            gpu = self._nvml.read() if self._nvml is not None else None
        except (SensorFault, OSError) as exc:
            self._fail(str(exc))
            return
        self.samples += 1
        r.samples += 1
        for i, value in enumerate(temps):
            r.temperature_max_c[i] = max(r.temperature_max_c.get(i, value), value)
            if i < len(self._measured):
                r.max_temperature_c = max(r.max_temperature_c if r.max_temperature_c is not None else value, value)
        if r.counts_begin is None:
            r.counts_begin = counts
        r.counts_last = counts
        settled = not begin and now - r.t0_s >= self.clock_settle_s
        if gpu is not None:
            if gpu.temperature_c is not None:
                r.max_temperature_c = max(r.max_temperature_c if r.max_temperature_c is not None else gpu.temperature_c, gpu.temperature_c)
            for reason in gpu.reasons:
                r.nvml_reasons[reason] = None
            if settled and gpu.clock_mhz is not None and self._nvml is not None and self._nvml.max_clock_mhz:
                r.min_clock_ratio = _lowest(r.min_clock_ratio, gpu.clock_mhz / self._nvml.max_clock_mhz)
        if settled:
            for clock, mhz in zip(self._clocks, clocks):
                if clock.max_mhz:
                    ratio = mhz / clock.max_mhz
                    r.min_clock_ratio = _lowest(r.min_clock_ratio, ratio)
                    if clock.judged:
                        r.min_judged_ratio = _lowest(r.min_judged_ratio, ratio)

    def _step(self) -> bool:
        self._sample_locked()
        return self._fault is None

    def _run(self) -> None:
        sample_on_grid(self.period_s, self._stop, self._lock, self._step)

    def start(self) -> None:
        """Start the background sampler (a monitor without sources starts nothing)."""
        if self._thread is not None or not self._has_sources:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="e3p-thermal", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0 + self.period_s)
            self._thread = None
        self._sources.close()

    def __enter__(self) -> ThermalMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # rounds

    def begin_round(self) -> None:
        """Open a round (a round still open is dropped) and take its first sample."""
        with self._lock:
            self._round = _Round(time.monotonic())
            self._sample_locked(begin=True)

    def end_round(self) -> RoundThermal:
        """Take the round's last sample and judge it by the throttle rule of the module docstring."""
        with self._lock:
            r = self._round
            if r is None:
                raise RuntimeError("end_round() without begin_round()")
            self._sample_locked()
            self._round = None
        if not self._has_sources or r.fault is not None or self._fault is not None:
            return RoundThermal(None, None, False, (), r.samples, available=False, note=r.fault or self.note)
        reasons: list[str] = []
        if r.counts_begin is not None and r.counts_last is not None:
            grown = sum(max(0, end - start) for start, end in zip(r.counts_begin, r.counts_last))
            if grown:
                reasons.append(f"throttle count +{grown}")
        reasons.extend(r.nvml_reasons)
        for i, source in enumerate(self._temps):
            hottest = r.temperature_max_c.get(i)
            reached = [t for t in source.throttle_trips if hottest is not None and hottest >= t.temperature_c]
            if hottest is not None and reached:
                trip = max(reached, key=lambda t: t.temperature_c)
                reasons.append(f"{source.name} {hottest:.1f} C reached {trip.type} trip {trip.temperature_c:.1f} C")
        if r.min_judged_ratio is not None and r.min_judged_ratio < CLOCK_THROTTLE_RATIO:
            reasons.append(f"clock {percent_floor(r.min_judged_ratio)} of max")
        return RoundThermal(r.max_temperature_c, r.min_clock_ratio, bool(reasons), tuple(reasons), r.samples, note=self._note)


def open_thermal(
    device_kind: str, cuda_index: int = 0, uuid: str | None = None, period_s: float = PERIOD_S, clock_settle_s: float = CLOCK_SETTLE_S
) -> ThermalMonitor:
    """The thermal monitor of the measured device: "cpu", "cuda" (NVML GPU cuda_index, or uuid) or
    "jetson" (a Jetson GPU run). Never raises for a missing source: the monitor then reports
    available=False and a note saying why."""
    settings = ThermalSettings(period_s, clock_settle_s)  # checked before any source is opened
    return ThermalMonitor(find_sources(device_kind, cuda_index, uuid), settings)
