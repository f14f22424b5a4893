"""The labelled CPU estimate: static W x wall time + W per busy core x process CPU time, checked to
the digit on a scripted wall clock and CPU clock; and the CPU's name that results are recorded under."""

import io
import sys
import types

import pytest

from pytest_e3p.hardware import devices
from pytest_e3p.hardware.sensors import ESTIMATE, estimate, window
from pytest_e3p.hardware.sensors.estimate import CpuTimeEstimate

# Different figures for the two terms, so a swapped pair (or a term left out) shows.
STATIC_W, W_PER_CORE = 4.0, 15.0


@pytest.fixture
def clocks(monkeypatch):
    """estimate.py's wall clock (time.monotonic) and CPU clock (time.process_time), set by hand."""
    now = types.SimpleNamespace(wall=100.0, cpu=7.0)
    monkeypatch.setattr(estimate, "time", types.SimpleNamespace(monotonic=lambda: now.wall, process_time=lambda: now.cpu))
    return now


def test_energy_is_static_power_times_wall_time_plus_power_per_core_times_cpu_time(clocks):
    sensor = CpuTimeEstimate(w_per_core=W_PER_CORE, static_w=STATIC_W)
    sensor.start()
    assert sensor.read().total_mj == 0.0
    clocks.wall += 2.5  # 2.5 s of wall time, 3 s of CPU time: two threads busy most of it
    clocks.cpu += 3.0
    reading = sensor.read()
    # 4 W x 2.5 s + 15 W x 3 s = 10 J + 45 J (swapped: 37.5 J + 12 J = 49.5 J)
    assert reading.total_mj == pytest.approx(55_000.0, rel=1e-12)
    assert reading.t_s == 102.5
    # a window is the difference: 1 s idle (no CPU time) costs the static power alone
    clocks.wall += 1.0
    assert window(reading, sensor.read()).energy_mj == pytest.approx(STATIC_W * 1000.0, rel=1e-12)
    assert window(reading, sensor.read()).power_w == pytest.approx(STATIC_W, rel=1e-12)


def test_the_estimate_counts_from_start_not_from_process_start(clocks):
    sensor = CpuTimeEstimate(w_per_core=W_PER_CORE, static_w=STATIC_W)
    clocks.wall, clocks.cpu = 500.0, 40.0  # time the process spent before the sensor started
    sensor.start()
    clocks.wall += 1.0
    clocks.cpu += 1.0
    assert sensor.read().total_mj == pytest.approx((STATIC_W + W_PER_CORE) * 1000.0, rel=1e-12)


def test_the_estimate_says_what_it_assumed_and_is_never_a_measurement():
    info = CpuTimeEstimate(w_per_core=W_PER_CORE, static_w=STATIC_W).info
    assert info.kind == ESTIMATE
    assert info.boundary == "estimate: 4 W static x wall time + 15 W per busy core x process CPU time (assumed, not measured)"


def test_a_cpu_without_rapl_gets_the_estimate_with_the_options_figures_in_their_places(sysfs_root):
    # sysfs_root is empty: no powercap folder, so RAPL is unavailable
    device = devices.Device("cpu", devices.PROFILES["cpu"], "cpu")
    sensor, why = device.open_sensor(w_per_core=W_PER_CORE, static_w=STATIC_W)
    assert isinstance(sensor, CpuTimeEstimate)
    assert (sensor.static_w, sensor.w_per_core) == (STATIC_W, W_PER_CORE)
    assert "no RAPL" in why and "using a labelled estimate instead" in why


@pytest.fixture
def fresh_cpu_name():
    devices.cpu_name.cache_clear()
    yield
    devices.cpu_name.cache_clear()


def test_the_cpu_name_is_py_cpuinfos_brand(monkeypatch, fresh_cpu_name):
    monkeypatch.setitem(sys.modules, "cpuinfo", types.SimpleNamespace(get_cpu_info=lambda: {"brand_raw": "Fake CPU 9000 @ 3.0GHz"}))
    assert devices.cpu_identity()["name"] == "Fake CPU 9000 @ 3.0GHz"


@pytest.mark.parametrize("cpuinfo", [None, types.SimpleNamespace(get_cpu_info=lambda: {})], ids=["not-installed", "no-brand"])
def test_without_py_cpuinfo_the_name_is_read_from_proc_cpuinfo(monkeypatch, fresh_cpu_name, cpuinfo):
    monkeypatch.setitem(sys.modules, "cpuinfo", cpuinfo)  # None: `import cpuinfo` raises ImportError
    proc = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 2.00GHz\n"
    monkeypatch.setattr(devices, "open", lambda path, *a: io.StringIO(proc) if path == "/proc/cpuinfo" else open(path, *a), raising=False)
    assert devices.cpu_name() == "Test CPU @ 2.00GHz"
