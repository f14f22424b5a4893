"""RAPL and Jetson backends against directory trees with the real sysfs layouts."""

import os
import threading
import time

import pytest

from conftest import rewrite, write
from pytest_e3p.sensors import SensorFault, SensorUnavailable, window
from pytest_e3p.sensors.jetson import JetsonRailSensor, find_rails, jetson_identity
from pytest_e3p.sensors.rapl import RaplSensor, find_zones


def rapl_tree(root, sockets=1, dram=True, psys=True):
    base = root / "sys/class/powercap"
    for s in range(sockets):
        z = base / f"intel-rapl:{s}"
        write(z / "name", f"package-{s}")
        write(z / "energy_uj", 1_000_000)
        write(z / "max_energy_range_uj", 262143328850)
        write(z / f"intel-rapl:{s}:0" / "name", "core")
        write(z / f"intel-rapl:{s}:0" / "energy_uj", 500_000)
        if dram:
            write(z / f"intel-rapl:{s}:1" / "name", "dram")
            write(z / f"intel-rapl:{s}:1" / "energy_uj", 200_000)
            write(z / f"intel-rapl:{s}:1" / "max_energy_range_uj", 65712999613)
        # the class folder lists every zone flat, as the kernel does (symlinks there)
        os.makedirs(root / "sys/class/powercap", exist_ok=True)
    if psys:
        write(base / f"intel-rapl:{sockets}" / "name", "psys")
        write(base / f"intel-rapl:{sockets}" / "energy_uj", 9_000_000)
    write(base / "intel-rapl-mmio:0" / "name", "package-0")
    write(base / "intel-rapl-mmio:0" / "energy_uj", 1_000_000)
    # sub-zones also appear at the top of the class folder
    for s in range(sockets):
        for sub in (0, 1) if dram else (0,):
            src = base / f"intel-rapl:{s}" / f"intel-rapl:{s}:{sub}"
            os.symlink(src, base / f"intel-rapl:{s}:{sub}")
    return base


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


def test_rapl_counter_going_backwards_is_a_fault_not_a_wrap(sysfs_root):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    sensor = RaplSensor()
    sensor.start()
    write(base / "intel-rapl:0/energy_uj", 999_000)
    with pytest.raises(SensorFault, match="went backwards"):
        sensor.read()


def test_rapl_without_permission_says_how_to_grant_it(sysfs_root, monkeypatch):
    rapl_tree(sysfs_root, dram=False, psys=False)
    import pytest_e3p.sensors.sysfs as sysfs

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


def tx2_tree(root):
    """TX2, L4T 32: two INA3221 on the iio layout, rails named in rail_name_N (mW)."""
    i2c = root / "sys/bus/i2c/drivers/ina3221x"
    dev1 = i2c / "0-0041/iio:device1"
    for n, (name, mw) in enumerate([("VDD_IN", 5000), ("VDD_SYS_CPU", 800), ("VDD_SYS_DDR", 600)]):
        write(dev1 / f"rail_name_{n}", name)
        write(dev1 / f"in_power{n}_input", mw)
    dev0 = i2c / "0-0040/iio:device0"
    for n, (name, mw) in enumerate([("VDD_SYS_GPU", 2000), ("VDD_SYS_SOC", 700), ("VDD_4V0_WIFI", 100)]):
        write(dev0 / f"rail_name_{n}", name)
        write(dev0 / f"in_power{n}_input", mw)
    write(root / "proc/device-tree/model", "NVIDIA Jetson TX2 Developer Kit")
    write(root / "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64")
    return dev1, dev0


def orin_tree(root, agx=False):
    """Orin (L4T 35/36): hwmon layout, label/voltage (mV)/current (mA) per channel."""
    hw = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    rails = [("VDD_GPU_SOC", 5000, 1000), ("VDD_CPU_CV", 5000, 400), ("VIN_SYS_5V0", 5000, 300)] if agx else [
        ("VDD_IN", 5000, 1200),
        ("VDD_CPU_GPU_CV", 5000, 500),
        ("VDD_SOC", 5000, 300),
    ]
    for n, (label, mv, ma) in enumerate(rails, 1):
        write(hw / f"in{n}_label", label)
        write(hw / f"in{n}_input", mv)
        write(hw / f"curr{n}_input", ma)
    write(hw / "in7_label", "sum of shunt voltages")
    write(hw / "in7_input", 40)
    write(root / "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit" if agx else "NVIDIA Orin NX Developer Kit")
    write(root / "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64")
    return hw


def test_tx2_rails_are_found_by_label_and_vdd_in_is_the_total(sysfs_root):
    tx2_tree(sysfs_root)
    labels = sorted(r.label for r in find_rails())
    assert labels == sorted(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"])
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "VDD_IN"
    assert sensor.info.boundary == "Jetson module input (VDD_IN)"
    with sensor:
        start = sensor.read()
        time.sleep(0.5)
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


def test_agx_orin_has_no_vdd_in_so_the_total_is_the_sum_and_says_so(sysfs_root):
    orin_tree(sysfs_root, agx=True)
    sensor = JetsonRailSensor(rate_hz=200)
    assert sensor.info.total_rail == "sum"
    assert "no VDD_IN" in sensor.info.boundary
    with sensor:
        start = sensor.read()
        time.sleep(0.3)
        w = window(start, sensor.read())
    assert w.power_w == pytest.approx(8.5, rel=0.02)


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


def test_integration_follows_a_power_trace_rewritten_on_a_schedule(sysfs_root):
    dev1, _ = tx2_tree(sysfs_root)
    power_file = dev1 / "in_power0_input"
    levels = [2000, 8000, 4000, 6000]  # mW, 0.25 s each
    sensor = JetsonRailSensor(rate_hz=50)
    stop = threading.Event()

    def writer(t0):
        for i, mw in enumerate(levels):
            while time.monotonic() < t0 + 0.25 * i:
                time.sleep(0.0005)
            rewrite(power_file, mw)
        stop.set()

    write(power_file, f"{levels[0]:>10d}")
    with sensor:
        start = sensor.read()
        thread = threading.Thread(target=writer, args=(time.monotonic(),))
        thread.start()
        stop.wait()
        time.sleep(0.25)
        end = sensor.read()
        thread.join()
    exact_mj = sum(levels) * 0.25 + (end.t_s - start.t_s - 1.0) * levels[-1]
    assert window(start, end).rails_mj["VDD_IN"] == pytest.approx(exact_mj, rel=0.05)


def test_not_a_jetson_says_so(sysfs_root):
    with pytest.raises(SensorUnavailable, match="no INA3221 rails"):
        find_rails()


def test_jtop_fallback_integrates_the_instantaneous_power_never_the_average():
    from pytest_e3p.sensors.jetson import JtopSensor

    class FakeJtop:
        def __init__(self):
            self.power = {"rail": {"VDD_IN": {"power": 6000, "avg": 99999}, "VDD_CPU_GPU_CV": {"power": 2000, "avg": 99999}}, "tot": {}}

        def start(self):
            pass

        def ok(self):
            return True

        def close(self):
            pass

    sensor = JtopSensor(rate_hz=100, jtop_factory=FakeJtop)
    assert sensor.info.name == "jetson-jtop" and sensor.info.total_rail == "VDD_IN"
    with sensor:
        start = sensor.read()
        time.sleep(0.3)
        w = window(start, sensor.read())
    assert w.power_w == pytest.approx(6.0, rel=0.01)
