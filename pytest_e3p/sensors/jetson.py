"""NVIDIA Jetson energy from the INA3221 power monitors, read straight from sysfs.

Two layouts exist, and rails are always found by their label, never by bus or hwmon number:

- iio (TX2, L4T 32): `/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_N` names rail N and
  `in_power{N}_input` gives its power in mW.
- hwmon (Xavier, Orin, L4T 34+): `/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in{N}_label` names
  channel N, `in{N}_input` is its voltage in mV and `curr{N}_input` its current in mA.

The total is VDD_IN (the module input) where the board has it; AGX Orin has no VDD_IN, so there the
total is the sum of its rails and the boundary says so. jtop (jetson-stats) is the fallback where the
rails are not readable but its root service runs: we read its instantaneous `power` field, never
its `avg` (a moving average, useless for energy).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from . import sysfs
from .base import MEASURED, SamplingSensor, SensorFault, SensorInfo, SensorUnavailable

DEFAULT_RATE_HZ = 100.0  # 2 s windows integrate within 1% (scripts/bench_sampling.py)
TOTAL_RAIL = "VDD_IN"
_UNCONNECTED = {"", "NC", "nc"}


class Rail:
    """One INA3221 channel: a power file (iio, mW) or voltage (mV) and current (mA) files (hwmon)."""

    def __init__(self, label: str, power_file: Path | None = None, voltage_file: Path | None = None, current_file: Path | None = None):
        self.label = label
        self._power = sysfs.Attribute(power_file) if power_file else None
        self._voltage = sysfs.Attribute(voltage_file) if voltage_file else None
        self._current = sysfs.Attribute(current_file) if current_file else None

    def power_mw(self) -> float:
        if self._power is not None:
            value = self._power.read_number()
        else:
            value = self._voltage.read_number() * self._current.read_number() / 1000.0
        if value < 0:
            raise SensorFault(f"rail {self.label} read a negative power ({value} mW)")
        return value

    def close(self) -> None:
        for attr in (self._power, self._voltage, self._current):
            if attr is not None:
                attr.close()


def _iio_rails() -> list[Rail]:
    rails = []
    pattern = str(sysfs.path("/sys/bus/i2c/drivers/ina3221x")) + "/*/iio:device*"
    for dev in sorted(glob.glob(pattern)):
        for name_file in sorted(Path(dev).glob("rail_name_*")):
            n = name_file.name.rsplit("_", 1)[1]
            label = sysfs.read_text(name_file)
            if label not in _UNCONNECTED:
                rails.append(Rail(label, power_file=Path(dev) / f"in_power{n}_input"))
    return rails


def _hwmon_rails() -> list[Rail]:
    rails = []
    pattern = str(sysfs.path("/sys/bus/i2c/drivers/ina3221")) + "/*/hwmon/hwmon*"
    for dev in sorted(glob.glob(pattern)):
        for label_file in sorted(Path(dev).glob("in*_label")):
            n = label_file.name[2:].split("_", 1)[0]
            label = sysfs.read_text(label_file)
            if label in _UNCONNECTED or label.startswith("sum of"):
                continue  # Orin's fourth "sum of shunt voltages" channel has no current
            rails.append(Rail(label, voltage_file=Path(dev) / f"in{n}_input", current_file=Path(dev) / f"curr{n}_input"))
    return rails


def find_rails() -> list[Rail]:
    """All labelled INA3221 rails on this board (iio or hwmon layout)."""
    rails = _iio_rails() or _hwmon_rails()
    if not rails:
        raise SensorUnavailable(
            f"no INA3221 rails under {sysfs.path('/sys/bus/i2c/drivers')} (not a Jetson board, "
            "or set E3P_SYSFS_ROOT to the tree that holds them)"
        )
    return rails


class _JetsonSensor(SamplingSensor):
    """The total of a Jetson board: VDD_IN where it has one, else the sum of its rails."""

    _total: str | None = None

    def _describe(self, name: str, labels: tuple[str, ...]) -> SensorInfo:
        self._total = TOTAL_RAIL if TOTAL_RAIL in labels else None
        boundary = "Jetson module input (VDD_IN)" if self._total else "sum of the board's INA3221 rails (no VDD_IN)"
        return SensorInfo(name, MEASURED, boundary, "mW", self.period_s, self._total or "sum", labels)

    def total_mj(self, rails_mj: dict[str, float]) -> float:
        return rails_mj[self._total] if self._total else sum(rails_mj.values())


class JetsonRailSensor(_JetsonSensor):
    """Samples every rail at rate_hz from sysfs and integrates."""

    def __init__(self, rails: list[Rail] | None = None, rate_hz: float = DEFAULT_RATE_HZ):
        super().__init__(rate_hz)
        self.rails = rails if rails is not None else find_rails()
        self.info = self._describe("jetson-ina3221", tuple(r.label for r in self.rails))
        for rail in self.rails:  # fail now, with the fix, rather than in the first window
            try:
                rail.power_mw()
            except PermissionError as exc:
                raise SensorUnavailable(
                    f"permission denied reading {exc.filename}: add the runner's user to a group that can "
                    "read the INA3221 sysfs files (a udev rule) or run as root"
                ) from None
            except SensorFault as exc:
                raise SensorUnavailable(str(exc)) from None

    def sample_mw(self) -> dict[str, float]:
        return {rail.label: rail.power_mw() for rail in self.rails}

    def close(self) -> None:
        super().close()
        for rail in self.rails:
            rail.close()


def jtop_service_active() -> bool:
    if shutil.which("systemctl") is None:
        return False
    result = subprocess.run(["systemctl", "is-active", "jtop.service"], capture_output=True, text=True)
    return result.stdout.strip() == "active"


class JtopSensor(_JetsonSensor):
    """Fallback through jetson-stats' jtop service, for runners that cannot read the rails."""

    def __init__(self, rate_hz: float = DEFAULT_RATE_HZ, jtop_factory=None):
        super().__init__(rate_hz)
        if jtop_factory is None:
            try:
                from jtop import jtop as jtop_factory  # type: ignore[no-redef]
            except ImportError:
                raise SensorUnavailable("jetson-stats is not installed: pip install 'pytest-e3p[jetson]'") from None
        self._jtop = jtop_factory()
        self._jtop.start()
        self.info = self._describe("jetson-jtop", tuple(self._jtop.power["rail"]))

    def sample_mw(self) -> dict[str, float]:
        if not self._jtop.ok():
            raise SensorFault("jtop service stopped answering")
        # 'power' is the instantaneous reading; 'avg' is a moving average and must not be integrated.
        return {name: float(values["power"]) for name, values in self._jtop.power["rail"].items()}

    def close(self) -> None:
        super().close()
        self._jtop.close()


def open_jetson_sensor(rate_hz: float = DEFAULT_RATE_HZ) -> SamplingSensor:
    """The rails from sysfs, or jtop where they cannot be read but jtop.service runs."""
    try:
        return JetsonRailSensor(rate_hz=rate_hz)
    except SensorUnavailable as rails_error:
        if jtop_service_active():
            return JtopSensor(rate_hz=rate_hz)
        raise rails_error


def jetson_identity() -> dict[str, str]:
    """Model, L4T release and power mode: what makes two Jetson results comparable."""
    identity: dict[str, str] = {}
    try:
        identity["model"] = sysfs.read_text(sysfs.path("/proc/device-tree/model")).rstrip("\x00")
    except OSError:
        identity["model"] = "unknown"
    try:
        first = sysfs.read_text(sysfs.path("/etc/nv_tegra_release")).splitlines()[0]
        # "# R32 (release), REVISION: 7.1, GCID: ..." -> "R32.7.1"
        major = first.split()[1]
        revision = first.split("REVISION:")[1].split(",")[0].strip()
        identity["l4t"] = f"{major}.{revision}"
    except (OSError, IndexError):
        identity["l4t"] = "unknown"
    identity["power_mode"] = _nvpmodel_mode()
    return identity


def _nvpmodel_mode() -> str:
    if shutil.which("nvpmodel") is None or os.environ.get("E3P_SYSFS_ROOT"):
        return "unknown"
    result = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True)
    # "NV Power Mode: MAXN\n0"
    for line in result.stdout.splitlines():
        if "Power Mode" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def is_jetson() -> bool:
    try:
        return "jetson" in sysfs.read_text(sysfs.path("/proc/device-tree/model")).lower()
    except OSError:
        return False
