"""RAPL and Jetson backends against directory trees with the real sysfs layouts."""

import os
import time

import pytest
from fakes.clock import ScriptedClock
from fakes.files import rewrite, write
from fakes.power_rails import TX2_CARRIER_RAILS, agx_xavier_tree, iio_monitor, nano_tree, orin_tree, rapl_tree, tx2_tree, xavier_nx_tree

from pytest_e3p.hardware.sensors import SensorFault, SensorUnavailable, window
from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor, find_rails, jetson_identity
from pytest_e3p.hardware.sensors.rapl import RaplSensor, find_zones


def test_rapl_counts_packages_and_dram_once_and_never_psys_core_or_mmio(sysfs_root):
    base = rapl_tree(sysfs_root, sockets=2)
    sensor = RaplSensor()
    assert sorted(sensor.info.rails) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert sensor.info.boundary == "CPU package + DRAM"
    sensor.start()
    write(base / "intel-rapl:0/energy_uj", 3_000_000)  # +2 J
    write(base / "intel-rapl:1/energy_uj", 2_000_000)  # +1 J
    write(base / "intel-rapl:0/intel-rapl:0:1/energy_uj", 700_000)  # +0.5 J dram
    write(base / "intel-rapl:0/intel-rapl:0:0/energy_uj", 9_500_000)  # core: ignored
    write(base / "intel-rapl:2/energy_uj", 99_000_000)  # psys: ignored
    reading = sensor.read()
    assert reading.total_mj == pytest.approx(3500.0)
    assert reading.rails_mj["package-0"] == pytest.approx(2000.0)


def test_rapl_unwraps_the_counter_at_max_energy_range(sysfs_root):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    write(base / "intel-rapl:0/energy_uj", 262143328850 - 1_000_000)
    sensor = RaplSensor()
    sensor.start()
    write(base / "intel-rapl:0/energy_uj", 2_000_000)  # wrapped: 1 J before + 2 J after
    assert sensor.read().total_mj == pytest.approx(3000.0)


RANGE_UJ = 10_000_000  # a 10 J counter range, so a few scripted steps make several wraps


def test_rapl_counts_every_wrap_of_a_window_longer_than_the_counter_range(sysfs_root):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    counter = base / "intel-rapl:0/energy_uj"
    write(base / "intel-rapl:0/max_energy_range_uj", RANGE_UJ)
    write(counter, 1_000_000)
    sensor = RaplSensor(poll_period_s=3600.0)  # the poller is driven by hand below
    with sensor:
        value = 1_000_000
        for _ in range(8):  # 8 x 4 J = 32 J: three wraps inside one window
            value = (value + 4_000_000) % RANGE_UJ
            write(counter, value)
            sensor.poll()
        write(counter, (value + 1_000_000) % RANGE_UJ)
        reading = sensor.read()
    # reading only the edges (1 J -> 4 J) would give 3 J, or at most one wrap more
    assert reading.total_mj == pytest.approx(33_000.0)
    assert reading.rails_mj["package-0"] == pytest.approx(33_000.0)


def test_rapl_background_poller_counts_the_wraps_between_reads(sysfs_root):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    counter = base / "intel-rapl:0/energy_uj"
    write(base / "intel-rapl:0/max_energy_range_uj", RANGE_UJ)
    rewrite(counter, 1_000_000)
    sensor = RaplSensor(poll_period_s=0.002)
    with sensor:
        start = sensor.read()
        value = 1_000_000
        for _ in range(6):  # 6 x 4 J = 24 J, two wraps, no read() in between
            value = (value + 4_000_000) % RANGE_UJ
            rewrite(counter, value)  # in place, fixed width: the poller never sees a torn value
            seen = sensor.polls
            deadline = time.monotonic() + 5.0
            while sensor.polls < seen + 2 and time.monotonic() < deadline:  # one whole poll after the write
                time.sleep(0.001)
        end = sensor.read()
    assert window(start, end).energy_mj == pytest.approx(24_000.0)


def test_rapl_polls_well_within_the_shortest_wrap(sysfs_root):
    base = rapl_tree(sysfs_root, dram=True, psys=False)
    write(base / "intel-rapl:0/max_energy_range_uj", 65_532_610_987)  # AMD Zen: 65,532 J
    sensor = RaplSensor()
    # at 1 kW (far above any one zone) the AMD counter wraps in 65 s: several polls fit in that
    assert 1.0 < sensor.poll_period_s <= 65.5 / 3
    with sensor:
        assert sensor._thread is not None and sensor._thread.daemon
    assert sensor._thread is None  # stopped by close()


def test_rapl_counter_going_backwards_is_a_fault_not_a_wrap(sysfs_root):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    sensor = RaplSensor()
    sensor.start()
    write(base / "intel-rapl:0/energy_uj", 999_000)
    with pytest.raises(SensorFault, match="went backwards"):
        sensor.read()


def test_rapl_without_permission_says_how_to_grant_it(sysfs_root, monkeypatch):
    rapl_tree(sysfs_root, dram=False, psys=False)
    import pytest_e3p.hardware.sensors.sysfs as sysfs

    real = os.open

    def denied(p, flags, *args):
        # what a non-root user meets on kernels since 5.10: energy_uj is mode 0400 root
        if str(p).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, flags, *args)

    monkeypatch.setattr(sysfs.os, "open", denied)
    with pytest.raises(SensorUnavailable, match="chmod a\\+r"):
        RaplSensor()


def test_no_powercap_folder_says_so(sysfs_root):
    with pytest.raises(SensorUnavailable, match="no RAPL"):
        find_zones()


# -- Jetson ----------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The samplers' clock, scripted: a test samples by read(), the sampler's thread is not started."""
    from pytest_e3p.hardware.sensors import base

    return ScriptedClock().install(monkeypatch, base)


def power_w(sensor, clock, seconds=0.05):
    """Total and per-rail power over a short window, through the sensor's read path. The fake
    rails hold still, so the trapezoid is exact whatever the window."""
    start = sensor.read()
    clock.advance(seconds)
    w = window(start, sensor.read())
    sensor.close()
    return w.power_w, {name: mj / w.duration_s / 1000.0 for name, mj in w.rails_mj.items()}


def test_tx2_rails_are_found_by_label_and_vdd_in_is_the_total(sysfs_root, clock):
    tx2_tree(sysfs_root)
    labels = sorted(r.label for r in find_rails())
    assert labels == sorted(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"])
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "VDD_IN"
    assert sensor.info.boundary == "Jetson module input (VDD_IN)"
    start = sensor.read()
    for _ in range(100):  # 0.5 s at 200 Hz
        clock.advance(0.005)
        sensor.read()
    w = window(start, sensor.read())
    assert w.power_w == pytest.approx(5.0, rel=0.01)
    assert w.rails_mj["VDD_SYS_GPU"] / w.duration_s == pytest.approx(2000.0, rel=0.01)
    ident = jetson_identity()
    assert ident["model"] == "NVIDIA Jetson TX2 Developer Kit" and ident["l4t"] == "R32.7.1"


def test_orin_hwmon_power_is_voltage_times_current(sysfs_root):
    orin_tree(sysfs_root)
    sensor = JetsonRailSensor(rate_hz=200)
    assert "sum of shunt voltages" not in sensor.info.rails
    assert sensor.sample_mw() == {"VDD_IN": 6000.0, "VDD_CPU_GPU_CV": 2500.0, "VDD_SOC": 1500.0}
    assert jetson_identity()["l4t"] == "R36.3.0"


def test_nano_input_rail_pom_5v_in_is_the_total_not_the_sum_of_its_rails(sysfs_root, clock):
    nano_tree(sysfs_root)
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "POM_5V_IN"
    assert sensor.info.boundary == "Jetson module input (POM_5V_IN)"
    assert set(sensor.info.rails) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}
    total, rails = power_w(sensor, clock)
    # the sum of the three rails (6.2 W) counts the GPU and CPU twice
    assert total == pytest.approx(4.0, rel=1e-6)
    assert rails["POM_5V_GPU"] == pytest.approx(1.0, rel=1e-6)
    assert jetson_identity()["model"] == "NVIDIA Jetson Nano Developer Kit"


def test_tx2_carrier_board_rails_are_outside_the_module_and_never_in_its_figures(sysfs_root, clock):
    tx2_tree(sysfs_root, carrier=True)
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "VDD_IN"
    assert sorted(sensor.info.rails) == sorted(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"])
    assert sorted(sensor.info.outside_rails) == sorted(TX2_CARRIER_RAILS)
    total, rails = power_w(sensor, clock)
    assert total == pytest.approx(5.0, rel=1e-6)
    assert not set(rails) & set(TX2_CARRIER_RAILS)  # not beside the total, as if inside it


def test_tx2_module_and_carrier_are_told_apart_whatever_the_iio_numbers(sysfs_root, clock):
    # the carrier monitors probed first: iio:device0 and 1 are on the carrier
    tx2_tree(sysfs_root, carrier=True, iio_numbers=(3, 2, 0, 1))
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "VDD_IN" and "VDD_MUX" in sensor.info.outside_rails
    assert power_w(sensor, clock)[0] == pytest.approx(5.0, rel=1e-6)


def test_only_carrier_monitors_readable_is_not_a_module_reading(sysfs_root):
    iio_monitor(sysfs_root, "0-0042", 0, [("VDD_MUX", 9000)])
    with pytest.raises(SensorUnavailable, match="no INA3221 rails of a Jetson module"):
        JetsonRailSensor(rate_hz=100)


@pytest.mark.parametrize("tree", [xavier_nx_tree, orin_tree], ids=["xavier-nx", "orin-nx"])
def test_xavier_nx_and_orin_nx_hwmon_vdd_in_is_the_total(sysfs_root, tree, clock):
    hw = tree(sysfs_root)
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "VDD_IN" and sensor.info.boundary == "Jetson module input (VDD_IN)"
    assert set(sensor.info.rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    vdd_in_w = float((hw / "in1_input").read_text()) * float((hw / "curr1_input").read_text()) / 1e6
    total, rails = power_w(sensor, clock)
    assert total == pytest.approx(vdd_in_w, rel=1e-6) and rails["VDD_IN"] == pytest.approx(vdd_in_w, rel=1e-6)


@pytest.mark.parametrize(
    "tree, rails, total_w",
    [
        (lambda root: orin_tree(root, agx=True), {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}, 9.0),
        (agx_xavier_tree, {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}, 10.5),
    ],
    ids=["agx-orin", "agx-xavier"],
)
def test_agx_boards_have_no_input_rail_so_the_total_is_the_sum_and_says_so(sysfs_root, tree, rails, total_w, clock):
    tree(sysfs_root)
    sensor = JetsonRailSensor(rate_hz=200)
    assert set(sensor.info.rails) == rails  # both monitors, NC channels and "sum of shunt voltages" left out
    assert sensor.info.total_rail == "sum"
    assert "no input rail" in sensor.info.boundary
    assert power_w(sensor, clock)[0] == pytest.approx(total_w, rel=1e-6)


def test_a_rail_that_vanishes_or_returns_garbage_mid_run_is_a_fault(sysfs_root, monkeypatch):
    dev1, _ = tx2_tree(sysfs_root)
    sensor = JetsonRailSensor(rate_hz=100)
    with sensor:
        sensor.read()
        write(dev1 / "in_power0_input", "garbage")
        with pytest.raises(SensorFault, match="in_power0_input.*not a number"):
            sensor.read()
    # a board whose INA3221 driver is unbound: the kernel fails reads of the open attribute (ENODEV)
    write(dev1 / "in_power0_input", 5000)
    sensor = JetsonRailSensor(rate_hz=100)
    real_pread = os.pread
    with sensor:
        sensor.read()
        gone = os.open(dev1 / "in_power1_input", os.O_RDONLY)
        gone_inode = os.fstat(gone).st_ino
        os.close(gone)

        def pread(fd, n, offset):
            if os.fstat(fd).st_ino == gone_inode:
                raise OSError(19, "No such device")
            return real_pread(fd, n, offset)

        monkeypatch.setattr(os, "pread", pread)
        with pytest.raises(SensorFault, match="in_power1_input cannot be read any more \\(No such device\\)"):
            sensor.read()
        monkeypatch.setattr(os, "pread", real_pread)
    # a rail whose file is gone before the sensor opens it
    (dev1 / "in_power2_input").unlink()
    with pytest.raises(SensorUnavailable, match="vanished"):
        JetsonRailSensor(rate_hz=100)


def test_integration_follows_a_power_trace_rewritten_on_a_schedule(sysfs_root, clock):
    dev1, _ = tx2_tree(sysfs_root)
    power_file = dev1 / "in_power0_input"
    levels = [2000, 8000, 4000, 6000]  # mW, 0.25 s each
    sensor = JetsonRailSensor(rate_hz=50)
    write(power_file, f"{levels[0]:>10d}")
    start = sensor.read()
    for mw in levels:  # the file rewritten every 0.25 s, sampled every 20 ms between
        rewrite(power_file, mw)
        for _ in range(12):
            clock.advance(0.02)
            sensor.read()
        clock.advance(0.01)
    clock.advance(0.24)
    end = sensor.read()
    sensor.close()
    exact_mj = sum(levels) * 0.25 + (end.t_s - start.t_s - 1.0) * levels[-1]
    assert window(start, end).rails_mj["VDD_IN"] == pytest.approx(exact_mj, rel=0.05)


def test_not_a_jetson_says_so(sysfs_root):
    with pytest.raises(SensorUnavailable, match="no INA3221 rails"):
        find_rails()
