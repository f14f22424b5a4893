"""Thermal state of the measured device: its temperatures and clocks during each round, and whether
the round was throttled.

Why: a round that ran while the chip held its clocks down for heat or power is slower and draws a
different power than a cool one; its energy and latency describe the cooling, not the model. A
benchmark has to say so rather than report it as the model's cost. Thermal state is auxiliary: a
source that is missing or breaks makes the thermal columns "unavailable", it never fails a case.

Sources, all read through `sysfs.path()` so that E3P_SYSFS_ROOT points them at a fake tree:

- Thermal zones, `/sys/class/thermal/thermal_zone*/`: `type`, `temp` (millidegrees C), and
  `trip_point_N_temp` / `trip_point_N_type` (passive, active, hot, critical). A zone belongs to the
  measured device by its type: on a CPU x86_pkg_temp, cpu-thermal, CPU-therm, BCPU-/MCPU-therm,
  soc_thermal, tj-thermal..., and acpitz (often the chassis, not the chip) only when nothing else
  exists; on a Jetson GPU run GPU-therm / gpu-thermal is the measured zone and the CPU, SoC and tj
  zones are watched beside it, because Tegra's thermal framework caps the GPU for those too.
- hwmon, `/sys/class/hwmon/hwmon*/` named coretemp (Intel) or k10temp (AMD): `temp*_input`
  (millidegrees C), `temp*_label` and `temp*_crit` (coretemp's TjMax, where the CPU throttles itself).
- Intel's throttle counters, `/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count`
  and `package_throttle_count`: how many times the hardware throttled since boot. The package counter
  is the same in every CPU of the package, so it is read once per `topology/physical_package_id`.
- cpufreq, `/sys/devices/system/cpu/cpu*/cpufreq/` (links to the shared `cpufreq/policyN/`, read
  once per policy): `scaling_cur_freq` against `scaling_max_freq`, in kHz.
- A Jetson GPU's devfreq, `/sys/class/devfreq/<dev>/` where <dev> is the GPU (17000000.ga10b on
  Orin, 17000000.gv11b on Xavier, 17000000.gp10b on TX2, 57000000.gpu on Nano): `cur_freq`,
  `max_freq`, in Hz.
- NVML on an NVIDIA GPU (sensors/nvml.py): temperature, SM clock against its maximum, and the
  driver's clock-event reasons.

The maximum clock is read when the monitor opens, not at every sample: the thermal framework caps a
clock by lowering `scaling_max_freq` / `max_freq` themselves (freq QoS), so the max read later would
move down with the clock and hide the cap.

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

The sampler is a daemon thread that reads every source each `period_s` (0.5 s) while a round is
open, through sysfs files kept open and re-read with pread (sysfs.Attribute, about 9 us a file), so
it costs next to nothing beside the model. Outside rounds it reads nothing.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sensors import nvml as nvml_sensors
from .sensors import sysfs
from .sensors.base import SensorFault, SensorUnavailable, sample_on_grid

CPU, CUDA, JETSON = "cpu", "cuda", "jetson"
DEVICE_KINDS = (CPU, CUDA, JETSON)

PERIOD_S = 0.5
CLOCK_THROTTLE_RATIO = 0.9
# Governors raise the clock within tens of ms of work starting (schedutil, ondemand, nvhost_podgov);
# a sample taken sooner after begin_round would see the idle clock of the gap between rounds.
CLOCK_SETTLE_S = 0.2
THROTTLE_TRIP_TYPES = ("passive", "hot", "critical", "crit")

# Zone types, matched case-insensitively. CPU: x86_pkg_temp, cpu-thermal, cpu_thermal, CPU-therm,
# BCPU-therm, MCPU-therm, bigcore0-thermal, soc_thermal, soc0-thermal, tj-thermal (Orin's junction).
CPU_ZONE_RE = re.compile(r"x86_pkg_temp|cpu|core|soc|^tj", re.IGNORECASE)
GPU_ZONE_RE = re.compile(r"gpu", re.IGNORECASE)  # GPU-therm (TX2, Xavier), gpu-thermal (Orin)
LAST_RESORT_ZONES = ("acpitz",)
HWMON_CPU_NAMES = ("coretemp", "k10temp")
# Jetson GPU devfreq devices: the name after the unit address, or the device tree node's name.
GPU_DEVFREQ_NAMES = ("ga10b", "gv11b", "gp10b", "gm20b", "gb10b", "gpu")
# cpufreq drivers whose scaling_max_freq is a turbo / boost bin, not a clock an all-core load holds.
BOOST_DRIVERS = ("intel_pstate", "intel_cpufreq", "acpi-cpufreq", "amd-pstate", "amd-pstate-epp", "amd_pstate")
PINNED_GOVERNORS = ("powersave", "userspace")


@dataclass(frozen=True)
class TripPoint:
    """A temperature at which the kernel (or the GPU) acts: passive (lower the clocks), active
    (start a fan), hot, critical (shut down); crit for an hwmon channel; slowdown for NVML."""

    type: str
    temperature_c: float


@dataclass(frozen=True)
class ThermalSource:
    """One thermal or throttle source as describe() lists it: what and where it is, and its values now."""

    kind: str  # "thermal_zone", "hwmon", "throttle_count", "cpufreq", "devfreq" or "nvml"
    name: str  # the zone's type, "coretemp Package id 0", "cpu0 core", "policy0", "17000000.ga10b", "GPU 0"
    path: str  # the file read for the value
    temperature_c: float | None = None
    clock_mhz: float | None = None
    max_clock_mhz: float | None = None
    trip_points: tuple[TripPoint, ...] = ()
    count: int | None = None
    reasons: tuple[str, ...] | None = None  # NVML clock-event reasons now; None where not reported
    detail: str = ""  # the zone folder, the cpufreq driver and governor, the CPUs of a policy
    used_for: tuple[str, ...] = ()  # the device kinds whose rounds watch it
    note: str = ""  # why it has no value

    def summary(self) -> str:
        """One line for `python -m pytest_e3p sensors`."""
        parts: list[str] = []
        if self.temperature_c is not None:
            parts.append(f"{self.temperature_c:.1f} C")
        if self.clock_mhz is not None:
            if self.max_clock_mhz:
                parts.append(f"clock {self.clock_mhz:.0f} of {self.max_clock_mhz:.0f} MHz ({_percent(self.clock_mhz / self.max_clock_mhz)} of max)")
            else:
                parts.append(f"clock {self.clock_mhz:.0f} MHz (max unknown)")
        if self.trip_points:
            parts.append("trip points: " + ", ".join(f"{t.type} {t.temperature_c:.1f} C" for t in self.trip_points))
        if self.count is not None:
            parts.append(f"throttled {self.count} times since boot")
        if self.reasons is not None:
            parts.append("clock-event reasons now: " + (", ".join(self.reasons) or "none"))
        if self.used_for:
            parts.append(f"watched for: {', '.join(self.used_for)}")
        if self.note:
            parts.append(self.note)
        detail = f" ({self.detail})" if self.detail else ""
        return f"{KIND_LABELS.get(self.kind, self.kind)} {self.name}{detail}: " + "; ".join(parts)


KIND_LABELS = {
    "thermal_zone": "thermal zone",
    "hwmon": "hwmon",
    "throttle_count": "throttle counter",
    "cpufreq": "cpufreq",
    "devfreq": "GPU devfreq",
    "nvml": "NVIDIA",
}


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


def _percent(ratio: float) -> str:
    """71% for 0.7199: floored, so a ratio under 90% never prints as 90%."""
    return f"{math.floor(ratio * 100 + 1e-9)}%"


def _number_suffix(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _text_or(p: Path, default: str = "") -> str:
    try:
        return sysfs.read_text(p)
    except OSError:
        return default


class _Temperature:
    """A temperature file in millidegrees C, kept open: a zone's `temp` or an hwmon `temp*_input`."""

    def __init__(self, kind: str, name: str, detail: str, temp_path: Path, trips: tuple[TripPoint, ...]):
        self.kind, self.name, self.detail, self.path, self.trips = kind, name, detail, temp_path, trips
        self.attr = sysfs.Attribute(temp_path)

    @property
    def throttle_trips(self) -> tuple[TripPoint, ...]:
        return tuple(t for t in self.trips if t.type in THROTTLE_TRIP_TYPES and t.temperature_c > 0)

    def read_c(self) -> float:
        return self.attr.read_number() / 1000.0

    def close(self) -> None:
        self.attr.close()


class _Clock:
    """A clock file kept open (cpufreq kHz, devfreq Hz) and its maximum, read when the monitor opens."""

    def __init__(
        self, kind: str, name: str, detail: str, cur_path: Path, max_path: Path, units_per_mhz: float, driver: str, governor: str, min_path: Path | None = None
    ):
        self.kind, self.name, self.detail = kind, name, detail
        self.path, self.max_path, self.min_path, self.units_per_mhz = cur_path, max_path, min_path, units_per_mhz
        self.driver, self.governor = driver, governor
        self.attr = sysfs.Attribute(cur_path)
        self.max_mhz: float | None = None
        self.judged = False  # whether a low clock counts as throttling (rule 4 of the module docstring)

    def read_mhz(self) -> float:
        return self.attr.read_number() / self.units_per_mhz

    def pinned_at_max(self) -> bool:
        """Whether configuration holds this clock at its maximum (the performance governor, or a
        minimum raised to the maximum, as jetson_clocks does): only then is a lower clock throttling
        rather than a governor following the load."""
        if self.governor == "performance":
            return True
        top = self.read_max_mhz()
        if self.min_path is None or top is None:
            return False
        try:
            low = sysfs.read_number(self.min_path) / self.units_per_mhz
        except (SensorFault, OSError):
            return False
        return low >= 0.999 * top

    def read_max_mhz(self) -> float | None:
        try:
            value = sysfs.read_number(self.max_path) / self.units_per_mhz
        except (SensorFault, OSError):
            return None
        return value if value > 0 else None

    def close(self) -> None:
        self.attr.close()


class _Counter:
    """An Intel thermal-throttle counter, kept open."""

    def __init__(self, name: str, path: Path):
        self.kind, self.name, self.path = "throttle_count", name, path
        self.attr = sysfs.Attribute(path)

    def read_count(self) -> int:
        return int(self.attr.read_number())

    def close(self) -> None:
        self.attr.close()


@dataclass(frozen=True)
class _NvmlReading:
    temperature_c: float | None
    clock_mhz: float | None
    reasons: tuple[str, ...]


class _NvmlGpu:
    """One GPU through NVML: what it answered when opened is what it must keep answering."""

    kind = "nvml"

    def __init__(self, nvml: Any, handle: Any, name: str):
        self.nvml, self.handle, self.name = nvml, handle, name
        self.path = "NVML"
        self.has_temperature = nvml_sensors.gpu_temperature_c(nvml, handle) is not None
        self.has_clock = nvml_sensors.gpu_sm_clock_mhz(nvml, handle) is not None
        self.has_reasons = nvml_sensors.gpu_clock_event_reasons(nvml, handle) is not None
        self.max_clock_mhz = nvml_sensors.gpu_max_sm_clock_mhz(nvml, handle)

    @property
    def answers(self) -> bool:
        return self.has_temperature or self.has_clock or self.has_reasons

    def _need(self, value: Any, query: str) -> Any:
        if value is None:
            raise SensorFault(f"{self.name}: NVML stopped answering the {query} query")
        return value

    def read(self) -> _NvmlReading:
        nv, h = self.nvml, self.handle
        temperature = self._need(nvml_sensors.gpu_temperature_c(nv, h), "temperature") if self.has_temperature else None
        clock = self._need(nvml_sensors.gpu_sm_clock_mhz(nv, h), "SM clock") if self.has_clock else None
        reasons = self._need(nvml_sensors.gpu_clock_event_reasons(nv, h), "clock-event reasons") if self.has_reasons else ()
        return _NvmlReading(temperature, clock, reasons)

    def source(self) -> ThermalSource:
        nv, h = self.nvml, self.handle
        slowdown = nvml_sensors.gpu_slowdown_temperature_c(nv, h)
        missing = [q for q, ok in (("temperature", self.has_temperature), ("SM clock", self.has_clock), ("clock-event reasons", self.has_reasons)) if not ok]
        return ThermalSource(
            "nvml",
            self.name,
            self.path,
            temperature_c=nvml_sensors.gpu_temperature_c(nv, h),
            clock_mhz=nvml_sensors.gpu_sm_clock_mhz(nv, h),
            max_clock_mhz=self.max_clock_mhz,
            trip_points=(TripPoint("slowdown", slowdown),) if slowdown is not None else (),
            reasons=nvml_sensors.gpu_clock_event_reasons(nv, h),
            used_for=(CUDA,),
            note=f"not supported by this GPU: {', '.join(missing)}" if missing else "",
        )


# ------------------------------------------------------------------------------------------ discovery


@dataclass
class _Found:
    zones: list[_Temperature] = field(default_factory=list)
    hwmon: list[_Temperature] = field(default_factory=list)
    counters: list[_Counter] = field(default_factory=list)
    cpufreq: list[_Clock] = field(default_factory=list)
    devfreq: list[_Clock] = field(default_factory=list)
    unreadable: list[ThermalSource] = field(default_factory=list)

    def all(self) -> list[_Temperature | _Counter | _Clock]:
        return [*self.zones, *self.hwmon, *self.counters, *self.cpufreq, *self.devfreq]

    def close_except(self, keep: list[_Temperature | _Clock | _Counter]) -> None:
        kept = {id(s) for s in keep}
        for s in self.all():
            if id(s) not in kept:
                s.close()


def _readable(found: _Found, source: _Temperature | _Counter | _Clock, read: Callable[[], object]) -> bool:
    """Read once: a source that cannot be read now is listed with why, and never sampled."""
    try:
        read()
        return True
    except (SensorFault, OSError) as exc:
        source.close()
        found.unreadable.append(ThermalSource(source.kind, source.name, str(source.path), note=f"unreadable: {exc}"))
        return False


def _trip_points(zone: Path) -> tuple[TripPoint, ...]:
    trips: list[tuple[int, TripPoint]] = []
    for temp_file in zone.glob("trip_point_*_temp"):
        m = re.fullmatch(r"trip_point_(\d+)_temp", temp_file.name)
        if not m:
            continue
        try:
            value_c = sysfs.read_number(temp_file) / 1000.0
        except (SensorFault, OSError):
            continue
        trip_type = _text_or(zone / f"trip_point_{m.group(1)}_type", "unknown")
        trips.append((int(m.group(1)), TripPoint(trip_type, value_c)))
    return tuple(t for _, t in sorted(trips, key=lambda item: item[0]))


def _find_zones(found: _Found) -> None:
    for zone in sorted(sysfs.path("/sys/class/thermal").glob("thermal_zone*"), key=_number_suffix):
        zone_type = _text_or(zone / "type")
        if not zone_type:
            continue
        source = _Temperature("thermal_zone", zone_type, zone.name, zone / "temp", _trip_points(zone))
        if _readable(found, source, source.read_c):
            found.zones.append(source)


def _find_hwmon(found: _Found) -> None:
    for hwmon in sorted(sysfs.path("/sys/class/hwmon").glob("hwmon*"), key=_number_suffix):
        base = hwmon if (hwmon / "name").exists() else hwmon / "device"  # kernels before 4.x kept them in device/
        chip = _text_or(base / "name")
        if chip not in HWMON_CPU_NAMES:
            continue
        channels = [(int(m.group(1)), p) for p in base.glob("temp*_input") if (m := re.fullmatch(r"temp(\d+)_input", p.name))]
        for n, input_path in sorted(channels):
            label = _text_or(base / f"temp{n}_label", f"temp{n}")
            trips: tuple[TripPoint, ...] = ()
            try:
                trips = (TripPoint("crit", sysfs.read_number(base / f"temp{n}_crit") / 1000.0),)
            except (SensorFault, OSError):
                pass
            source = _Temperature("hwmon", f"{chip} {label}", hwmon.name, input_path, trips)
            if _readable(found, source, source.read_c):
                found.hwmon.append(source)


def _cpus() -> list[Path]:
    cpus = [p for p in sysfs.path("/sys/devices/system/cpu").glob("cpu*") if re.fullmatch(r"cpu\d+", p.name)]
    return sorted(cpus, key=_number_suffix)


def _find_counters(found: _Found, cpus: list[Path]) -> None:
    packages: set[str] = set()
    for cpu in cpus:
        folder = cpu / "thermal_throttle"
        if (folder / "core_throttle_count").exists():
            counter = _Counter(f"{cpu.name} core", folder / "core_throttle_count")
            if _readable(found, counter, counter.read_count):
                found.counters.append(counter)
        if (folder / "package_throttle_count").exists():
            package = _text_or(cpu / "topology/physical_package_id", "0")
            if package in packages:
                continue  # the same package counter, shown again in another CPU of the package
            packages.add(package)
            counter = _Counter(f"package {package}", folder / "package_throttle_count")
            if _readable(found, counter, counter.read_count):
                found.counters.append(counter)


def _find_cpufreq(found: _Found, cpus: list[Path]) -> None:
    policies: set[str] = set()
    for cpu in cpus:
        folder = cpu / "cpufreq"
        if not (folder / "scaling_cur_freq").exists():
            continue
        real = os.path.realpath(folder)  # cpuN/cpufreq links to the policy shared by its CPUs
        if real in policies:
            continue
        policies.add(real)
        name = Path(real).name if Path(real).name != "cpufreq" else cpu.name
        driver, governor = _text_or(folder / "scaling_driver"), _text_or(folder / "scaling_governor")
        cpus_text = _text_or(folder / "related_cpus") or _text_or(folder / "affected_cpus")
        detail = ", ".join(x for x in (f"cpus {cpus_text}" if cpus_text else "", driver, governor) if x)
        clock = _Clock("cpufreq", name, detail, folder / "scaling_cur_freq", folder / "scaling_max_freq", 1000.0, driver, governor, folder / "scaling_min_freq")
        if _readable(found, clock, clock.read_mhz):
            found.cpufreq.append(clock)


def _is_gpu_devfreq(device: Path) -> bool:
    names = [device.name.lower().rsplit(".", 1)[-1], _text_or(device / "device/of_node/name").lower()]
    return any(n in GPU_DEVFREQ_NAMES or "gpu" in n for n in names if n)


def _find_devfreq(found: _Found) -> None:
    for device in sorted(sysfs.path("/sys/class/devfreq").glob("*")):
        if not (device / "cur_freq").exists() or not _is_gpu_devfreq(device):
            continue
        governor = _text_or(device / "governor")
        clock = _Clock("devfreq", device.name, governor, device / "cur_freq", device / "max_freq", 1e6, "", governor, device / "min_freq")
        if _readable(found, clock, clock.read_mhz):
            found.devfreq.append(clock)


def _discover() -> _Found:
    found = _Found()
    _find_zones(found)
    _find_hwmon(found)
    cpus = _cpus()
    _find_counters(found, cpus)
    _find_cpufreq(found, cpus)
    _find_devfreq(found)
    return found


@dataclass
class _Selection:
    measured: list[_Temperature]
    watched: list[_Temperature]
    clocks: list[_Clock]
    counters: list[_Counter]

    def sources(self) -> list[_Temperature | _Clock | _Counter]:
        return [*self.measured, *self.watched, *self.clocks, *self.counters]


def _clock_judged(kind: str, clock: _Clock) -> bool:
    """Rule 4 of the module docstring: may a low clock of this source count as throttling?"""
    if clock.governor in PINNED_GOVERNORS or not clock.pinned_at_max():
        return False
    if clock.kind == "devfreq":
        return kind == JETSON
    return kind == CPU and bool(clock.driver) and clock.driver not in BOOST_DRIVERS


def _select(kind: str, found: _Found) -> _Selection:
    """Which of the sources found watch a round of this device kind (see the module docstring)."""
    if kind == CPU:
        measured = [z for z in found.zones if CPU_ZONE_RE.search(z.name)] + found.hwmon
        if not measured:
            measured = [z for z in found.zones if z.name.lower() in LAST_RESORT_ZONES]
        return _Selection(measured, [], list(found.cpufreq), list(found.counters))
    if kind == JETSON:
        gpu = [z for z in found.zones if GPU_ZONE_RE.search(z.name)]
        soc = [z for z in found.zones if CPU_ZONE_RE.search(z.name) and z not in gpu]
        return _Selection(gpu or soc, soc if gpu else [], list(found.devfreq), [])
    return _Selection([], [], [], [])


def _no_source_note() -> str:
    return f"no thermal zone or hwmon sensor readable under {sysfs.path('/sys')}"


def _nvml_gpus(index: int | None = None, uuid: str | None = None) -> tuple[list[_NvmlGpu], str]:
    """The NVML GPU of a cuda device (by UUID where known, as torch and NVML may number GPUs
    differently), or every GPU when index is None; with why there is none."""
    try:
        nvml = nvml_sensors.load_pynvml()
        indices = [index] if index is not None else list(range(nvml_sensors.gpu_count()))
    except SensorUnavailable as exc:
        return [], f"NVML: {exc}"
    gpus: list[_NvmlGpu] = []
    for i in indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else nvml.nvmlDeviceGetHandleByIndex(i)
        except nvml.NVMLError as exc:
            return gpus, f"NVML has no GPU {uuid or i}: {exc}"
        gpus.append(_NvmlGpu(nvml, handle, f"GPU {i} (NVML)"))
    return gpus, ""


# -------------------------------------------------------------------------------------------- monitor


@dataclass
class _Round:
    t0_s: float
    samples: int = 0
    max_temperature_c: float | None = None
    temperature_max_c: dict[int, float] = field(default_factory=dict)  # per index of ThermalMonitor._temps
    min_clock_ratio: float | None = None
    min_judged_ratio: float | None = None
    counts_begin: list[int] | None = None
    counts_last: list[int] | None = None
    nvml_reasons: dict[str, None] = field(default_factory=dict)  # an ordered set
    fault: str | None = None


def _lowest(current: float | None, value: float) -> float:
    return value if current is None else min(current, value)


class ThermalMonitor:
    """Samples the measured device's thermal sources in a background thread while a round is open.

    begin_round() and end_round() each take a sample on the spot, so even a short round has two.
    A source that breaks mid-run (file vanished, NVML stopped answering) stops the monitor: that
    round and every later one are unavailable with a note saying why, and nothing is raised."""

    def __init__(
        self,
        device_kind: str,
        measured: list[_Temperature] | None = None,
        watched: list[_Temperature] | None = None,
        clocks: list[_Clock] | None = None,
        counters: list[_Counter] | None = None,
        nvml: _NvmlGpu | None = None,
        period_s: float = PERIOD_S,
        clock_settle_s: float = CLOCK_SETTLE_S,
        note: str = "",
    ):
        if period_s <= 0:
            raise ValueError("the sampling period must be positive")
        self.device_kind = device_kind
        self.period_s, self.clock_settle_s = period_s, clock_settle_s
        self._measured, self._watched = list(measured or []), list(watched or [])
        self._temps = self._measured + self._watched  # the measured ones first
        self._clocks, self._counters, self._nvml = list(clocks or []), list(counters or []), nvml
        for clock in self._clocks:
            clock.max_mhz = clock.read_max_mhz()
        self._note = note
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
        own: list[_Temperature | _Clock | _Counter] = [*self._temps, *self._clocks, *self._counters]
        with self._lock:  # the sampler thread shares the open files
            return [_source_now(s, used) for s in own] + ([self._nvml.source()] if self._nvml else [])

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
        own: list[_Temperature | _Clock | _Counter] = [*self._temps, *self._clocks, *self._counters]
        for source in own:
            source.close()

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
            reasons.append(f"clock {_percent(r.min_judged_ratio)} of max")
        return RoundThermal(r.max_temperature_c, r.min_clock_ratio, bool(reasons), tuple(reasons), r.samples, note=self._note)


def open_thermal(
    device_kind: str, cuda_index: int = 0, uuid: str | None = None, period_s: float = PERIOD_S, clock_settle_s: float = CLOCK_SETTLE_S
) -> ThermalMonitor:
    """The thermal monitor of the measured device: "cpu", "cuda" (NVML GPU cuda_index, or uuid) or
    "jetson" (a Jetson GPU run). Never raises for a missing source: the monitor then reports
    available=False and a note saying why."""
    if device_kind not in DEVICE_KINDS:
        raise ValueError(f"device kind must be one of {', '.join(DEVICE_KINDS)}, not {device_kind!r}")
    if device_kind == CUDA:
        gpus, why = _nvml_gpus(cuda_index, uuid)
        gpu = gpus[0] if gpus else None
        if gpu is not None and not gpu.answers:
            why, gpu = f"{gpu.name} reports no temperature, SM clock or clock-event reasons", None
        return ThermalMonitor(CUDA, nvml=gpu, period_s=period_s, clock_settle_s=clock_settle_s, note=why)
    found = _discover()
    chosen = _select(device_kind, found)
    found.close_except(chosen.sources())
    for clock in chosen.clocks:
        clock.judged = _clock_judged(device_kind, clock)
    note = "" if chosen.measured else _no_source_note()
    if note and (chosen.clocks or chosen.counters):
        note += ": rounds have clocks and throttle counts but no temperature"
    return ThermalMonitor(device_kind, chosen.measured, chosen.watched, chosen.clocks, chosen.counters, None, period_s, clock_settle_s, note)


# ------------------------------------------------------------------------------------------- describe


def _source_now(source: _Temperature | _Clock | _Counter, used_for: tuple[str, ...]) -> ThermalSource:
    """A source's values now; a read that fails is a note, never an exception."""
    path = str(source.path)
    try:
        if isinstance(source, _Temperature):
            return ThermalSource(
                source.kind, source.name, path, temperature_c=source.read_c(), trip_points=source.trips, detail=source.detail, used_for=used_for
            )
        if isinstance(source, _Clock):
            return ThermalSource(
                source.kind, source.name, path, clock_mhz=source.read_mhz(), max_clock_mhz=source.read_max_mhz(), detail=source.detail, used_for=used_for
            )
        return ThermalSource(source.kind, source.name, path, count=source.read_count(), used_for=used_for)
    except (SensorFault, OSError) as exc:
        return ThermalSource(source.kind, source.name, path, used_for=used_for, note=f"unreadable: {exc}")


def describe() -> list[ThermalSource]:
    """Every thermal zone, CPU hwmon channel, throttle counter, cpufreq policy, GPU devfreq and NVML
    GPU of this machine, with its values now and the device kinds whose rounds would watch it."""
    from .sensors.jetson import is_jetson

    found = _discover()
    kinds = [CPU, JETSON] if is_jetson() else [CPU]
    used: dict[int, list[str]] = {}
    for kind in kinds:
        for source in _select(kind, found).sources():
            used.setdefault(id(source), []).append(kind)
    try:
        sources = [_source_now(s, tuple(used.get(id(s), ()))) for s in found.all()] + found.unreadable
    finally:
        found.close_except([])
    gpus, _why = _nvml_gpus()
    return sources + [gpu.source() for gpu in gpus]


def describe_lines(sources: list[ThermalSource] | None = None) -> list[str]:
    """What `python -m pytest_e3p sensors` prints about thermal state: one line per source (the
    throttle counters summed into one line), or one line saying none was found and why."""
    sources = describe() if sources is None else sources
    if not sources:
        return [f"thermal: none found: {_no_source_note()}, no cpufreq or GPU devfreq clock, no NVML GPU"]
    lines = ["thermal and throttle sources (temperature, clock vs max, trip points):"]
    counters = [s for s in sources if s.kind == "throttle_count"]
    for s in sources:
        if s.kind != "throttle_count":
            lines.append(f"  {s.summary()}")
    if counters:
        cores = [s for s in counters if s.name.endswith(" core")]
        parts = [f"core: {sum(s.count or 0 for s in cores)} over {len(cores)} CPUs"] if cores else []
        parts += [f"{s.name}: {s.count if s.count is not None else s.note}" for s in counters if s not in cores]
        lines.append(f"  Intel throttle counters (times throttled since boot): {'; '.join(parts)}")
    return lines
