"""pynvml as the NVML backends call it: the calls they make, with pynvml's constants.

Errors follow pynvml: NVMLError(code) keeps nvml.h's nvmlReturn_t in `.value` (3 = NOT_SUPPORTED) and
prints the driver's text; each entry of nvmlDeviceGetFieldValues' answer has its own `nvmlReturn`."""

import time
import types

NOT_SUPPORTED, NO_PERMISSION, GPU_IS_LOST = 3, 4, 15  # nvmlReturn_t, nvml.h
_TEXT = {NOT_SUPPORTED: "Not Supported", NO_PERMISSION: "Insufficient Permissions", GPU_IS_LOST: "GPU is lost"}


class NVMLError(Exception):
    """pynvml.NVMLError: built from an nvmlReturn_t code (or, for the tests of other paths, a text)."""

    def __init__(self, value):
        self.value = value
        super().__init__(_TEXT.get(value, str(value)) if isinstance(value, int) else value)


class FakeNvml:
    """Just the pynvml calls the backend makes, with pynvml's constants.

    counter / instant_return / average: which energy readings the GPU answers. counter False raises
    NVMLError(NOT_SUPPORTED) (a Titan X: codecarbon issue 608); instant_return is the field's own
    nvmlReturn (3 on a GTX 1650 Max-Q: nvidia-ml-py / pynvml issue 18); average False makes
    nvmlDeviceGetPowerUsage raise NOT_SUPPORTED."""

    NVMLError = NVMLError
    NVML_DEVICE_ARCH_VOLTA = 5
    NVML_DEVICE_ARCH_T23X = 11
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_SUCCESS = 0
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, arch=9, mig=0, power_mw=100_000.0, counter=True, count=1, clock=None):
        self.arch, self.mig, self.power_mw, self.counter, self.count = arch, mig, power_mw, counter, count
        self.clock = clock  # a fakes.clock.ScriptedClock; None: the real monotonic clock
        self.t0 = self._now()
        self.fail_counter = False
        self.instant_return = 0  # the power field's own nvmlReturn
        self.average = True
        # a scripted trace instead of constant power: {time: (power mW, counter mJ)}, read at the clock's time
        self.script = None
        # memory: the device's used bytes, and this process's entries (pid -> usedGpuMemory) per call
        self.used_bytes = 0
        self.processes = {}
        self.processes_error = None  # an nvmlReturn_t code nvmlDeviceGetComputeRunningProcesses raises
        self.calls = []

    def _now(self):
        return self.clock.monotonic() if self.clock is not None else time.monotonic()

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"gpu{i}"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return uuid

    def nvmlDeviceGetMigMode(self, h):
        return (self.mig, self.mig)

    def nvmlDeviceGetArchitecture(self, h):
        return self.arch

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.calls.append("counter")
        if not self.counter:
            raise NVMLError(NOT_SUPPORTED)
        if self.fail_counter:
            raise NVMLError(GPU_IS_LOST)
        if self.script:
            return int(1_000_000 + self.script[self._now()][1])
        # a counter that steps every 50 ms, as the driver's does
        elapsed = (self._now() - self.t0) // 0.05 * 0.05
        return int(1_000_000 + self.power_mw * elapsed)

    def _power_now_mw(self):
        return self.script[self._now()][0] if self.script else self.power_mw

    def nvmlDeviceGetFieldValues(self, h, ids):
        assert ids == [self.NVML_FI_DEV_POWER_INSTANT]
        self.calls.append("instant")
        ok = self.instant_return == self.NVML_SUCCESS
        value = types.SimpleNamespace(uiVal=int(self._power_now_mw()) if ok else 0)
        return [types.SimpleNamespace(fieldId=ids[0], nvmlReturn=self.instant_return, value=value)]

    def nvmlDeviceGetPowerUsage(self, h):
        self.calls.append("average")
        if not self.average:
            raise NVMLError(NOT_SUPPORTED)
        return int(self._power_now_mw())

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=self.used_bytes, total=8 * 2**30, free=8 * 2**30 - self.used_bytes)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if self.processes_error is not None:
            raise NVMLError(self.processes_error)
        used = self.processes() if callable(self.processes) else self.processes
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=b) for pid, b in used.items()]

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA GeForce RTX 3050 Laptop GPU"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-1234"

    def nvmlSystemGetDriverVersion(self):
        return "550.54"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 80_000

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1500 if kind == 1 else 7000

    def nvmlDeviceGetTemperature(self, h, kind):
        return 55
