"""Peak memory: measured against allocations whose size is known, on this machine's CPU; the CUDA
path against monkeypatched torch.cuda counters."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from fakes.cuda import FakeCuda, fake_pynvml

from pytest_e3p.hardware.sensors import nvml as nvml_sensors
from pytest_e3p.measure import memory
from pytest_e3p.measure.memory import MIB, MemoryPeak, PeakMemory, check_budget

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident-set accounting reads Linux /proc")

BLOCK_MIB = 256  # large enough that allocator and interpreter noise (a few MiB) stay under 10%


def touched_block(mib: int = BLOCK_MIB) -> torch.Tensor:
    """A float32 tensor of `mib` MiB with every page written: glibc serves blocks this big with mmap,
    whose pages are resident only once touched."""
    t = torch.empty(mib * MIB // 4, dtype=torch.float32)
    t.fill_(1.0)
    return t


def hwm_resettable() -> bool:
    return memory.reset_hwm() is None


def test_peak_growth_matches_a_known_allocation():
    if not hwm_resettable():
        pytest.skip("clear_refs cannot reset VmHWM here")
    with PeakMemory("cpu") as pm:
        block = touched_block()
        del block  # freed before the end: only the high-water mark still knows about it
    peak = pm.peak
    assert peak is not None
    assert peak.method == "VmHWM after clear_refs"
    assert peak.growth_mb == pytest.approx(BLOCK_MIB, rel=0.10)
    assert peak.peak_mb == pytest.approx(peak.start_mb + peak.growth_mb)
    assert peak.end_mb is not None and peak.end_mb < peak.peak_mb - 0.5 * BLOCK_MIB  # the block was returned
    assert peak.cuda_allocated_peak_mb is None and peak.nvml_used_mb is None


def test_linear_layer_weights_and_activations():
    """nn.Linear(4096, 4096): 64 MiB of fp32 weights (+16 KiB bias); a batch of 4096 rows in and out is
    64 MiB each. Built and run inside the measurement: 192 MiB expected.

    Every block is at least 32 MiB, the most glibc's dynamic mmap threshold can reach on 64-bit, so
    each is a fresh mapping: a smaller block can land on heap pages a freed one left resident, which
    the resident set does not count again."""
    if not hwm_resettable():
        pytest.skip("clear_refs cannot reset VmHWM here")
    torch.manual_seed(0)
    with torch.inference_mode():
        torch.nn.Linear(64, 64)(torch.randn(8, 64))  # the BLAS library's one-time set-up, outside the measurement

    def measured_growth_mb() -> float:
        with PeakMemory("cpu") as pm, torch.inference_mode():
            layer = torch.nn.Linear(4096, 4096)
            x = torch.randn(4096, 4096)
            y = layer(x)
            del layer, x, y
        assert pm.peak is not None
        return pm.peak.growth_mb

    # The resident set is the whole process's: the kernel may reclaim other, cold pages of it while
    # the layer runs (proactive reclaim such as DAMON runs on the CI machines), which lowers the
    # growth by pages that have nothing to do with the layer; nothing raises it. So the largest of
    # three measurements is compared: an accounting that over- or under-counts fails all three.
    expected_mib = (4096 * 4096 + 4096 + 2 * 4096 * 4096) * 4 / MIB
    assert max(measured_growth_mb() for _ in range(3)) == pytest.approx(expected_mib, rel=0.10)


def test_reset_forgets_the_previous_peak():
    if not hwm_resettable():
        pytest.skip("clear_refs cannot reset VmHWM here")
    pm = PeakMemory("cpu")
    pm.reset()
    block = touched_block()
    first = pm.read()
    del block
    pm.reset()
    small = torch.ones(1024)  # 4 KiB
    second = pm.read()
    del small
    assert first.growth_mb > 0.9 * BLOCK_MIB
    assert second.growth_mb < 8.0
    assert second.peak_mb < first.peak_mb - 0.5 * BLOCK_MIB


def test_sampler_when_clear_refs_is_not_writable(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    with PeakMemory("cpu", sample_period_ms=5) as pm:
        block = touched_block()
        sampler = pm._sampler
        assert sampler is not None
        seen, deadline = sampler.samples, time.monotonic() + 10.0
        while sampler.samples < seen + 3 and time.monotonic() < deadline:  # a loaded machine may delay the thread
            time.sleep(0.005)
        del block  # gone before read(): only the thread's samples saw it
    peak = pm.peak
    assert peak is not None
    assert peak.method == "VmRSS sampled every 5 ms"
    assert "not writable" in peak.note
    assert peak.growth_mb == pytest.approx(BLOCK_MIB, rel=0.10)
    assert peak.end_mb is not None and peak.end_mb < peak.start_mb + 0.5 * BLOCK_MIB


def test_sampler_when_clear_refs_write_does_nothing(monkeypatch, tmp_path):
    """Linux < 4.0 accepts the "5" and ignores it: VmHWM stays above VmRSS, which is detected."""
    block = touched_block()
    del block  # VmHWM now sits a block above VmRSS, unless something resets it
    fake = tmp_path / "clear_refs"
    fake.write_text("")
    monkeypatch.setattr(memory, "CLEAR_REFS", str(fake))
    pm = PeakMemory("cpu")
    pm.reset()
    peak = pm.read()
    assert fake.read_text() == "5"
    assert peak.method.startswith("VmRSS sampled")
    assert "did not reset VmHWM" in peak.note


def test_read_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="before reset"):
        PeakMemory("cpu").read()


def test_bad_device_kind():
    with pytest.raises(ValueError, match="device_kind"):
        PeakMemory("tpu")
    with pytest.raises(ValueError, match="cuda torch device"):
        PeakMemory("cuda", "cpu")


def test_cuda_path_reads_the_allocator_peaks(monkeypatch):
    fake = FakeCuda(base=100 * MIB, case_bytes=412 * MIB, reserved=600 * MIB)
    fake.install(monkeypatch)
    seen: dict = {}
    monkeypatch.setattr(nvml_sensors, "load_pynvml", lambda: fake_pynvml(900 * MIB, seen))
    monkeypatch.setattr(memory, "reset_hwm", lambda: pytest.fail("a CUDA device must not touch clear_refs"))
    with PeakMemory("cuda", "cuda:1") as pm:
        pass
    peak = pm.peak
    assert peak == MemoryPeak(
        peak_mb=512.0,
        start_mb=100.0,
        growth_mb=412.0,
        method="torch.cuda.max_memory_allocated",
        end_mb=100.0,
        cuda_allocated_peak_mb=512.0,
        cuda_reserved_peak_mb=600.0,
        nvml_used_mb=900.0,
        note="",
    )
    assert ("reset_peak_memory_stats", "cuda:1") in fake.calls
    assert seen["uuid"] == "GPU-1234-abcd"


def test_cuda_path_without_nvml(monkeypatch):
    FakeCuda(base=0, case_bytes=64 * MIB, reserved=80 * MIB).install(monkeypatch)

    def no_nvml():
        raise nvml_sensors.SensorUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py")

    monkeypatch.setattr(nvml_sensors, "load_pynvml", no_nvml)
    pm = PeakMemory("cuda", "cuda:0")
    pm.reset()
    peak = pm.read()
    assert peak.peak_mb == 64.0 and peak.cuda_reserved_peak_mb == 80.0
    assert peak.nvml_used_mb is None
    assert "nvidia-ml-py is not installed" in peak.note


def test_jetson_keeps_resident_set_and_allocator_peaks(monkeypatch):
    if not hwm_resettable():
        pytest.skip("clear_refs cannot reset VmHWM here")
    FakeCuda(base=0, case_bytes=32 * MIB, reserved=40 * MIB).install(monkeypatch)
    with PeakMemory("jetson", "cuda:0") as pm:
        pass
    peak = pm.peak
    assert peak is not None
    assert peak.method == "VmHWM after clear_refs"  # unified memory: the resident set is the budget
    assert peak.cuda_allocated_peak_mb == 32.0 and peak.cuda_reserved_peak_mb == 40.0
    assert peak.nvml_used_mb is None


def peak_of(peak_mb: float, method: str = "VmHWM after clear_refs") -> MemoryPeak:
    return MemoryPeak(peak_mb=peak_mb, start_mb=100.0, growth_mb=peak_mb - 100.0, method=method)


def test_budget_message():
    assert check_budget(peak_of(812.0), 512) == "peak memory 812 MiB > budget 512 MiB (--e3p-max-memory-mb): VmHWM after clear_refs"
    assert check_budget(peak_of(512.0), 512) is None
    assert check_budget(peak_of(100.0), 512) is None
    # Whole MiB would print "512 > 512": one decimal then.
    assert (
        check_budget(peak_of(512.3, "VmRSS sampled every 5 ms"), 512)
        == "peak memory 512.3 MiB > budget 512.0 MiB (--e3p-max-memory-mb): VmRSS sampled every 5 ms"
    )
    with pytest.raises(ValueError):
        check_budget(peak_of(1.0), 0)


def test_to_dict_has_units_in_names():
    d = peak_of(300.0).to_dict()
    assert {"peak_mb", "start_mb", "growth_mb", "method"} <= d.keys()
    assert all(k.endswith("_mb") for k in d if k not in ("method", "note"))
