"""NVIDIA GPU energy through NVML (package `nvidia-ml-py`, module `pynvml`).

Volta and newer expose `nvmlDeviceGetTotalEnergyConsumption`, a cumulative counter in mJ that the
driver updates every 20-100 ms. Older GPUs only give power: we sample the instantaneous field
`NVML_FI_DEV_POWER_INSTANT` (mW) and integrate it. `nvmlDeviceGetPowerUsage` is a 1 s moving
average on Ampere and newer and is never integrated. MIG slices have no power reading.
"""

from __future__ import annotations

import time
from typing import Any

from .base import MEASURED, EnergyReading, EnergySensor, SamplingSensor, SensorFault, SensorInfo, SensorUnavailable

DEFAULT_RATE_HZ = 100.0  # 2 s windows integrate within 1% (scripts/bench_sampling.py)
# The driver refreshes the counter every 20-100 ms; rounds last at least 10 update periods.
COUNTER_UPDATE_PERIOD_S = 0.1


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


def has_energy_counter(nvml: Any, handle: Any) -> bool:
    try:
        if nvml.nvmlDeviceGetArchitecture(handle) < nvml.NVML_DEVICE_ARCH_VOLTA:
            return False
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return True
    except nvml.NVMLError:
        return False


class NvmlCounterSensor(EnergySensor):
    """The driver's cumulative energy counter (mJ), Volta and newer."""

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
    """Instantaneous board power (mW), sampled and integrated: GPUs older than Volta."""

    def __init__(self, nvml: Any, handle: Any, rate_hz: float = DEFAULT_RATE_HZ):
        super().__init__(rate_hz)
        self.nvml, self.handle = nvml, handle
        self.info = SensorInfo("nvml-sampled", MEASURED, "GPU board", "mW", self.period_s)

    def sample_mw(self) -> dict[str, float]:
        try:
            field = self.nvml.nvmlDeviceGetFieldValues(self.handle, [self.nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        except self.nvml.NVMLError as exc:
            raise SensorFault(f"NVML power field failed: {exc}") from None
        if field.nvmlReturn != self.nvml.NVML_SUCCESS:
            raise SensorFault(f"NVML power field returned error {field.nvmlReturn}")
        return {"gpu": float(field.value.uiVal)}

    def total_mj(self, rails_mj: dict[str, float]) -> float:
        return rails_mj["gpu"]


def open_nvml_sensor(index: int = 0, uuid: str | None = None, mode: str = "auto", rate_hz: float = DEFAULT_RATE_HZ) -> EnergySensor:
    """The best NVML sensor for the GPU: the counter where it exists, else sampled power.

    mode: "auto", "counter" or "sampled" (the last two force one, for cross-checks)."""
    nvml = load_pynvml()
    handle = device_handle(nvml, index, uuid)
    counter = has_energy_counter(nvml, handle)
    if mode == "counter" and not counter:
        raise SensorUnavailable("this GPU has no NVML energy counter (older than Volta): use the sampled mode")
    if mode == "counter" or (mode == "auto" and counter):
        return NvmlCounterSensor(nvml, handle)
    return NvmlSampledSensor(nvml, handle, rate_hz)


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
