"""The NVML backend against a fake object at the pynvml boundary."""

import pytest
from fakes.clock import ScriptedClock
from fakes.nvml import FakeNvml, NVMLError

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
