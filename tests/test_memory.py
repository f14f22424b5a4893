"""Peak memory: measured against allocations whose size is known, on this machine's CPU; the CUDA
path against monkeypatched torch.cuda counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import pytest
import torch
from fakes.cuda import FakeCuda, fake_pynvml
from fakes.nvml import NOT_SUPPORTED, FakeNvml

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


LINEAR_LAYER_SCRIPT = """
import json, torch
from pytest_e3p.measure.memory import PeakMemory
torch.manual_seed(0)
with torch.inference_mode():
    torch.nn.Linear(64, 64)(torch.randn(8, 64))  # the BLAS library's one-time set-up, outside the measurement
growth_mb = []
for _ in range(3):
    with PeakMemory("cpu") as pm, torch.inference_mode():
        layer = torch.nn.Linear(4096, 4096)
        x = torch.randn(4096, 4096)
        y = layer(x)
        del layer, x, y
    growth_mb.append(pm.peak.growth_mb)
print(json.dumps(growth_mb))
"""


def test_linear_layer_weights_and_activations():
    """nn.Linear(4096, 4096): 64 MiB of fp32 weights (+16 KiB bias); a batch of 4096 rows in and out is
    64 MiB each. Built and run inside the measurement: 192 MiB expected.

    Measured in a fresh interpreter: glibc serves a block from the heap's free top chunk before it
    considers mmap, and after a thousand tests that top can hold 64 MiB of pages already resident,
    which the resident set does not count again (CI once saw 128 MiB three times in a row). A new
    process has no such free pages, so each block is a fresh mapping."""
    if not hwm_resettable():
        pytest.skip("clear_refs cannot reset VmHWM here")
    done = subprocess.run([sys.executable, "-c", LINEAR_LAYER_SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    growth_mb = json.loads(done.stdout.strip().splitlines()[-1])

    # The resident set is the whole process's: the kernel may reclaim other, cold pages of it while
    # the layer runs (proactive reclaim such as DAMON runs on the CI machines), which lowers the
    # growth by pages that have nothing to do with the layer; nothing raises it. So the largest of
    # three measurements is compared: an accounting that over- or under-counts fails all three.
    expected_mib = (4096 * 4096 + 4096 + 2 * 4096 * 4096) * 4 / MIB
    assert max(growth_mb) == pytest.approx(expected_mib, rel=0.10)


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


# -- a runtime outside torch's allocator (ONNX Runtime, OpenVINO, TensorRT) on a CUDA device -----------
# torch's counters see only the input batch (FakeCuda: 100 MiB resident, a 2 MiB batch); the runtime's
# arena is in NVML's figures. pynvml's nvmlDeviceGetComputeRunningProcesses gives each process's
# usedGpuMemory (None where NVML_VALUE_NOT_AVAILABLE); in a container the pids are the host's.


class StepNvml(FakeNvml):
    """FakeNvml whose used memory the test steps: this process's and the device's, counting samples."""

    def __init__(self, process_mb, others_mb=0.0, pid=None):
        super().__init__()
        self.process_mb, self.others_mb, self.pid, self.samples = process_mb, others_mb, pid or os.getpid(), 0
        self.processes = self._entries

    def _entries(self):
        self.samples += 1
        return {self.pid: int(self.process_mb * MIB), 4242: int(self.others_mb * MIB)}

    def nvmlDeviceGetMemoryInfo(self, h):
        self.samples += 1
        used = int((self.process_mb + self.others_mb) * MIB)
        return types.SimpleNamespace(used=used, total=8 * 2**30, free=8 * 2**30 - used)

    def wait_for_samples(self, n):
        """Until the sampler thread has read NVML n more times (bounded: a stuck thread fails the test)."""
        target, deadline = self.samples + n, time.monotonic() + 5.0
        while self.samples < target:
            assert time.monotonic() < deadline, "the NVML memory sampler took no sample in 5 s"
            time.sleep(0.002)


def arena_pass(monkeypatch, fake):
    """A pass outside torch's allocator: 400 MiB before, an arena that peaks at 1400 MiB, 700 MiB after."""
    FakeCuda(base=100 * MIB, case_bytes=2 * MIB, reserved=20 * MIB).install(monkeypatch)
    monkeypatch.setattr(nvml_sensors, "load_pynvml", lambda: fake)
    pm = PeakMemory("cuda", "cuda:0")
    pm.reset(outside_allocator=True)
    fake.process_mb = 1400.0
    fake.wait_for_samples(2)
    fake.process_mb = 700.0
    return pm.read()


def test_a_runtime_outside_torch_is_measured_by_nvml_for_this_process(monkeypatch):
    fake = StepNvml(process_mb=400.0, others_mb=3000.0)  # another process's 3 GB is not this case's
    peak = arena_pass(monkeypatch, fake)
    assert (peak.peak_mb, peak.start_mb, peak.growth_mb, peak.end_mb) == (1400.0, 400.0, 1000.0, 700.0)
    assert peak.method == "NVML per-process used memory, sampled every 10 ms" and peak.note == ""
    assert peak.cuda_allocated_peak_mb == 102.0  # torch's near-zero figure, kept beside it
    # the budget can now fail such a case
    assert check_budget(peak, 1024) == "peak memory 1400 MiB > budget 1024 MiB (--e3p-max-memory-mb): NVML per-process used memory, sampled every 10 ms"


def test_where_nvml_does_not_list_this_process_the_device_used_memory_is_taken_and_why(monkeypatch):
    fake = StepNvml(process_mb=400.0, others_mb=100.0, pid=987654)  # a container: NVML lists the host's pid
    peak = arena_pass(monkeypatch, fake)
    assert peak.peak_mb == 1500.0 and peak.start_mb == 500.0  # every process on the GPU
    assert peak.method == "NVML device used memory (all processes), sampled every 10 ms"
    assert peak.note == (
        f"fallback to the device's used memory, which counts every process on the GPU: this process (pid {os.getpid()}) "
        "is not among NVML's compute processes (in a container NVML lists host PIDs)"
    )


def test_where_nvml_cannot_list_processes_the_note_gives_its_answer(monkeypatch):
    fake = StepNvml(process_mb=400.0)
    fake.processes_error = NOT_SUPPORTED
    peak = arena_pass(monkeypatch, fake)
    assert peak.method.startswith("NVML device used memory")
    assert peak.note.endswith("NVML cannot list the GPU's processes (NVML_ERROR_NOT_SUPPORTED)")


def test_without_nvml_a_runtime_outside_torch_has_no_peak_rather_than_torchs_near_zero(monkeypatch):
    FakeCuda(base=100 * MIB, case_bytes=2 * MIB, reserved=20 * MIB).install(monkeypatch)

    def no_nvml():
        raise nvml_sensors.SensorUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py")

    monkeypatch.setattr(nvml_sensors, "load_pynvml", no_nvml)
    pm = PeakMemory("cuda", "cuda:0")
    pm.reset(outside_allocator=True)
    with pytest.raises(memory.MemoryUnavailable, match=r"allocates outside torch, and NVML cannot measure it: nvidia-ml-py is not installed"):
        pm.read()
    pm.reset()  # the next case, an eager one: torch's allocator again
    assert pm.read().method == "torch.cuda.max_memory_allocated"


class TorchTensorRTModule(torch.nn.Module):
    """Named and placed as Torch-TensorRT's engine module (torch_tensorrt.dynamo.runtime.TorchTensorRTModule)."""


TorchTensorRTModule.__module__ = "torch_tensorrt.dynamo.runtime._TorchTensorRTModule"


def test_which_runtimes_allocate_outside_torch():
    class InferenceSession:  # onnxruntime's: not a torch module
        pass

    trt = torch.nn.Sequential(torch.nn.Identity(), TorchTensorRTModule())
    assert memory.runs_outside_torch_allocator(InferenceSession())
    assert memory.runs_outside_torch_allocator(trt)
    assert not memory.runs_outside_torch_allocator(None)  # the eager model
    assert not memory.runs_outside_torch_allocator(torch.nn.Linear(2, 2))  # pruned, quantised, compiled: torch's


def onnx_case_on_a_gpu(monkeypatch, max_memory_mb=0.0, nvml=None, forward=None):
    """A CaseRunner for an ONNX-Runtime-like variant (its runtime no torch module) on --device cuda, with
    `nvml` as pynvml (None: not installed): the bench, the record and the budget as the plugin runs them. The model runs on the CPU
    (no GPU here); torch's CUDA counters are FakeCuda's."""
    import dataclasses

    from pytest_e3p.config import DEFAULTS, SPEC, Options
    from pytest_e3p.hardware.devices import PROFILES, Device
    from pytest_e3p.measure.protocols import Protocol
    from pytest_e3p.models import datasets, zoo
    from pytest_e3p.models.build import RANDOM, Weights
    from pytest_e3p.models.complexity import Complexity
    from pytest_e3p.run.bench import Bench
    from pytest_e3p.run.case import Case
    from pytest_e3p.run.loading import LoadedModel
    from pytest_e3p.run.record import CaseSetup
    from pytest_e3p.run.runner import CaseRunner, RunnerContext
    from pytest_e3p.variants.base import PreparedVariant
    from pytest_e3p.variants.catalog import Bound

    FakeCuda(base=100 * MIB, case_bytes=2 * MIB, reserved=20 * MIB).install(monkeypatch)

    def no_nvml():
        raise nvml_sensors.SensorUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py")

    monkeypatch.setattr(nvml_sensors, "load_pynvml", no_nvml if nvml is None else lambda: nvml)
    options = Options(**{name: parse(DEFAULTS[name]) for name, _flag, _d, parse, _h in SPEC})
    options = dataclasses.replace(options, max_memory_mb=max_memory_mb)
    protocol = Protocol(batch_size=1, rounds=2, passes=1, min_round_s=0.01, warmup_s=0.0, idle_s=0.0)
    device = Device("cuda", PROFILES["cuda"], "cpu", {"name": "NVIDIA GeForce RTX 3050 Laptop GPU"})
    bench = Bench(device, protocol, options, None, PeakMemory("cuda", "cuda:0"))

    class InferenceSession:  # onnxruntime's: its CUDA arena is outside torch
        pass

    net = torch.nn.Flatten()
    variant = PreparedVariant(
        "onnxruntime",
        forward or (lambda x: net(x)),
        "onnxruntime, CUDAExecutionProvider",
        Bound("onnx", 1e-3, 99.0, "exported graph"),
        runtime=InferenceSession(),
    )
    model = zoo.parse_model("test_vit")
    loaded = LoadedModel(model, net, Weights(RANDOM, "test"), Complexity(0.1, 0.01, (3, 8, 8)), (3, 8, 8), 10, variant.forward, variant=variant)
    case = Case(model, "cuda", datasets.parse_datasets("synthetic")[0], "onnxruntime", batch_size=1)
    setup = CaseSetup(case, loaded, "cuda", bench.sensor.info, protocol, 1, {}, 0.5)
    return CaseRunner(RunnerContext(bench, options, lambda line: None, setup))


WHY = "peak memory unavailable: its runtime allocates outside torch, and NVML cannot measure it: nvidia-ml-py is not installed: pip install nvidia-ml-py"


def test_the_record_of_such_a_case_says_why_its_peak_is_unavailable(monkeypatch):
    runner = onnx_case_on_a_gpu(monkeypatch)
    r = runner.measure()
    assert r.peak_memory_mb is None and r.memory is None  # never torch's 2 MiB
    assert r.memory_method == WHY


def test_under_a_budget_such_a_case_cannot_pass_unchecked(monkeypatch):
    from pytest_e3p.storage import results

    runner = onnx_case_on_a_gpu(monkeypatch, max_memory_mb=512.0)
    with pytest.raises(results.MeasurementError):
        runner.measure()
    r = runner.result
    assert r.status == results.INVALID and r.reason == f"{WHY}; --e3p-max-memory-mb cannot be checked for this case"


def test_with_nvml_such_a_case_records_this_processs_peak_and_the_budget_fails_it(monkeypatch):
    from pytest_e3p.storage import results

    fake = StepNvml(process_mb=400.0)
    fake.counter, fake.instant_return, fake.average = False, NOT_SUPPORTED, False  # no energy: short rounds

    def forward(x):  # the arena grows to 1400 MiB during the first call and stays (ONNX Runtime keeps it)
        if fake.process_mb < 1400.0:
            fake.process_mb = 1400.0
            fake.wait_for_samples(2)
        return x.flatten(1)

    runner = onnx_case_on_a_gpu(monkeypatch, max_memory_mb=1024.0, nvml=fake, forward=forward)
    with pytest.raises(results.MeasurementError):
        runner.measure()
    r = runner.result
    assert r.peak_memory_mb == 1400.0 and r.memory_growth_mb == 1000.0
    assert r.memory_method == "NVML per-process used memory, sampled every 10 ms"
    assert r.status == results.FAILED and r.reason.startswith("peak memory 1400 MiB > budget 1024 MiB")
