"""CPU energy from RAPL through the powercap sysfs interface (Intel, and AMD Zen on recent kernels).

`/sys/class/powercap/intel-rapl:N/energy_uj` is a cumulative counter in microjoules that wraps at
`max_energy_range_uj`. We count the package zones (one per socket) plus DRAM zones where present:
DRAM is a separate RAPL domain, not part of the package energy. `core`/`uncore` sub-zones are
already inside the package and `psys` contains the package, so they are never added.

A counter wraps after max_energy_range_uj (65,532 J on AMD: 11 minutes at 100 W). Reading only a
window's edges cannot tell one wrap from several, so a background thread polls the counters well
within the shortest possible wrap time and every read counts each wrap it saw.
"""

from __future__ import annotations

import glob
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import sysfs
from .base import MEASURED, EnergyReading, EnergySensor, SensorFault, SensorInfo, SensorUnavailable

POWERCAP = "/sys/class/powercap"
# No CPU package draws 10 kW: a larger apparent step means the counter went backwards, not a wrap.
_MAX_PLAUSIBLE_W = 10_000.0
# A generous ceiling on one zone's power, used only to pick the polling period: at this power the
# counter wraps after max_energy_range_uj / _MAX_ZONE_W, and we poll _POLLS_PER_WRAP times in that,
# so a late poll (a loaded CPU, the GIL) still sees every wrap.
_MAX_ZONE_W = 1000.0
_POLLS_PER_WRAP = 4
_MIN_POLL_PERIOD_S = 0.01
_UNKNOWN_RANGE_UJ = 2.0**32  # only needed for wraparound; the smallest range seen on real CPUs


def layout() -> dict[str, float | str]:
    """The zone rules' values for the remote agent (remote/agent.py), which reads RAPL the same way."""
    return {
        "powercap": POWERCAP,
        "max_plausible_w": _MAX_PLAUSIBLE_W,
        "max_zone_w": _MAX_ZONE_W,
        "polls_per_wrap": _POLLS_PER_WRAP,
        "min_poll_period_s": _MIN_POLL_PERIOD_S,
        "unknown_range_uj": _UNKNOWN_RANGE_UJ,
    }


PERMISSION_HINT = (
    "RAPL energy counters are readable only by root on current kernels. Grant read access with "
    "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj` "
    "(or a udev rule / systemd-tmpfiles entry to keep it across reboots), or run the suite as root."
)


@dataclass(frozen=True)
class RaplZone:
    rail: str  # "package-0", "dram-0", ...
    energy_file: Path
    max_range_uj: float


def find_zones() -> list[RaplZone]:
    """Package and DRAM zones, each once; raises SensorUnavailable saying why there are none."""
    base = sysfs.path(POWERCAP)
    if not base.is_dir():
        raise SensorUnavailable(f"no RAPL: {base} does not exist (a VM, or not an Intel/AMD CPU)")
    zones: list[RaplZone] = []
    # intel-rapl:N are packages (or psys), intel-rapl:N:M their sub-zones; intel-rapl-mmio duplicates
    # the package counter and is skipped.
    for zone_dir in sorted(glob.glob(str(base / "intel-rapl:*"))):
        zone = Path(zone_dir)
        try:
            name = sysfs.read_text(zone / "name")
        except OSError:
            continue
        depth = zone.name.count(":")
        if depth == 1 and name.startswith("package"):
            rail = name
        elif name == "dram":
            socket = zone.name.split(":")[1]
            rail = f"dram-{socket}"
        else:
            continue  # psys, core, uncore: would double count
        energy_file = zone / "energy_uj"
        try:
            max_range = sysfs.read_number(zone / "max_energy_range_uj")
        except (PermissionError, SensorFault):
            max_range = _UNKNOWN_RANGE_UJ
        zones.append(RaplZone(rail, energy_file, max_range))
    if not zones:
        raise SensorUnavailable(f"no RAPL package zone under {base}")
    return zones


def wrap_safe_poll_period_s(zones: list[RaplZone]) -> float:
    """How often the counters must be read so that no wrap is missed."""
    shortest_wrap_s = min(z.max_range_uj for z in zones) / 1e6 / _MAX_ZONE_W
    return max(_MIN_POLL_PERIOD_S, shortest_wrap_s / _POLLS_PER_WRAP)


class RaplSensor(EnergySensor):
    """Sum of package (and DRAM) counters, unwrapped by a background poller between reads."""

    def __init__(self, zones: list[RaplZone] | None = None, poll_period_s: float | None = None):
        self.zones = zones if zones is not None else find_zones()
        rails = tuple(z.rail for z in self.zones)
        boundary = "CPU package" + (" + DRAM" if any(r.startswith("dram") for r in rails) else "")
        # RAPL updates about every 1 ms; 10 ms is a safe lower bound for the round length rule.
        self.info = SensorInfo("rapl", MEASURED, boundary, "uJ", 0.001, None, rails)
        self.poll_period_s = poll_period_s if poll_period_s is not None else wrap_safe_poll_period_s(self.zones)
        self._last: dict[str, float] = {}
        self._acc_uj: dict[str, float] = {}
        self._last_t = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fault: SensorFault | None = None
        self.polls = 0
        self._check_readable()

    def _check_readable(self) -> None:
        for zone in self.zones:
            try:
                sysfs.read_number(zone.energy_file)
            except PermissionError:
                raise SensorUnavailable(f"permission denied reading {zone.energy_file}. {PERMISSION_HINT}") from None
            except SensorFault as exc:
                raise SensorUnavailable(str(exc)) from None

    def _raw(self) -> dict[str, float]:
        try:
            return {z.rail: sysfs.read_number(z.energy_file) for z in self.zones}
        except PermissionError as exc:
            raise SensorFault(f"permission lost on {exc.filename}") from None

    def raw_value(self) -> float:
        return sum(self._raw().values())

    def start(self) -> None:
        with self._lock:
            self._last = self._raw()
            self._last_t = time.monotonic()
            self._acc_uj = {rail: 0.0 for rail in self._last}
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="e3p-rapl-poller", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_period_s):
            try:
                self.poll()
            except SensorFault:
                return  # kept in self._fault; the next read() raises it

    def poll(self) -> None:
        """Read the counters and add what they gained since the last poll or read, wraps included."""
        with self._lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        # A fault sticks: a window that spans a failed poll lost an unknown number of wraps.
        if self._fault is not None:
            raise self._fault
        try:
            self._add_deltas_locked()
        except SensorFault as exc:
            self._fault = exc
            raise

    def _add_deltas_locked(self) -> None:
        now_raw = self._raw()
        now = time.monotonic()
        elapsed = max(now - self._last_t, 1e-3)
        for zone in self.zones:
            delta = now_raw[zone.rail] - self._last[zone.rail]
            if delta < 0:
                delta += zone.max_range_uj  # one wrap: polls come often enough that there is never more
                if delta / 1e6 / elapsed > _MAX_PLAUSIBLE_W or delta < 0:
                    raise SensorFault(
                        f"RAPL counter {zone.energy_file} went backwards ({self._last[zone.rail]:.0f} -> {now_raw[zone.rail]:.0f} uJ), not a plausible wrap"
                    )
            self._acc_uj[zone.rail] += delta
        self._last, self._last_t = now_raw, now
        self.polls += 1

    def read(self) -> EnergyReading:
        with self._lock:
            self._poll_locked()
            rails_mj = {rail: uj / 1000.0 for rail, uj in self._acc_uj.items()}
            return EnergyReading(self._last_t, sum(rails_mj.values()), rails_mj)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
