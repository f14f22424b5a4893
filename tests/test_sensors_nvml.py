"""The NVML backend against a fake object at the pynvml boundary.

What the fake answers follows nvml.h and pynvml: nvmlDeviceGetTotalEnergyConsumption is "for Volta or
newer" and raises NVMLError_NotSupported elsewhere (a Titan X: codecarbon issue 608); the field
NVML_FI_DEV_POWER_INSTANT (186, CUDA 12.2 / driver 535) comes back from nvmlDeviceGetFieldValues with
its own nvmlReturn, 3 = NVML_ERROR_NOT_SUPPORTED on a GTX 1650 Max-Q (nvidia-ml-py / pynvml issue 18);
on Jetson boards every power query answers NOT_SUPPORTED (nvidia-cosmos/cosmos-reason1 issue 61,
Jetson Thor), and nvml.h names Orin's architecture NVML_DEVICE_ARCH_T23X = 11, above Volta's 5."""

import json
import textwrap

import pytest
from fakes.clock import ScriptedClock
from fakes.nvml import GPU_IS_LOST, NOT_SUPPORTED, FakeNvml, NVMLError

from pytest_e3p.hardware.sensors import SensorFault, SensorUnavailable, window
from pytest_e3p.hardware.sensors import nvml as nv


@pytest.fixture
def fake(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setattr(nv, "load_pynvml", lambda: fake)
    return fake


@pytest.fixture
def clock(fake, monkeypatch):
    """The fake's counter and the sensors' timestamps on one scripted clock."""
    from pytest_e3p.hardware.sensors import base

    fake.clock = ScriptedClock().install(monkeypatch, nv, base)
    return fake.clock


def test_volta_and_newer_use_the_energy_counter(fake, clock):
    sensor = nv.open_nvml_sensor()
    assert isinstance(sensor, nv.NvmlCounterSensor)
    assert sensor.info.boundary == "GPU board" and sensor.info.unit == "mJ"
    with sensor:
        start = sensor.read()
        clock.advance(0.5)
        w = window(start, sensor.read())
    assert w.power_w == pytest.approx(100.0, rel=0.25)  # 50 ms counter steps over 0.5 s


def test_older_gpus_sample_instantaneous_power_and_integrate_it(fake, clock):
    # Pascal: the counter is "for Volta or newer" (nvml.h) and answers NOT_SUPPORTED
    fake.arch, fake.counter = 4, False
    sensor = nv.open_nvml_sensor(rate_hz=100)
    assert isinstance(sensor, nv.NvmlSampledSensor)
    start = sensor.read()  # on the scripted clock the sampler's thread is not started: each read() samples
    for _ in range(30):
        clock.advance(0.01)
        sensor.read()
    w = window(start, sensor.read())
    assert w.power_w == pytest.approx(100.0, rel=0.01)


# A power trace that varies: the power at each instant, linear in between (so the trapezoid of the
# samples is the exact integral), and the driver's counter, the integral worked out by hand:
#   0.5 s x (50 + 150) / 2 = 50 J, 0.5 s x (150 + 100) / 2 = 62.5 J, 0.5 s x (100 + 200) / 2 = 75 J.
# Rectangles would read 0.5 s x (50 + 150 + 100) = 150 J (left) or 225 J (right): a constant power
# cannot tell those from the trapezoid, this trace can.
TRACE = {0.0: (50_000, 0.0), 0.5: (150_000, 50_000.0), 1.0: (100_000, 112_500.0), 1.5: (200_000, 187_500.0)}


def test_counter_and_sampled_modes_agree_on_a_varying_power_trace(fake, clock):
    fake.script = TRACE
    counter = nv.open_nvml_sensor(mode="counter")
    sampled = nv.open_nvml_sensor(mode="sampled", rate_hz=100)
    counter.start()  # the sampler's thread is not started: each read() below takes its sample
    c0, s0 = counter.read(), sampled.read()
    for t in (0.5, 1.0):
        clock.t_s = t
        sampled.read()
    clock.t_s = 1.5
    c, s = window(c0, counter.read()), window(s0, sampled.read())
    assert c.energy_mj == pytest.approx(187_500.0, rel=1e-12)
    assert s.energy_mj == pytest.approx(187_500.0, rel=1e-12)
    assert s.duration_s == 1.5 and sampled.samples == 4


def test_mig_slices_are_refused_with_a_message(fake):
    fake.mig = 1
    # the message says why and both ways out
    with pytest.raises(
        SensorUnavailable,
        match=r"partitioned with MIG, and MIG slices have no power reading: run on a GPU with MIG disabled \(nvidia-smi -mig 0\) or without energy",
    ):
        nv.open_nvml_sensor()


def test_no_driver_is_unavailable_not_a_crash(monkeypatch):
    class NoLib:
        NVMLError = NVMLError

        def nvmlInit(self):
            raise NVMLError("NVML Shared Library Not Found")

    import sys

    monkeypatch.setitem(sys.modules, "pynvml", NoLib())
    with pytest.raises(SensorUnavailable, match="no NVIDIA driver"):
        nv.load_pynvml()


def test_a_counter_failing_mid_run_is_a_fault(fake):
    sensor = nv.open_nvml_sensor()
    with sensor:
        fake.fail_counter = True
        with pytest.raises(SensorFault, match="GPU is lost"):
            sensor.read()


def test_gpu_identity_records_what_makes_results_comparable(fake):
    ident = nv.gpu_identity(fake, "gpu0")
    assert ident == {
        "name": "NVIDIA GeForce RTX 3050 Laptop GPU",
        "uuid": "GPU-1234",
        "driver": "550.54",
        "power_limit_w": 80.0,
        "sm_clock_mhz": 1500,
        "mem_clock_mhz": 7000,
    }
    assert nv.gpu_temperature_c(fake, "gpu0") == 55.0


def test_gpu_count_or_why_there_is_none(fake):
    fake.count = 2
    assert nv.gpu_count() == 2
    fake.count = 0
    with pytest.raises(SensorUnavailable, match="no GPU"):
        nv.gpu_count()


# -- the readings probed at open, and their fallback order ------------------------------------------

ALL_NOT_SUPPORTED = "energy unavailable: counter: NVML_ERROR_NOT_SUPPORTED; instant: field 186 returned 3 (NOT_SUPPORTED); average: NVML_ERROR_NOT_SUPPORTED"


def not_supported(fake, *readings):
    """The GPU answers NOT_SUPPORTED to each reading named, the way pynvml reports it."""
    if "counter" in readings:
        fake.counter = False  # pynvml raises NVMLError_NotSupported (nvmlReturn 3)
    if "instant" in readings:
        fake.instant_return = NOT_SUPPORTED  # the call succeeds, the field's own nvmlReturn is 3
    if "average" in readings:
        fake.average = False


def test_probe_readings_names_each_reading_and_nvmls_answer_in_the_fallback_order(fake):
    not_supported(fake, "instant")
    probes = nv.probe_readings(fake, "gpu0")
    assert [(p.reading, p.ok) for p in probes] == [("counter", True), ("instant", False), ("average", True)]
    assert probes[0].detail.endswith(" mJ")
    assert probes[1].detail == "field 186 returned 3 (NOT_SUPPORTED)"
    assert probes[2].detail == "100000 mW (1 s moving average)"
    assert fake.calls.count("counter") == 2  # the counter is read twice, not trusted on one answer


def test_a_counter_that_is_not_supported_falls_back_to_the_instant_field(fake):
    not_supported(fake, "counter")  # on a GPU that NVML calls Hopper: the number does not decide
    sensor = nv.open_nvml_sensor()
    assert isinstance(sensor, nv.NvmlSampledSensor) and sensor.info.unit == "mW"


def test_an_instant_field_not_supported_in_its_own_return_falls_back_to_average_power(fake, clock):
    not_supported(fake, "counter", "instant")
    sensor = nv.open_nvml_sensor(rate_hz=100)
    assert isinstance(sensor, nv.NvmlAverageSensor)
    # labelled: a 1 s moving average integrated is the last resort, and the rounds must be long
    assert "average" in sensor.info.name and "last resort" in sensor.info.boundary
    assert sensor.info.update_period_s == 1.0 and sensor.period_s == pytest.approx(0.1)  # 10 Hz: the value moves once a second
    start = sensor.read()
    for _ in range(20):
        clock.advance(0.1)
        sensor.read()
    w = window(start, sensor.read())
    assert w.power_w == pytest.approx(100.0, rel=1e-9)


def test_with_no_reading_energy_is_unavailable_in_one_line_naming_each_answer(fake):
    not_supported(fake, "counter", "instant", "average")
    with pytest.raises(SensorUnavailable) as exc:
        nv.open_nvml_sensor()
    assert str(exc.value) == ALL_NOT_SUPPORTED


def test_a_forced_reading_that_does_not_answer_says_so_without_falling_back(fake):
    not_supported(fake, "counter")
    with pytest.raises(SensorUnavailable, match=r"^energy unavailable: counter: NVML_ERROR_NOT_SUPPORTED$"):
        nv.open_nvml_sensor(mode="counter")
    assert isinstance(nv.open_nvml_sensor(mode="average"), nv.NvmlAverageSensor)
    with pytest.raises(ValueError, match="one of auto, counter, instant, average"):
        nv.open_nvml_sensor(mode="integrated")


def test_a_counter_answering_once_then_failing_is_no_counter(fake):
    real = fake.nvmlDeviceGetTotalEnergyConsumption
    reads = []

    def once(h):
        reads.append(h)
        if len(reads) > 1:
            raise NVMLError(GPU_IS_LOST)
        return real(h)

    fake.nvmlDeviceGetTotalEnergyConsumption = once
    probe = nv.probe_readings(fake, "gpu0")[0]
    assert probe == nv.ReadingProbe("counter", False, "second read: NVML_ERROR_GPU_IS_LOST")
    assert isinstance(nv.open_nvml_sensor(), nv.NvmlSampledSensor)


def test_an_integrated_tegra_gpu_is_never_measured_through_nvml(fake):
    # Orin's NVML_DEVICE_ARCH_T23X (11) is above Volta's 5: a "Volta or newer" check would pass it,
    # and then every power query answers NOT_SUPPORTED. Its energy comes from the INA3221 rails.
    fake.arch = 11
    with pytest.raises(SensorUnavailable, match=r"integrated \(Tegra\) GPU.*--device jetson"):
        nv.open_nvml_sensor()


def test_the_average_sensor_failing_mid_run_is_a_fault(fake, clock):
    not_supported(fake, "counter", "instant")
    sensor = nv.open_nvml_sensor()
    sensor.read()
    fake.average = False
    with pytest.raises(SensorFault, match="NVML average power failed: NVML_ERROR_NOT_SUPPORTED"):
        sensor.read()


# -- a run on such a GPU goes on, its energy unavailable ----------------------------------------------

RUN = [
    "--e3p-device=cuda",
    "--e3p-models=test_vit",
    "--e3p-batch-size=2",
    "--e3p-passes=1",
    "--e3p-rounds=3",
    "--e3p-min-round-s=0.02",
    "--e3p-warmup-s=0",
    "--e3p-idle-s=0",
    "--e3p-weights=random",
    "--e3p-results=r.json",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:benchmark",
]


# The plugin run's conftest: pynvml is a FakeNvml (set up by each test's lines), and `--e3p-device cuda`
# resolves to the CUDA profile with its model on the CPU, since this machine has no GPU: the sensor is
# opened through Device.open_sensor and the bench as on a GPU. Undone when the run ends.
GPU_CONFTEST = """
import importlib
import sys

import pytest
from fakes.nvml import GPU_IS_LOST, NOT_SUPPORTED, FakeNvml, NVMLError

from pytest_e3p.hardware.devices import PROFILES, Device

patch = pytest.MonkeyPatch()


@pytest.hookimpl(tryfirst=True)  # before the plugin's pytest_configure opens the session
def pytest_configure(config):
    fake = FakeNvml()
{setup}
    patch.setitem(sys.modules, "pynvml", fake)
    # the modules as this run imports them (pytester drops the ones a previous run imported)
    session, memory = importlib.import_module("pytest_e3p.run.session"), importlib.import_module("pytest_e3p.measure.memory")
    identity = {{"name": "NVIDIA GeForce GTX 1650 with Max-Q Design", "uuid": "GPU-1234"}}
    patch.setattr(session, "resolve", lambda name: Device("cuda", PROFILES["cuda"], "cpu", identity))
    real = memory.PeakMemory
    patch.setattr(memory, "PeakMemory", lambda kind, torch_device: real("cpu", torch_device))  # the model is on the CPU


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    patch.undo()
"""


def gpu_run(pytester, setup):
    pytester.makeconftest(GPU_CONFTEST.format(setup=textwrap.indent(setup, "    ")))
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    return pytester


def test_a_gpu_with_no_power_reading_runs_with_energy_unavailable(pytester):
    # a Tegra-like answer to every query, on a discrete GPU
    pytester = gpu_run(pytester, "fake.counter, fake.instant_return, fake.average = False, NOT_SUPPORTED, False")
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*energy: {ALL_NOT_SUPPORTED}; energy is reported as unavailable*"])
    data = json.loads((pytester.path / "r.json").read_text())
    case = data["cases"]["test_vit-cuda-synthetic"]
    assert case["energy_kind"] == "unavailable" and case["energy_mj_per_image"] is None


# the probe's two reads of the counter answer, the start's fails: the GPU fell off the bus in between
LOST_AFTER_THE_PROBE = """
counter, reads = fake.nvmlDeviceGetTotalEnergyConsumption, []

def lost_after_the_probe(h):
    reads.append(h)
    if len(reads) > 2:
        raise NVMLError(GPU_IS_LOST)
    return counter(h)

fake.nvmlDeviceGetTotalEnergyConsumption = lost_after_the_probe
"""


def test_a_sensor_failing_at_its_first_reading_leaves_the_run_going_without_energy(pytester):
    pytester = gpu_run(pytester, LOST_AFTER_THE_PROBE)
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*energy: the nvml-counter sensor failed at its first reading (NVML energy counter failed: GPU is lost)*"])
    case = json.loads((pytester.path / "r.json").read_text())["cases"]["test_vit-cuda-synthetic"]
    assert case["energy_kind"] == "unavailable"
    # under --e3p-require-sensor the same is a one-line usage error, not a traceback
    result = pytester.runpytest(*RUN, "--e3p-require-sensor")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--e3p-require-sensor: no power sensor for --device cuda: the nvml-counter sensor failed at its first reading*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
