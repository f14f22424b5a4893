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

METHOD_HWM = "VmHWM after clear_refs"
METHOD_CUDA = "torch.cuda.max_memory_allocated"


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


def nvml_used_mb(torch_device: str) -> tuple[float | None, str]:
    """The GPU's used memory as NVML reports it (MiB), or None and why not."""
    from ..hardware.sensors import nvml as nvml_sensors
    from ..hardware.sensors.base import SensorUnavailable

    try:
        nvml = nvml_sensors.load_pynvml()
    except SensorUnavailable as exc:
        return None, str(exc)
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
        handle = nvml_sensors.device_handle(nvml, index, uuid)
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
    except SensorUnavailable as exc:
        return None, str(exc)
    except nvml.NVMLError as exc:
        return None, f"NVML memory info failed: {exc}"
    return float(info.used) / MIB, ""


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

    def reset(self) -> None:
        """Start a measurement: zero the peaks (or start the sampler)."""
        self._close_sampler()
        self._note = ""
        if self._uses_cuda_allocator:
            self._cuda_start_mb = self._cuda_reset()
        if self.device_kind == DeviceKind.CUDA:
            return
        why = reset_hwm()
        if why is None:
            self._start_mb = read_status_mb()[0]
            return
        self._note = f"fallback to sampling: {why}"
        self._sampler = RssSampler(self.sample_period_ms)
        self._start_mb = self._sampler.start_mb
        self._sampler.start()

    def _close_sampler(self) -> float | None:
        sampler, self._sampler = self._sampler, None
        return sampler.stop() if sampler is not None else None

    def read(self) -> MemoryPeak:
        """The peak since reset(); ends a sampled measurement (reset() starts another)."""
        if self._start_mb is None and self._cuda_start_mb is None:
            raise RuntimeError("PeakMemory.read() before reset()")
        alloc_peak = reserved_peak = alloc_now = None
        if self._uses_cuda_allocator:
            alloc_peak, reserved_peak, alloc_now = self._cuda_read()
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
