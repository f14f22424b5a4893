"""Peak memory of a case, from the device's own accounting.

All sizes are in MiB (2**20 bytes), named `_mb` like the rest of the plugin's results; the budget
option (`--e3p-max-memory-mb`) uses the same unit.

Why each source:

- CPU and Jetson share one memory between the CPU and the accelerator (a Jetson's GPU allocations come
  out of the same DRAM), so what a board runs out of is the process's resident set. The kernel keeps
  its high-water mark (VmHWM in /proc/self/status) exactly, at no cost to the run, and writing "5" to
  /proc/self/clear_refs (Linux >= 4.0) resets it to the current resident set: reset before the case,
  read VmHWM after it. Where clear_refs cannot be written (permission, a kernel older than 4.0 that
  ignores the "5", no /proc), a background thread samples VmRSS instead; it misses peaks shorter than
  its period, and the result says which method gave it.
- CUDA: the caching allocator's own peak counters (torch.cuda.max_memory_allocated: tensors;
  max_memory_reserved: what the allocator took from the driver), reset per case with
  torch.cuda.reset_peak_memory_stats. NVML's used memory of the whole GPU is recorded beside them when
  NVML is there: it is the figure nvidia-smi shows (every process, the CUDA context included), read
  once at the end, not a peak.

- CUDA, a variant whose forward runs outside torch's allocator (an ONNX Runtime session with its own
  CUDA arena, an OpenVINO compiled model, a TensorRT engine): torch's counters see only the input
  batch, so the peak is NVML's instead. First this process's used GPU memory
  (nvmlDeviceGetComputeRunningProcesses, the entry of os.getpid()), sampled on a grid through the
  pass; where NVML does not list this process (a container's PID namespace: NVML reports host PIDs) or
  gives no per-process figure (usedGpuMemory not available), the device's used memory
  (nvmlDeviceGetMemoryInfo().used, every process on the GPU), sampled the same way, with the note
  saying why. Both include the CUDA context, so they are larger than an allocator peak: the method
  says which was used. Without NVML the peak is unavailable with the reason, never the allocator's
  near-zero figure. ONNX Runtime's arena grows and keeps its blocks, so its peak lasts to the end of the
  pass and a 10 ms grid does not miss it.

The resident set counts pages, not allocations: growth_mb is the pages first touched during the case.
Blocks of 32 MiB and more are fresh mmap mappings under glibc and show exactly; smaller ones can reuse
pages a freed block left resident on the heap (with --e3p-malloc fixed, freed memory stays there on
purpose), or take new ones, as glibc's thresholds decide. So a board's budget is checked against
peak_mb, the whole process's peak, which is what the board has to hold; growth_mb says what the case
added on top of what was resident already (scripts/bench_memory.py compares both with sizes computed by
hand).

On a Jetson with a CUDA torch device the allocator's peaks are recorded too, beside the resident set:
whether the resident set counts memory the GPU driver maps depends on the driver (not checked on a
board here), so both are kept.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

from ..hardware.kinds import DeviceKind, parse_device_kind
from ..hardware.sensors.base import sample_on_grid
from ..storage.records import MemoryPeak  # the record measure fills: the results file keeps it as it is

MIB = 2**20
CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"
RESET_HWM = "5"  # clear_refs value that resets the peak resident set (Linux 4.0, commit 695f0559)
# After a reset VmHWM equals VmRSS; a larger gap than this means the write did nothing (Linux < 4.0).
RESET_CHECK_MB = 4.0
DEFAULT_SAMPLE_PERIOD_MS = 5.0
# NVML's process list is a driver call (tens of us to a few ms): sampled less often than VmRSS
NVML_SAMPLE_PERIOD_MS = 10.0

METHOD_HWM = "VmHWM after clear_refs"
METHOD_CUDA = "torch.cuda.max_memory_allocated"
METHOD_NVML_PROCESS = "NVML per-process used memory"
METHOD_NVML_DEVICE = "NVML device used memory (all processes)"


class MemoryUnavailable(Exception):
    """No memory accounting is readable on this machine; the message says why."""


def _status_kib(text: str, key: str) -> float:
    m = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
    if m is None:
        raise MemoryUnavailable(f"{STATUS} has no {key} line")
    return float(m.group(1))


def read_status_mb(path: str | None = None) -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, in MiB."""
    try:
        with open(path or STATUS) as fh:
            text = fh.read()
    except OSError as exc:
        raise MemoryUnavailable(f"cannot read {path or STATUS} ({exc}): resident-set accounting needs Linux /proc") from None
    return _status_kib(text, "VmRSS") / 1024.0, _status_kib(text, "VmHWM") / 1024.0


def reset_hwm() -> str | None:
    """Reset the kernel's peak resident set; None when done, else why it could not be."""
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write(RESET_HWM)
    except OSError as exc:
        return f"{CLEAR_REFS} not writable ({exc.strerror or exc})"
    rss, hwm = read_status_mb()
    if hwm > rss + RESET_CHECK_MB:
        return f"writing {RESET_HWM} to {CLEAR_REFS} did not reset VmHWM ({hwm:.0f} MiB > VmRSS {rss:.0f} MiB): Linux older than 4.0"
    return None


class RssSampler:
    """VmRSS read every period_ms by a daemon thread, the peak kept.

    The file stays open and is read with pread at offset 0 (procfs regenerates it), so a sample costs
    one system call and no allocation beyond the bytes read. A peak shorter than the period can be
    missed; read() takes one last sample so the end of the stretch is never missed."""

    def __init__(self, period_ms: float = DEFAULT_SAMPLE_PERIOD_MS, path: str | None = None):
        if period_ms <= 0:
            raise ValueError("sampling period must be positive")
        self.period_s = period_ms / 1000.0
        self.path = path or STATUS
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise MemoryUnavailable(f"cannot open {self.path} ({exc}): resident-set sampling needs Linux /proc") from None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.start_mb = self.sample_mb()
        self.peak_mb = self.start_mb
        self.samples = 1

    def sample_mb(self) -> float:
        text = os.pread(self._fd, 8192, 0).decode("ascii", "replace")
        return _status_kib(text, "VmRSS") / 1024.0

    def _take_locked(self) -> float:
        rss = self.sample_mb()
        self.peak_mb = max(self.peak_mb, rss)
        self.samples += 1
        return rss

    def _step(self) -> bool:
        try:
            self._take_locked()
        except (OSError, MemoryUnavailable):
            return False  # stop() samples once more and raises there
        return True

    def _run(self) -> None:
        sample_on_grid(self.period_s, self._stop, self._lock, self._step)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="e3p-rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """Stop the thread, take a last sample; returns VmRSS now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        try:
            with self._lock:
                return self._take_locked()
        finally:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self._stop.set()
            try:
                os.close(self._fd)
            except OSError:
                pass


def _cuda_index(torch_device: str) -> int:
    _, _, index = torch_device.partition(":")
    return int(index) if index else 0


def runs_outside_torch_allocator(runtime: Any) -> bool:
    """Whether a prepared variant's runtime (PreparedVariant.runtime) allocates GPU memory itself, where
    torch's caching allocator cannot see it: anything that is not a torch module (an ONNX Runtime
    InferenceSession, an OpenVINO CompiledModel), or a torch module holding Torch-TensorRT's engine
    modules (TensorRT allocates an engine's activations and workspace itself). None (the eager model)
    and other torch modules, compiled, pruned or quantised ones included, allocate through torch."""
    if runtime is None:
        return False
    import torch

    if not isinstance(runtime, torch.nn.Module):
        return True
    return any(type(m).__module__.startswith("torch_tensorrt") for m in runtime.modules())


def _nvml_handle(torch_device: str) -> tuple[Any, Any]:
    """pynvml and the handle of the GPU behind torch_device (by UUID where torch knows it, as devices.py
    does); MemoryUnavailable with the reason where NVML cannot be used."""
    from ..hardware.sensors import nvml as nvml_sensors
    from ..hardware.sensors.base import SensorUnavailable

    try:
        nvml = nvml_sensors.load_pynvml()
    except SensorUnavailable as exc:
        raise MemoryUnavailable(str(exc)) from None
    index = _cuda_index(torch_device)
    uuid = None
    try:
        import torch

        raw = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if raw is not None:
            uuid = str(raw) if str(raw).startswith("GPU-") else f"GPU-{raw}"
    except Exception:  # noqa: BLE001 - no UUID: NVML's index order is the fallback, as in devices.py
        uuid = None
    try:
        return nvml, nvml_sensors.device_handle(nvml, index, uuid)
    except SensorUnavailable as exc:
        raise MemoryUnavailable(str(exc)) from None


def nvml_used_mb(torch_device: str) -> tuple[float | None, str]:
    """The GPU's used memory as NVML reports it (MiB), or None and why not."""
    try:
        nvml, handle = _nvml_handle(torch_device)
    except MemoryUnavailable as exc:
        return None, str(exc)
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
    except nvml.NVMLError as exc:
        return None, f"NVML memory info failed: {exc}"
    return float(info.used) / MIB, ""


def _process_used_mb(nvml: Any, handle: Any, pid: int) -> float:
    """This process's used GPU memory (MiB) from NVML's compute-process list; MemoryUnavailable with
    the reason where NVML cannot tell."""
    from ..hardware.sensors.nvml import nvml_error_text

    try:
        processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError as exc:
        raise MemoryUnavailable(f"NVML cannot list the GPU's processes ({nvml_error_text(exc)})") from None
    entries = [p for p in processes if getattr(p, "pid", None) == pid]
    if not entries:
        raise MemoryUnavailable(f"this process (pid {pid}) is not among NVML's compute processes (in a container NVML lists host PIDs)")
    used = [p.usedGpuMemory for p in entries]
    if any(u is None for u in used):  # pynvml's None: NVML_VALUE_NOT_AVAILABLE (Windows WDDM, no permission)
        raise MemoryUnavailable("NVML gives no per-process used memory here (usedGpuMemory not available)")
    return float(sum(used)) / MIB


class NvmlMemorySampler:
    """The GPU memory of this process (or, failing that, of the whole device) read from NVML every
    period_ms by a daemon thread, the peak kept. `method` and `note` say which figure and why."""

    def __init__(self, torch_device: str, period_ms: float = NVML_SAMPLE_PERIOD_MS):
        if period_ms <= 0:
            raise ValueError("sampling period must be positive")
        self.period_ms = period_ms
        self.nvml, self.handle = _nvml_handle(torch_device)
        self.pid = os.getpid()
        self.note = ""
        try:
            self.start_mb = _process_used_mb(self.nvml, self.handle, self.pid)
            self._read: Callable[[], float] = lambda: _process_used_mb(self.nvml, self.handle, self.pid)
            self.method = f"{METHOD_NVML_PROCESS}, sampled every {period_ms:g} ms"
        except MemoryUnavailable as exc:
            self._read = self._device_used_mb
            try:
                self.start_mb = self._device_used_mb()
            except MemoryUnavailable as device_exc:
                raise MemoryUnavailable(f"{exc}; {device_exc}") from None
            self.method = f"{METHOD_NVML_DEVICE}, sampled every {period_ms:g} ms"
            self.note = f"fallback to the device's used memory, which counts every process on the GPU: {exc}"
        self.peak_mb = self.start_mb
        self.samples = 1
        self._fault: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _device_used_mb(self) -> float:
        from ..hardware.sensors.nvml import nvml_error_text

        try:
            return float(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used) / MIB
        except self.nvml.NVMLError as exc:
            raise MemoryUnavailable(f"NVML memory info failed ({nvml_error_text(exc)})") from None

    def _take_locked(self) -> float:
        used = self._read()
        self.peak_mb = max(self.peak_mb, used)
        self.samples += 1
        return used

    def _step(self) -> bool:
        try:
            self._take_locked()
        except MemoryUnavailable as exc:
            self._fault = str(exc)  # a peak with a hole in it is not a peak: stop() says so
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=sample_on_grid, args=(self.period_ms / 1000.0, self._stop, self._lock, self._step), name="e3p-nvml-memory", daemon=True
        )
        self._thread.start()

    def stop(self) -> float:
        """Stop the thread, take a last sample; returns the used memory now. MemoryUnavailable where a
        sample failed during the pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._fault is not None:
            raise MemoryUnavailable(f"NVML stopped answering during the pass: {self._fault}")
        with self._lock:
            return self._take_locked()


class PeakMemory:
    """Peak memory of what runs between reset() and read(), from the device's own accounting.

        with PeakMemory("cpu") as pm:
            run_case()
        pm.peak.growth_mb

    device_kind: "cpu", "cuda" or "jetson" (Device.profile.kind); torch_device: "cpu" or "cuda:N".
    The resident-set figures are per process: threads the plugin runs (sensor samplers) count too."""

    def __init__(self, device_kind: str, torch_device: str = "cpu", sample_period_ms: float = DEFAULT_SAMPLE_PERIOD_MS):
        kind = parse_device_kind(device_kind, "device_kind")
        if kind == DeviceKind.CUDA and not torch_device.startswith("cuda"):
            raise ValueError(f"device_kind 'cuda' needs a cuda torch device, not {torch_device!r}")
        self.device_kind = kind
        self.torch_device = torch_device
        self.sample_period_ms = sample_period_ms
        self.peak: MemoryPeak | None = None  # set by the context manager's exit
        self._sampler: RssSampler | None = None
        self._nvml: NvmlMemorySampler | None = None  # the pass runs outside torch's allocator
        self._nvml_why = ""  # why that pass has no NVML peak
        self._start_mb: float | None = None
        self._cuda_start_mb: float | None = None
        self._note = ""

    @property
    def _uses_cuda_allocator(self) -> bool:
        return self.torch_device.startswith("cuda")

    def _cuda_reset(self) -> float:
        import torch

        torch.cuda.synchronize(self.torch_device)
        torch.cuda.reset_peak_memory_stats(self.torch_device)
        return torch.cuda.memory_allocated(self.torch_device) / MIB

    def _cuda_read(self) -> tuple[float, float, float]:
        """(peak allocated, peak reserved, allocated now), MiB."""
        import torch

        torch.cuda.synchronize(self.torch_device)
        return (
            torch.cuda.max_memory_allocated(self.torch_device) / MIB,
            torch.cuda.max_memory_reserved(self.torch_device) / MIB,
            torch.cuda.memory_allocated(self.torch_device) / MIB,
        )

    def reset(self, outside_allocator: bool = False) -> None:
        """Start a measurement: zero the peaks (or start the sampler).

        outside_allocator: the pass's forward allocates outside torch (runs_outside_torch_allocator), so
        on a CUDA device its peak is NVML's (the module docstring says which figure)."""
        self._close_sampler()
        self._note = ""
        if self._uses_cuda_allocator:
            self._cuda_start_mb = self._cuda_reset()
        if self.device_kind == DeviceKind.CUDA:
            if outside_allocator:
                self._start_nvml()
            return
        why = reset_hwm()
        if why is None:
            self._start_mb = read_status_mb()[0]
            return
        self._note = f"fallback to sampling: {why}"
        self._sampler = RssSampler(self.sample_period_ms)
        self._start_mb = self._sampler.start_mb
        self._sampler.start()

    def _start_nvml(self) -> None:
        try:
            self._nvml = NvmlMemorySampler(self.torch_device)
        except MemoryUnavailable as exc:
            self._nvml_why = str(exc)
            return
        self._nvml.start()

    def _close_sampler(self) -> float | None:
        self._nvml_why = ""
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.stop()
            except MemoryUnavailable:
                pass  # the pass was abandoned: its peak is not read
        sampler, self._sampler = self._sampler, None
        return sampler.stop() if sampler is not None else None

    def _read_nvml(self, alloc_peak: float | None, reserved_peak: float | None) -> MemoryPeak:
        """The peak of a pass that ran outside torch's allocator: NVML's, or MemoryUnavailable."""
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            why, self._nvml_why = self._nvml_why, ""
            raise MemoryUnavailable(f"its runtime allocates outside torch, and NVML cannot measure it: {why}")
        now_mb = nvml.stop()
        used, _ = nvml_used_mb(self.torch_device)
        return MemoryPeak(
            peak_mb=nvml.peak_mb,
            start_mb=nvml.start_mb,
            growth_mb=nvml.peak_mb - nvml.start_mb,
            method=nvml.method,
            end_mb=now_mb,
            cuda_allocated_peak_mb=alloc_peak,
            cuda_reserved_peak_mb=reserved_peak,
            nvml_used_mb=used,
            note=nvml.note,
        )

    def read(self) -> MemoryPeak:
        """The peak since reset(); ends a sampled measurement (reset() starts another). MemoryUnavailable
        where a pass outside torch's allocator could not be measured."""
        if self._start_mb is None and self._cuda_start_mb is None:
            raise RuntimeError("PeakMemory.read() before reset()")
        alloc_peak = reserved_peak = alloc_now = None
        if self._uses_cuda_allocator:
            alloc_peak, reserved_peak, alloc_now = self._cuda_read()
        if self.device_kind == DeviceKind.CUDA and (self._nvml is not None or self._nvml_why):
            return self._read_nvml(alloc_peak, reserved_peak)
        if self.device_kind == DeviceKind.CUDA:
            assert self._cuda_start_mb is not None and alloc_peak is not None
            used, why = nvml_used_mb(self.torch_device)
            return MemoryPeak(
                peak_mb=alloc_peak,
                start_mb=self._cuda_start_mb,
                growth_mb=alloc_peak - self._cuda_start_mb,
                method=METHOD_CUDA,
                end_mb=alloc_now,
                cuda_allocated_peak_mb=alloc_peak,
                cuda_reserved_peak_mb=reserved_peak,
                nvml_used_mb=used,
                note="" if used is not None else f"no NVML used memory: {why}",
            )
        assert self._start_mb is not None
        sampler = self._sampler
        if sampler is not None:
            rss_now = self._close_sampler()
            peak, method = sampler.peak_mb, f"VmRSS sampled every {self.sample_period_ms:g} ms"
        else:
            rss_now, peak = read_status_mb()
            method = METHOD_HWM
        return MemoryPeak(
            peak_mb=peak,
            start_mb=self._start_mb,
            growth_mb=peak - self._start_mb,
            method=method,
            end_mb=rss_now,
            cuda_allocated_peak_mb=alloc_peak,
            cuda_reserved_peak_mb=reserved_peak,
            note=self._note,
        )

    def close(self) -> None:
        self._close_sampler()

    def __enter__(self) -> PeakMemory:
        self.peak = None
        self.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.peak = self.read()
        finally:
            self.close()


def _mb_text(value: float, other: float) -> str:
    """Whole MiB, or one decimal where whole numbers would print the peak equal to the budget."""
    return f"{value:.0f}" if f"{value:.0f}" != f"{other:.0f}" else f"{value:.1f}"


def check_budget(peak: MemoryPeak, max_mb: float) -> str | None:
    """The failure message when the peak exceeds the board's budget (--e3p-max-memory-mb), else None.

    The peak, not the growth, is compared: on a CPU or Jetson it is the whole process's resident set,
    what the board must hold; on a CUDA GPU it is the allocator's peak of tensor memory (the reserve and
    NVML's figure, which include cached blocks and the CUDA context, are in the MemoryPeak beside it)."""
    if max_mb <= 0:
        raise ValueError(f"memory budget must be positive, not {max_mb}")
    if peak.peak_mb <= max_mb:
        return None
    return f"peak memory {_mb_text(peak.peak_mb, max_mb)} MiB > budget {_mb_text(max_mb, peak.peak_mb)} MiB (--e3p-max-memory-mb): {peak.method}"
