"""NVIDIA GPU energy through NVML (package `nvidia-ml-py`, module `pynvml`).

Three readings, probed when the sensor opens and used in this order (nvml.h):

1. `nvmlDeviceGetTotalEnergyConsumption`: a cumulative counter in mJ that the driver updates every
   20-100 ms. Documented for Volta and newer, but whether a board has it is decided by reading it
   (twice), never by the architecture number: laptop GPUs and Tegra answer NOT_SUPPORTED, and
   Tegra's architecture value (NVML_DEVICE_ARCH_T23X = 11, Orin) is larger than Volta's (5).
2. The instantaneous power field `NVML_FI_DEV_POWER_INSTANT` (186, mW; CUDA 12.2 / driver 535) through
   `nvmlDeviceGetFieldValues`, sampled and integrated by trapezoid. Each field in the answer carries its
   own nvmlReturn: the call can succeed while the field says NOT_SUPPORTED.
3. `nvmlDeviceGetPowerUsage` (mW): a ~1 s moving average on Ampere and newer. Integrated only as the last
   resort, labelled so in the sensor's name and boundary, with a 1 s update period so the protocol's
   rounds are long enough for the lag to wash out.

Where none answers, energy is unavailable with one line naming each reading and NVML's answer. MIG
slices have no power reading. An integrated (Tegra) GPU is never measured here: a Jetson's energy comes
from its INA3221 rails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .base import MEASURED, EnergyReading, EnergySensor, SamplingSensor, SensorFault, SensorInfo, SensorUnavailable

DEFAULT_RATE_HZ = 100.0  # 2 s windows integrate within 1% (scripts/bench_sampling.py)
# The driver refreshes the counter every 20-100 ms; rounds last at least 10 update periods.
COUNTER_UPDATE_PERIOD_S = 0.1
# nvmlDeviceGetPowerUsage is a ~1 s moving average (Ampere and newer): sampling it faster than 10 Hz
# only re-reads the same value.
AVERAGE_UPDATE_PERIOD_S = 1.0
AVERAGE_MAX_RATE_HZ = 10.0

# nvml.h values, for bindings too old to name them
FI_DEV_POWER_INSTANT = 186
DEVICE_ARCH_T23X = 11  # "Devices based on NVIDIA Orin architecture" (nvml.h, CUDA 12.x)

COUNTER, INSTANT, AVERAGE = "counter", "instant", "average"
READINGS = (COUNTER, INSTANT, AVERAGE)  # the fallback order
MODES = ("auto", *READINGS)
MODE_ALIASES = {"sampled": INSTANT}  # the name of the instant mode before the average one existed

# nvmlReturn_t (nvml.h), so a per-field answer and an NVMLError's value print by name
NVML_RETURN_NAMES = {
    0: "SUCCESS",
    1: "UNINITIALIZED",
    2: "INVALID_ARGUMENT",
    3: "NOT_SUPPORTED",
    4: "NO_PERMISSION",
    5: "ALREADY_INITIALIZED",
    6: "NOT_FOUND",
    7: "INSUFFICIENT_SIZE",
    8: "INSUFFICIENT_POWER",
    9: "DRIVER_NOT_LOADED",
    10: "TIMEOUT",
    11: "IRQ_ISSUE",
    12: "LIBRARY_NOT_FOUND",
    13: "FUNCTION_NOT_FOUND",
    14: "CORRUPTED_INFOROM",
    15: "GPU_IS_LOST",
    16: "RESET_REQUIRED",
    17: "OPERATING_SYSTEM",
    18: "LIB_RM_VERSION_MISMATCH",
    19: "IN_USE",
    20: "MEMORY",
    21: "NO_DATA",
    22: "VGPU_ECC_NOT_SUPPORTED",
    23: "INSUFFICIENT_RESOURCES",
    24: "FREQ_NOT_SUPPORTED",
    25: "ARGUMENT_VERSION_MISMATCH",
    26: "DEPRECATED",
    27: "NOT_READY",
    999: "UNKNOWN",
}


def nvml_error_text(exc: Exception) -> str:
    """An NVMLError as nvml.h names it ("NVML_ERROR_NOT_SUPPORTED"); pynvml keeps the code in .value."""
    code = getattr(exc, "value", None)
    if isinstance(code, int) and code in NVML_RETURN_NAMES:
        return f"NVML_ERROR_{NVML_RETURN_NAMES[code]}"
    return str(exc) or type(exc).__name__


def return_text(code: int) -> str:
    return f"{code} ({NVML_RETURN_NAMES.get(code, 'unknown code')})"


def load_pynvml() -> Any:
    """Import and initialise pynvml, or say why it cannot be used here."""
    try:
        import pynvml
    except ImportError:
        raise SensorUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise SensorUnavailable(f"NVML cannot start ({exc}): no NVIDIA driver on this machine") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def device_handle(nvml: Any, index: int = 0, uuid: str | None = None) -> Any:
    """The NVML handle of a GPU, by UUID (what torch reports) or by index; refuses MIG."""
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        raise SensorUnavailable(f"NVML has no GPU {uuid or index}: {exc}") from None
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:
        current = 0  # pre-Ampere GPUs answer "not supported": no MIG
    if current == nvml.NVML_DEVICE_MIG_ENABLE:
        raise SensorUnavailable(
            "this GPU is partitioned with MIG, and MIG slices have no power reading: run on a GPU "
            "with MIG disabled (nvidia-smi -mig 0) or without energy (--device cuda without --e3p-require-sensor)"
        )
    return handle


def is_integrated(nvml: Any, handle: Any) -> bool:
    """A Tegra (Orin) GPU by NVML's architecture value: its energy is read from the board's rails."""
    try:
        arch = nvml.nvmlDeviceGetArchitecture(handle)
    except (nvml.NVMLError, AttributeError):
        return False
    return bool(arch == getattr(nvml, "NVML_DEVICE_ARCH_T23X", DEVICE_ARCH_T23X))


@dataclass(frozen=True)
class ReadingProbe:
    """Whether one NVML energy reading answers on this GPU, and what it answered."""

    reading: str  # "counter" | "instant" | "average"
    ok: bool
    detail: str  # "412345 mJ", "NVML_ERROR_NOT_SUPPORTED", "field 186 returned 3 (NOT_SUPPORTED)"


def _call(nvml: Any, function: str, *args: Any) -> tuple[Any, str]:
    """(answer, "") or (None, why not): a binding without the function counts as an answer too."""
    fn = getattr(nvml, function, None)
    if fn is None:
        return None, f"pynvml has no {function} (upgrade nvidia-ml-py)"
    try:
        return fn(*args), ""
    except nvml.NVMLError as exc:
        return None, nvml_error_text(exc)


def _instant_field(nvml: Any, handle: Any) -> tuple[float | None, str]:
    """The instantaneous power field (mW), or None and why not (the call's error or the field's own)."""
    field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", FI_DEV_POWER_INSTANT)
    answer, why = _call(nvml, "nvmlDeviceGetFieldValues", handle, [field_id])
    if why:
        return None, why
    try:
        field = answer[0]
    except (IndexError, TypeError):  # a malformed answer, not a reading
        return None, f"field {field_id}: no value in NVML's answer"
    success = getattr(nvml, "NVML_SUCCESS", 0)
    if field.nvmlReturn != success:
        return None, f"field {field_id} returned {return_text(int(field.nvmlReturn))}"
    return float(field.value.uiVal), ""


def _probe_counter(nvml: Any, handle: Any) -> ReadingProbe:
    # read twice: a counter that answers once and then fails or runs backwards is no counter
    first, why = _call(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle)
    if why:
        return ReadingProbe(COUNTER, False, why)
    second, why = _call(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle)
    if why:
        return ReadingProbe(COUNTER, False, f"second read: {why}")
    if second < first:
        return ReadingProbe(COUNTER, False, f"went backwards between two reads ({first} -> {second} mJ)")
    return ReadingProbe(COUNTER, True, f"{second} mJ")


def _probe_instant(nvml: Any, handle: Any) -> ReadingProbe:
    power_mw, why = _instant_field(nvml, handle)
    return ReadingProbe(INSTANT, False, why) if power_mw is None else ReadingProbe(INSTANT, True, f"{power_mw:.0f} mW")


def _probe_average(nvml: Any, handle: Any) -> ReadingProbe:
    power_mw, why = _call(nvml, "nvmlDeviceGetPowerUsage", handle)
    return ReadingProbe(AVERAGE, False, why) if why else ReadingProbe(AVERAGE, True, f"{power_mw} mW (1 s moving average)")


def probe_readings(nvml: Any, handle: Any) -> list[ReadingProbe]:
    """Each energy reading of the GPU tried once, in the fallback order: counter, instant, average."""
    return [_probe_counter(nvml, handle), _probe_instant(nvml, handle), _probe_average(nvml, handle)]


def unavailable_line(probes: list[ReadingProbe]) -> str:
    """The one line that says why there is no energy: each reading and NVML's answer."""
    return "energy unavailable: " + "; ".join(f"{p.reading}: {p.detail}" for p in probes)


class NvmlCounterSensor(EnergySensor):
    """The driver's cumulative energy counter (mJ)."""

    def __init__(self, nvml: Any, handle: Any):
        self.nvml, self.handle = nvml, handle
        self.info = SensorInfo("nvml-counter", MEASURED, "GPU board", "mJ", COUNTER_UPDATE_PERIOD_S)
        self._start_mj = 0.0

    def _counter_mj(self) -> float:
        try:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError as exc:
            raise SensorFault(f"NVML energy counter failed: {exc}") from None

    def raw_value(self) -> float:
        return self._counter_mj()

    def start(self) -> None:
        self._start_mj = self._counter_mj()

    def read(self) -> EnergyReading:
        return EnergyReading(time.monotonic(), self._counter_mj() - self._start_mj)


class NvmlSampledSensor(SamplingSensor):
    """Instantaneous board power (mW, field NVML_FI_DEV_POWER_INSTANT), sampled and integrated."""

    def __init__(self, nvml: Any, handle: Any, rate_hz: float = DEFAULT_RATE_HZ):
        super().__init__(rate_hz)
        self.nvml, self.handle = nvml, handle
        self.info = SensorInfo("nvml-sampled", MEASURED, "GPU board", "mW", self.period_s)

    def sample_mw(self) -> dict[str, float]:
        power_mw, why = _instant_field(self.nvml, self.handle)
        if power_mw is None:
            raise SensorFault(f"NVML power field failed: {why}")
        return {"gpu": power_mw}

    def total_mj(self, rails_mj: dict[str, float]) -> float:
        return rails_mj["gpu"]


class NvmlAverageSensor(SamplingSensor):
    """nvmlDeviceGetPowerUsage (mW), a ~1 s moving average, sampled and integrated: the last resort,
    for GPUs with neither the counter nor the instant field. The average lags the work by about half a
    second, so its integral is right over rounds much longer than 1 s only; the name says so."""

    def __init__(self, nvml: Any, handle: Any, rate_hz: float = DEFAULT_RATE_HZ):
        super().__init__(min(rate_hz, AVERAGE_MAX_RATE_HZ))
        self.nvml, self.handle = nvml, handle
        self.info = SensorInfo(
            "nvml-average-power-integrated",
            MEASURED,
            "GPU board (1 s moving-average power, integrated: last resort)",
            "mW",
            AVERAGE_UPDATE_PERIOD_S,
        )

    def sample_mw(self) -> dict[str, float]:
        try:
            return {"gpu": float(self.nvml.nvmlDeviceGetPowerUsage(self.handle))}
        except self.nvml.NVMLError as exc:
            raise SensorFault(f"NVML average power failed: {nvml_error_text(exc)}") from None

    def total_mj(self, rails_mj: dict[str, float]) -> float:
        return rails_mj["gpu"]


def open_nvml_sensor(index: int = 0, uuid: str | None = None, mode: str = "auto", rate_hz: float = DEFAULT_RATE_HZ) -> EnergySensor:
    """The first NVML reading that answers on this GPU: the counter, else instant power, else average power.

    mode: "auto", or "counter" / "instant" / "average" to force one (cross-checks); "sampled" is the
    instant mode's old name. SensorUnavailable, one line, where the reading(s) asked for do not answer."""
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"NVML sensor mode must be one of {', '.join(MODES)}, not {mode!r}")
    nvml = load_pynvml()
    handle = device_handle(nvml, index, uuid)
    if is_integrated(nvml, handle):
        raise SensorUnavailable("this is an integrated (Tegra) GPU, whose energy NVML does not measure: on a Jetson use --device jetson (its INA3221 rails)")
    probes = [p for p in probe_readings(nvml, handle) if mode == "auto" or p.reading == mode]
    for probe in probes:
        if probe.ok:
            if probe.reading == COUNTER:
                return NvmlCounterSensor(nvml, handle)
            if probe.reading == INSTANT:
                return NvmlSampledSensor(nvml, handle, rate_hz)
            return NvmlAverageSensor(nvml, handle, rate_hz)
    raise SensorUnavailable(unavailable_line(probes))


def gpu_identity(nvml: Any, handle: Any) -> dict[str, Any]:
    """What makes two GPU results comparable: name, driver, power limit, clocks, temperature."""

    def ask(fn, *args, default="unknown"):
        try:
            return fn(*args)
        except nvml.NVMLError:
            return default

    limit_mw = ask(nvml.nvmlDeviceGetEnforcedPowerLimit, handle, default=None)
    return {
        "name": _text(ask(nvml.nvmlDeviceGetName, handle)),
        "uuid": _text(ask(nvml.nvmlDeviceGetUUID, handle)),
        "driver": _text(ask(nvml.nvmlSystemGetDriverVersion)),
        "power_limit_w": limit_mw / 1000.0 if isinstance(limit_mw, (int, float)) else None,
        "sm_clock_mhz": ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM, default=None),
        "mem_clock_mhz": ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM, default=None),
    }


def gpu_temperature_c(nvml: Any, handle: Any) -> float | None:
    try:
        return float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    except nvml.NVMLError:
        return None


def gpu_count() -> int:
    """How many GPUs NVML sees; SensorUnavailable when none (or no driver)."""
    nvml = load_pynvml()
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        raise SensorUnavailable(f"NVML cannot count the GPUs: {exc}") from None
    if count < 1:
        raise SensorUnavailable("NVML sees no GPU on this machine")
    return count


# Thermal state (pytest_e3p/hardware/thermal.py). Every query answers None where NVML cannot: an NVMLError (the
# GPU or driver does not support it) or a binding too old to have the function. A source that answers
# None is unavailable, never a crash.

# Clock-event reasons that mean the clock was held down by heat or power, by pynvml's names: the new
# spelling (nvmlClocksEventReason*, drivers 535+) first, then the old one (nvmlClocksThrottleReason*).
# The bit values are nvml.h's, the same under both names (pynvml 13.615.71: SwPowerCap 0x4, HwSlowdown
# 0x8, SwThermalSlowdown 0x20, HwThermalSlowdown 0x40, HwPowerBrakeSlowdown 0x80); they are the
# fallback for a binding with neither name. Not listed, so ignored: GpuIdle (0x1: nothing runs, the
# clock is low because there is no work), ApplicationsClocksSetting (0x2) and DisplayClockSetting
# (0x100) (clocks set by the user or the display, configuration rather than throttling), SyncBoost
# (0x10), and the newer BoardLimit / Reliability bits, which not every binding names.
CLOCK_EVENT_REASONS: tuple[tuple[str, str, int], ...] = (
    ("thermal", "SwThermalSlowdown", 0x20),
    ("thermal", "HwThermalSlowdown", 0x40),
    ("power cap", "SwPowerCap", 0x04),
    ("power cap", "HwPowerBrakeSlowdown", 0x80),
    ("hw slowdown", "HwSlowdown", 0x08),
)


def _query(nvml: Any, function: str, *args: Any) -> Any:
    """nvml.function(*args), or None where the binding lacks the function or NVML cannot answer."""
    fn = getattr(nvml, function, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except nvml.NVMLError:
        return None


def gpu_sm_clock_mhz(nvml: Any, handle: Any) -> float | None:
    """The SM clock now (MHz)."""
    value = _query(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM)
    return None if value is None else float(value)


def gpu_max_sm_clock_mhz(nvml: Any, handle: Any) -> float | None:
    """The highest SM clock the GPU may run at (MHz, its maximum boost clock)."""
    value = _query(nvml, "nvmlDeviceGetMaxClockInfo", handle, nvml.NVML_CLOCK_SM)
    return None if value is None or value <= 0 else float(value)


def gpu_clock_event_mask(nvml: Any, handle: Any) -> int | None:
    """The raw bitmask of why the clocks are below their maximum now. nvmlDeviceGetCurrentClocksEventReasons
    is the name since driver 535; older bindings (and drivers) only have ...ThrottleReasons."""
    value = _query(nvml, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if value is None:
        value = _query(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return None if value is None else int(value)


def clock_event_reason_names(nvml: Any, mask: int) -> tuple[str, ...]:
    """The throttling reasons in a clock-event bitmask: "thermal", "power cap", "hw slowdown", each once."""
    names: list[str] = []
    for name, suffix, value in CLOCK_EVENT_REASONS:
        bit = int(getattr(nvml, f"nvmlClocksEventReason{suffix}", getattr(nvml, f"nvmlClocksThrottleReason{suffix}", value)))
        if mask & bit and name not in names:
            names.append(name)
    return tuple(names)


def gpu_clock_event_reasons(nvml: Any, handle: Any) -> tuple[str, ...] | None:
    """The throttling reasons active now (empty: none), or None where NVML cannot tell."""
    mask = gpu_clock_event_mask(nvml, handle)
    return None if mask is None else clock_event_reason_names(nvml, mask)


def gpu_slowdown_temperature_c(nvml: Any, handle: Any) -> float | None:
    """The temperature at which the GPU starts slowing its clocks down (NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)."""
    kind = getattr(nvml, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", None)
    value = None if kind is None else _query(nvml, "nvmlDeviceGetTemperatureThreshold", handle, kind)
    return None if value is None or value <= 0 else float(value)
