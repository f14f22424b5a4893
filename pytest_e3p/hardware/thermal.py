"""The thermal sources of this machine: temperature zones and sensors, throttle counters and clocks,
found in sysfs and NVML, and which of them watch a round of each device kind. The round monitor
that samples them during a measurement, and the throttle rule it judges a round by, are in
pytest_e3p.measure.thermal.

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

A clock's `judged` flag says whether a low clock counts as throttling (rule 4 of the throttle rule
in pytest_e3p.measure.thermal): only where configuration pins it at its max and the max is a clock a
busy chip holds (see _clock_judged).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kinds import DeviceKind, parse_device_kind
from .sensors import nvml as nvml_sensors
from .sensors import sysfs
from .sensors.base import SensorFault, SensorUnavailable

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
                parts.append(f"clock {self.clock_mhz:.0f} of {self.max_clock_mhz:.0f} MHz ({percent_floor(self.clock_mhz / self.max_clock_mhz)} of max)")
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


def percent_floor(ratio: float) -> str:
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


class TemperatureFile:
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


class ClockFile:
    """A clock file kept open (cpufreq kHz, devfreq Hz) and its maximum, read when the monitor opens."""

    def __init__(
        self, kind: str, name: str, detail: str, cur_path: Path, max_path: Path, units_per_mhz: float, driver: str, governor: str, min_path: Path | None = None
    ):
        self.kind, self.name, self.detail = kind, name, detail
        self.path, self.max_path, self.min_path, self.units_per_mhz = cur_path, max_path, min_path, units_per_mhz
        self.driver, self.governor = driver, governor
        self.attr = sysfs.Attribute(cur_path)
        self.max_mhz: float | None = None
        self.judged = False  # whether a low clock counts as throttling (rule 4 of pytest_e3p.measure.thermal)

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


class ThrottleCounter:
    """An Intel thermal-throttle counter, kept open."""

    def __init__(self, name: str, path: Path):
        self.kind, self.name, self.path = "throttle_count", name, path
        self.attr = sysfs.Attribute(path)

    def read_count(self) -> int:
        return int(self.attr.read_number())

    def close(self) -> None:
        self.attr.close()


@dataclass(frozen=True)
class NvmlReading:
    temperature_c: float | None
    clock_mhz: float | None
    reasons: tuple[str, ...]


class NvmlGpu:
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

    def read(self) -> NvmlReading:
        nv, h = self.nvml, self.handle
        temperature = self._need(nvml_sensors.gpu_temperature_c(nv, h), "temperature") if self.has_temperature else None
        clock = self._need(nvml_sensors.gpu_sm_clock_mhz(nv, h), "SM clock") if self.has_clock else None
        reasons = self._need(nvml_sensors.gpu_clock_event_reasons(nv, h), "clock-event reasons") if self.has_reasons else ()
        return NvmlReading(temperature, clock, reasons)

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
            used_for=(DeviceKind.CUDA,),
            note=f"not supported by this GPU: {', '.join(missing)}" if missing else "",
        )


# ------------------------------------------------------------------------------------------ discovery


@dataclass
class _Found:
    zones: list[TemperatureFile] = field(default_factory=list)
    hwmon: list[TemperatureFile] = field(default_factory=list)
    counters: list[ThrottleCounter] = field(default_factory=list)
    cpufreq: list[ClockFile] = field(default_factory=list)
    devfreq: list[ClockFile] = field(default_factory=list)
    unreadable: list[ThermalSource] = field(default_factory=list)

    def all(self) -> list[TemperatureFile | ThrottleCounter | ClockFile]:
        return [*self.zones, *self.hwmon, *self.counters, *self.cpufreq, *self.devfreq]

    def close_except(self, keep: list[TemperatureFile | ClockFile | ThrottleCounter]) -> None:
        kept = {id(s) for s in keep}
        for s in self.all():
            if id(s) not in kept:
                s.close()


def _readable(found: _Found, source: TemperatureFile | ThrottleCounter | ClockFile, read: Callable[[], object]) -> bool:
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
        source = TemperatureFile("thermal_zone", zone_type, zone.name, zone / "temp", _trip_points(zone))
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
            source = TemperatureFile("hwmon", f"{chip} {label}", hwmon.name, input_path, trips)
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
            counter = ThrottleCounter(f"{cpu.name} core", folder / "core_throttle_count")
            if _readable(found, counter, counter.read_count):
                found.counters.append(counter)
        if (folder / "package_throttle_count").exists():
            package = _text_or(cpu / "topology/physical_package_id", "0")
            if package in packages:
                continue  # the same package counter, shown again in another CPU of the package
            packages.add(package)
            counter = ThrottleCounter(f"package {package}", folder / "package_throttle_count")
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
        clock = ClockFile(
            "cpufreq", name, detail, folder / "scaling_cur_freq", folder / "scaling_max_freq", 1000.0, driver, governor, folder / "scaling_min_freq"
        )
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
        clock = ClockFile("devfreq", device.name, governor, device / "cur_freq", device / "max_freq", 1e6, "", governor, device / "min_freq")
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
class ThermalSources:
    """The sources that watch a round of one device kind, opened: the measured device's temperatures
    (measured), others its throttling follows (watched: a Jetson GPU's CPU, SoC and junction zones),
    its clocks and throttle counters, its NVML GPU; note: what is missing, and why."""

    device_kind: DeviceKind
    measured: list[TemperatureFile] = field(default_factory=list)
    watched: list[TemperatureFile] = field(default_factory=list)
    clocks: list[ClockFile] = field(default_factory=list)
    counters: list[ThrottleCounter] = field(default_factory=list)
    nvml: NvmlGpu | None = None
    note: str = ""

    def files(self) -> list[TemperatureFile | ClockFile | ThrottleCounter]:
        """The sysfs sources, the measured temperatures first."""
        return [*self.measured, *self.watched, *self.clocks, *self.counters]

    def close(self) -> None:
        for source in self.files():
            source.close()


def _clock_judged(kind: str, clock: ClockFile) -> bool:
    """Rule 4 of the throttle rule (pytest_e3p.measure.thermal): may a low clock of this source count as throttling?"""
    if clock.governor in PINNED_GOVERNORS or not clock.pinned_at_max():
        return False
    if clock.kind == "devfreq":
        return kind == DeviceKind.JETSON
    return kind == DeviceKind.CPU and bool(clock.driver) and clock.driver not in BOOST_DRIVERS


def _select(kind: DeviceKind, found: _Found) -> ThermalSources:
    """Which of the sources found watch a round of this device kind (see the module docstring)."""
    if kind == DeviceKind.CPU:
        measured = [z for z in found.zones if CPU_ZONE_RE.search(z.name)] + found.hwmon
        if not measured:
            measured = [z for z in found.zones if z.name.lower() in LAST_RESORT_ZONES]
        return ThermalSources(kind, measured, [], list(found.cpufreq), list(found.counters))
    if kind == DeviceKind.JETSON:
        gpu = [z for z in found.zones if GPU_ZONE_RE.search(z.name)]
        soc = [z for z in found.zones if CPU_ZONE_RE.search(z.name) and z not in gpu]
        return ThermalSources(kind, gpu or soc, soc if gpu else [], list(found.devfreq), [])
    return ThermalSources(kind)


def _no_source_note() -> str:
    return f"no thermal zone or hwmon sensor readable under {sysfs.path('/sys')}"


def _nvml_gpus(index: int | None = None, uuid: str | None = None) -> tuple[list[NvmlGpu], str]:
    """The NVML GPU of a cuda device (by UUID where known, as torch and NVML may number GPUs
    differently), or every GPU when index is None; with why there is none."""
    try:
        nvml = nvml_sensors.load_pynvml()
        indices = [index] if index is not None else list(range(nvml_sensors.gpu_count()))
    except SensorUnavailable as exc:
        return [], f"NVML: {exc}"
    gpus: list[NvmlGpu] = []
    for i in indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else nvml.nvmlDeviceGetHandleByIndex(i)
        except nvml.NVMLError as exc:
            return gpus, f"NVML has no GPU {uuid or i}: {exc}"
        gpus.append(NvmlGpu(nvml, handle, f"GPU {i} (NVML)"))
    return gpus, ""


def find_sources(device_kind: str, cuda_index: int = 0, uuid: str | None = None) -> ThermalSources:
    """The thermal sources of the measured device: "cpu", "cuda" (NVML GPU cuda_index, or uuid) or
    "jetson" (a Jetson GPU run). Never raises for a missing source: the result then has none, and a
    note saying why."""
    kind = parse_device_kind(device_kind)
    if kind == DeviceKind.CUDA:
        gpus, why = _nvml_gpus(cuda_index, uuid)
        gpu = gpus[0] if gpus else None
        if gpu is not None and not gpu.answers:
            why, gpu = f"{gpu.name} reports no temperature, SM clock or clock-event reasons", None
        return ThermalSources(kind, nvml=gpu, note=why)
    found = _discover()
    chosen = _select(kind, found)
    found.close_except(chosen.files())
    for clock in chosen.clocks:
        clock.judged = _clock_judged(kind, clock)
    chosen.note = "" if chosen.measured else _no_source_note()
    if chosen.note and (chosen.clocks or chosen.counters):
        chosen.note += ": rounds have clocks and throttle counts but no temperature"
    return chosen


# ------------------------------------------------------------------------------------------- describe


def source_now(source: TemperatureFile | ClockFile | ThrottleCounter, used_for: tuple[str, ...]) -> ThermalSource:
    """A source's values now; a read that fails is a note, never an exception."""
    path = str(source.path)
    try:
        if isinstance(source, TemperatureFile):
            return ThermalSource(
                source.kind, source.name, path, temperature_c=source.read_c(), trip_points=source.trips, detail=source.detail, used_for=used_for
            )
        if isinstance(source, ClockFile):
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
    kinds = [DeviceKind.CPU, DeviceKind.JETSON] if is_jetson() else [DeviceKind.CPU]
    used: dict[int, list[str]] = {}
    for kind in kinds:
        for source in _select(kind, found).files():
            used.setdefault(id(source), []).append(kind)
    try:
        sources = [source_now(s, tuple(used.get(id(s), ()))) for s in found.all()] + found.unreadable
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
