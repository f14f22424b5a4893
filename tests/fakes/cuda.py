"""torch.cuda's allocator counters and pynvml's memory calls, scripted, for the CUDA memory path."""

import types

import torch

from fakes.nvml import NVMLError


class FakeCuda:
    """torch.cuda's allocator counters, scripted: a case that allocates `case_bytes` on top of `base`."""

    def __init__(self, base: int, case_bytes: int, reserved: int):
        self.base, self.case_bytes, self.reserved = base, case_bytes, reserved
        self.calls: list[tuple[str, object]] = []
        self.was_reset = False

    def install(self, monkeypatch):
        for name in ("synchronize", "reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved", "memory_allocated", "get_device_properties"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def synchronize(self, device=None):
        self.calls.append(("synchronize", device))

    def reset_peak_memory_stats(self, device=None):
        self.calls.append(("reset_peak_memory_stats", device))
        self.was_reset = True

    def max_memory_allocated(self, device=None):
        assert self.was_reset
        return self.base + self.case_bytes

    def max_memory_reserved(self, device=None):
        return self.reserved

    def memory_allocated(self, device=None):
        return self.base

    def get_device_properties(self, index):
        return types.SimpleNamespace(uuid="1234-abcd")


def fake_pynvml(used_bytes: int, seen: dict):
    def handle_by_uuid(uuid):
        seen["uuid"] = uuid
        return "handle"

    def mig_mode(handle):
        raise NVMLError("not supported")

    def memory_info(handle):
        assert handle == "handle"
        return types.SimpleNamespace(used=used_bytes, total=8 * 2**30, free=8 * 2**30 - used_bytes)

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_DEVICE_MIG_ENABLE=1,
        nvmlDeviceGetHandleByUUID=handle_by_uuid,
        nvmlDeviceGetHandleByIndex=lambda index: "handle",
        nvmlDeviceGetMigMode=mig_mode,
        nvmlDeviceGetMemoryInfo=memory_info,
    )
