"""pynvml as the NVML backends call it: the calls they make, with pynvml's constants."""

import time
import types


class NVMLError(Exception):
    pass


class FakeNvml:
    """Just the pynvml calls the backend makes, with pynvml's constants."""

    NVMLError = NVMLError
    NVML_DEVICE_ARCH_VOLTA = 5
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_SUCCESS = 0
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, arch=9, mig=0, power_mw=100_000.0, counter=True, count=1, clock=None):
        self.arch, self.mig, self.power_mw, self.counter, self.count = arch, mig, power_mw, counter, count
        self.clock = clock  # a fakes.clock.ScriptedClock; None: the real monotonic clock
        self.t0 = self._now()
        self.fail_counter = False
        # a scripted trace instead of constant power: {time: (power mW, counter mJ)}, read at the clock's time
        self.script = None

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
        if not self.counter:
            raise NVMLError("Not Supported")
        if self.fail_counter:
            raise NVMLError("GPU is lost")
        if self.script:
            return int(1_000_000 + self.script[self._now()][1])
        # a counter that steps every 50 ms, as the driver's does
        elapsed = (self._now() - self.t0) // 0.05 * 0.05
        return int(1_000_000 + self.power_mw * elapsed)

    def nvmlDeviceGetFieldValues(self, h, ids):
        assert ids == [self.NVML_FI_DEV_POWER_INSTANT]
        value = types.SimpleNamespace(uiVal=int(self.script[self._now()][0] if self.script else self.power_mw))
        return [types.SimpleNamespace(nvmlReturn=0, value=value)]

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
