"""NVIDIA Jetson energy from the INA3221 power monitors, read straight from sysfs.

Two layouts exist, and rails are always found by their label, never by bus or hwmon number:

- iio (TX2, Nano, L4T 32): `/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_N` names rail N
  and `in_power{N}_input` gives its power in mW.
- hwmon (Xavier, Orin, L4T 34+): `/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in{N}_label` names
  channel N, `in{N}_input` is its voltage in mV and `curr{N}_input` its current in mA.

The total is the module's input rail where the board has one (VDD_IN; POM_5V_IN on the original
Nano): every other module rail is inside it, so adding them would count twice. AGX Xavier and AGX
Orin have no input rail; there the total is the sum of the module's rails and the boundary says so.
The TX1/TX2 developer-kit carrier board has its own INA3221s (i2c addresses 0x42, 0x43, e.g.
VDD_MUX): they are outside the module, so they are named apart and never read into the energy.

jtop (jetson-stats) is the fallback where the rails are not readable but its root service runs. It
moves the input rail out of `power["rail"]` into `power["tot"]`, so the total comes from `tot`; we
read the instantaneous `power` fields, never `avg` (a moving average, useless for energy).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..board import Board, identify_board
from . import sysfs
from .base import MEASURED, SamplingSensor, SensorFault, SensorInfo, SensorUnavailable

DEFAULT_RATE_HZ = 100.0  # 2 s windows integrate within 1% (scripts/bench_sampling.py)
# The module input rail, by label, in order of preference: what jetson-stats and Zeus take as the total.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
# INA3221s of the TX1/TX2 developer-kit carrier board; the module's own monitors sit at 0x40/0x41.
CARRIER_ADDRESSES = frozenset({0x42, 0x43})
_UNCONNECTED = {"", "NC", "nc"}
# Where the monitors sit, per layout (globs under the sysfs root), and the hwmon channel that is no rail.
IIO_MONITORS = "/sys/bus/i2c/drivers/ina3221x/*/iio:device*"
HWMON_MONITORS = "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
SUM_CHANNEL_PREFIX = "sum of"  # Orin's seventh "sum of shunt voltages" channel has no current
INPUT_BOUNDARY = "Jetson module input ({total})"
SUM_BOUNDARY = "sum of the Jetson module's INA3221 rails (the board has no input rail VDD_IN/POM_5V_IN)"


def layout() -> dict[str, Any]:
    """The tables above as plain values: the remote agent (remote/agent.py, which cannot import this
    package) finds and totals a board's rails with them, so local and remote read the same rails."""
    return {
        "input_rails": list(INPUT_RAILS),
        "carrier_addresses": sorted(CARRIER_ADDRESSES),
        "unconnected": sorted(_UNCONNECTED),
        "iio_monitors": IIO_MONITORS,
        "hwmon_monitors": HWMON_MONITORS,
        "sum_channel_prefix": SUM_CHANNEL_PREFIX,
        "input_boundary": INPUT_BOUNDARY,
        "sum_boundary": SUM_BOUNDARY,
        "default_rate_hz": DEFAULT_RATE_HZ,
    }


class Rail:
    """One INA3221 channel: a power file (iio, mW) or voltage (mV) and current (mA) files (hwmon)."""

    def __init__(
        self, label: str, power_file: Path | None = None, voltage_file: Path | None = None, current_file: Path | None = None, on_carrier: bool = False
    ):
        self.label = label
        self.on_carrier = on_carrier  # a carrier-board monitor: outside the module boundary
        self._power = sysfs.Attribute(power_file) if power_file else None
        self._voltage = sysfs.Attribute(voltage_file) if voltage_file else None
        self._current = sysfs.Attribute(current_file) if current_file else None

    def power_mw(self) -> float:
        if self._power is not None:
            value = self._power.read_number()
        else:
            assert self._voltage is not None and self._current is not None  # a rail without a power file has both
            value = self._voltage.read_number() * self._current.read_number() / 1000.0
        if value < 0:
            raise SensorFault(f"rail {self.label} read a negative power ({value} mW)")
        return value

    def close(self) -> None:
        for attr in (self._power, self._voltage, self._current):
            if attr is not None:
                attr.close()


def _on_carrier(device_dir: Path) -> bool:
    """Whether an INA3221 (its i2c device folder, "<bus>-<4 hex digits address>") is on the carrier."""
    try:
        address = int(device_dir.name.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return False
    return address in CARRIER_ADDRESSES


def _iio_rails() -> list[Rail]:
    rails = []
    pattern = str(sysfs.path(IIO_MONITORS))
    for dev in sorted(glob.glob(pattern)):
        carrier = _on_carrier(Path(dev).parent)
        for name_file in sorted(Path(dev).glob("rail_name_*")):
            n = name_file.name.rsplit("_", 1)[1]
            label = sysfs.read_text(name_file)
            if label not in _UNCONNECTED:
                rails.append(Rail(label, power_file=Path(dev) / f"in_power{n}_input", on_carrier=carrier))
    return rails


def _hwmon_rails() -> list[Rail]:
    rails = []
    pattern = str(sysfs.path(HWMON_MONITORS))
    for dev in sorted(glob.glob(pattern)):
        carrier = _on_carrier(Path(dev).parent.parent)
        for label_file in sorted(Path(dev).glob("in*_label")):
            n = label_file.name[2:].split("_", 1)[0]
            label = sysfs.read_text(label_file)
            if label in _UNCONNECTED or label.startswith(SUM_CHANNEL_PREFIX):
                continue
            rails.append(Rail(label, voltage_file=Path(dev) / f"in{n}_input", current_file=Path(dev) / f"curr{n}_input", on_carrier=carrier))
    return rails


def find_rails() -> list[Rail]:
    """All labelled INA3221 rails on this board (iio or hwmon layout), carrier-board ones marked."""
    rails = _iio_rails() or _hwmon_rails()
    if not any(not r.on_carrier for r in rails):
        raise SensorUnavailable(
            f"no INA3221 rails of a Jetson module under {sysfs.path('/sys/bus/i2c/drivers')} (not a Jetson "
            "board, or set E3P_SYSFS_ROOT to the tree that holds them)"
        )
    return rails


def input_rail(labels) -> str | None:
    """The module input rail among the labels, or None (AGX Xavier, AGX Orin have none)."""
    return next((name for name in INPUT_RAILS if name in labels), None)


class _JetsonSensor(SamplingSensor):
    """The total of a Jetson module: its input rail where it has one, else the sum of its rails."""

    _total: str | None = None

    def _describe(
        self, name: str, labels: tuple[str, ...], total: str | None, outside: tuple[str, ...] = (), update_period_s: float | None = None
    ) -> SensorInfo:
        self._total = total
        if total:
            boundary = INPUT_BOUNDARY.format(total=total)
        else:
            boundary = SUM_BOUNDARY
        period = max(self.period_s, update_period_s or 0.0)
        return SensorInfo(name, MEASURED, boundary, "mW", period, total or "sum", labels, outside)

    def total_mj(self, rails_mj: dict[str, float]) -> float:
        return rails_mj[self._total] if self._total else sum(rails_mj.values())


class JetsonRailSensor(_JetsonSensor):
    """Samples every rail at rate_hz from sysfs and integrates."""

    def __init__(self, rails: list[Rail] | None = None, rate_hz: float = DEFAULT_RATE_HZ):
        super().__init__(rate_hz)
        found = rails if rails is not None else find_rails()
        # Carrier rails are never sampled: their energy is outside the module and must not sit in
        # the per-rail figures beside the total as if it were inside it.
        self.rails = [r for r in found if not r.on_carrier]
        self.carrier_rails = [r for r in found if r.on_carrier]
        labels = tuple(r.label for r in self.rails)
        self.info = self._describe("jetson-ina3221", labels, input_rail(labels), tuple(r.label for r in self.carrier_rails))
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


# Power monitors whose channels are module rails; jetson-stats tags each sensor it finds with a type
# ("INA3221" for the i2c monitors, the power_supply's own type for /sys/class/power_supply entries).
MONITOR_TYPES = frozenset({"INA3221", "INA238"})
UCSI_PREFIX = "ucsi-source-psy-"  # jetson-stats names a UCSI supply by its folder without this prefix


def power_supply_names() -> frozenset[str]:
    """The names jetson-stats gives the entries of /sys/class/power_supply (USB-PD sources, chargers):
    each folder's name, and for a UCSI source the folder's name without its prefix."""
    try:
        folders = os.listdir(sysfs.path("/sys/class/power_supply"))
    except OSError:
        return frozenset()
    return frozenset(folders) | frozenset(f.removeprefix(UCSI_PREFIX) for f in folders)


def is_monitor_rail(name: str, values: dict, supplies: frozenset[str]) -> bool:
    """Whether a jtop rail is an INA3221/INA238 channel, not a power supply's negotiated figures.

    jetson-stats (jtop/core/power.py, before its PR 900) lists /sys/class/power_supply entries beside
    the INA3221 rails, e.g. "USBC000:001" from ucsi-source-psy-USBC000:001 on an AGX Orin: USB-PD
    status, not a measured rail. Where the values carry jetson-stats' "type" it decides; its
    read_power_status drops "type" from what the service serves, so otherwise the entry's source
    decides: a name of /sys/class/power_supply, or a power_supply's "status" field (no i2c rail has one)."""
    kind = values.get("type")
    if kind is not None:
        return str(kind).upper() in MONITOR_TYPES
    return name not in supplies and "status" not in values


class JtopSensor(_JetsonSensor):
    """Fallback through jetson-stats' jtop service, for runners that cannot read the rails.

    jetson-stats' `power` is `{"rail": {label: {"volt", "curr", "power", "avg", "online", ...}},
    "tot": {"power", "avg", ...}}`; the input rail (VDD_IN, POM_5V_IN) is not in "rail" but is "tot",
    with its label in `tot["name"]`. Without an input rail "tot" (no "name") is the sum of "rail",
    USB-PD supplies included, so the total is then our own sum of the INA rails (is_monitor_rail)."""

    def __init__(self, rate_hz: float = DEFAULT_RATE_HZ, jtop_factory=None):
        super().__init__(rate_hz)
        if jtop_factory is None:
            try:
                from jtop import jtop as jtop_factory  # type: ignore[no-redef]
            except ImportError:
                raise SensorUnavailable("jetson-stats is not installed: pip install 'pytest-e3p[jetson]'") from None
        self._jtop = jtop_factory()
        try:
            self._jtop.start()
        except Exception as exc:  # jtop raises JtopException, PermissionError, ConnectionRefusedError...
            raise SensorUnavailable(f"jtop.service cannot be reached: {exc}") from None
        power = self._jtop.power
        if not power or not power.get("rail") and not power.get("tot"):
            self._jtop.close()
            raise SensorUnavailable("jtop reports no power rails on this board")
        self._input = power.get("tot", {}).get("name")
        supplies = power_supply_names()
        rails = power.get("rail", {})
        self._rails = tuple(name for name, values in rails.items() if is_monitor_rail(name, values, supplies))
        outside = tuple(name for name in rails if name not in self._rails)
        if not self._rails and not self._input:
            self._jtop.close()
            raise SensorUnavailable(f"jtop reports no INA3221/INA238 rails on this board, only power supplies ({', '.join(outside)})")
        labels = self._rails + ((self._input,) if self._input else ())
        # jtop refreshes its values once per service interval (1 s by default): the protocol's rounds
        # must span several of those, whatever our sampling rate.
        interval = getattr(self._jtop, "interval", None)
        self.info = self._describe(
            "jetson-jtop", labels, self._input, outside, update_period_s=interval if isinstance(interval, (int, float)) and interval > 0 else None
        )

    def sample_mw(self) -> dict[str, float]:
        # spin=True: jtop's ok() otherwise blocks until its next update (up to a second per sample).
        if not self._jtop.ok(spin=True):
            raise SensorFault("jtop service stopped answering")
        power = self._jtop.power
        try:
            # 'power' is the instantaneous reading; 'avg' is a moving average and must not be integrated.
            rails = {name: float(power["rail"][name]["power"]) for name in self._rails}
            if self._input:
                rails[self._input] = float(power["tot"]["power"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SensorFault(f"jtop returned no usable power reading ({exc!r})") from None
        return rails

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


def jetson_identity(board: Board | None = None) -> dict[str, Any]:
    """What makes two Jetson results comparable: the model, L4T release and power mode (the keys
    results have always had, "unknown" where absent), and the board's compatible list, module part
    number and SoC from the device tree."""
    board = board if board is not None else identify_board()
    return {
        "model": board.model or "unknown",
        "l4t": board.l4t or "unknown",
        "power_mode": _nvpmodel_mode(),
        "module": board.module,
        "part": board.part,
        "soc": board.soc,
        "compatible": list(board.compatible),
    }


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
    """A Tegra SoC in /proc/device-tree/compatible (see hardware/board.py)."""
    return identify_board().is_jetson
