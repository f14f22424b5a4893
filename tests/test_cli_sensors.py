"""`python -m pytest_e3p sensors` reads each sensor once and prints its power, against fake trees."""

import re
import threading
import time

import pytest
from fakes.files import rewrite, write
from fakes.nvml import FakeNvml
from fakes.power_rails import orin_tree, rapl_tree, tx2_tree

import pytest_e3p.hardware.sensors as sensors
from pytest_e3p.cli import main
from pytest_e3p.hardware.sensors import nvml as nv


@pytest.fixture
def quick_probe(monkeypatch):
    # the fake rails hold still, so the real probe would wait its whole 3 s for a change
    monkeypatch.setattr(sensors, "measure_update_period_s", lambda sensor: 0.01)


def watts(out, label):
    """{rail or 'total': W} from the block that `sensors` printed for one sensor."""
    block = out.split(f"{label}: ", 1)[1].split("\n", 1)[1]
    block = re.split(r"\n(?! )", block, maxsplit=1)[0]  # up to the next unindented line
    found = {"total": float(re.search(r"power over [\d.]+ s: total ([\d.]+) W", block).group(1))}
    found.update({m.group(1): float(m.group(2)) for m in re.finditer(r"^    (\S+): ([\d.]+) W", block, re.M)})
    return found


def test_sensors_prints_each_jetson_rail_and_the_total_in_watts(capsys, sysfs_root, quick_probe):
    orin_tree(sysfs_root)  # Orin NX, hwmon layout: VDD_IN 6 W, VDD_CPU_GPU_CV 2.5 W, VDD_SOC 1.5 W
    assert main(["sensors", "--window-s", "0.2"]) == 0
    out = capsys.readouterr().out
    assert watts(out, "Jetson INA3221 rails") == pytest.approx({"total": 6.0, "VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.5, "VDD_SOC": 1.5})
    assert "power over 0.20 s: total 6.000 W (VDD_IN)" in out
    assert "    VDD_IN: 6.000 W (the total)" in out


def test_sensors_lists_carrier_rails_apart_from_the_module(capsys, sysfs_root, quick_probe):
    tx2_tree(sysfs_root, carrier=True)
    assert main(["sensors", "--window-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "  outside the boundary, not in the total (carrier board): VDD_MUX, VDD_5V0_IO_SYS, VDD_3V3_SYS, VDD_3V3_IO_SLP" in out
    reading = watts(out, "Jetson INA3221 rails")
    assert reading["total"] == pytest.approx(5.0) and "VDD_MUX" not in reading


def test_sensors_prints_each_rapl_zone_and_their_sum(capsys, sysfs_root, quick_probe):
    base = rapl_tree(sysfs_root, dram=True, psys=True)
    package, dram = base / "intel-rapl:0/energy_uj", base / "intel-rapl:0/intel-rapl:0:1/energy_uj"
    rewrite(package, 1_000_000)
    rewrite(dram, 200_000)
    stop = threading.Event()

    t0 = time.monotonic()

    def counters():
        # a package at 20 W and DRAM at 5 W, written as a running kernel counter would be
        while not stop.is_set():
            dt = time.monotonic() - t0
            rewrite(package, 1_000_000 + 20e6 * dt)
            rewrite(dram, 200_000 + 5e6 * dt)
            time.sleep(0.001)

    thread = threading.Thread(target=counters)
    thread.start()
    try:
        assert main(["sensors", "--window-s", "0.5"]) == 0
    finally:
        stop.set()
        thread.join()
    out = capsys.readouterr().out
    assert "CPU (RAPL): rapl, boundary: CPU package + DRAM, unit: uJ" in out
    assert "(sum of the rails)" in out
    assert watts(out, "CPU (RAPL)") == pytest.approx({"total": 25.0, "package-0": 20.0, "dram-0": 5.0}, rel=0.15)


def test_sensors_reads_every_gpu(capsys, sysfs_root, monkeypatch, quick_probe):
    fake = FakeNvml(count=2)
    monkeypatch.setattr(nv, "load_pynvml", lambda: fake)
    assert main(["sensors", "--window-s", "0.5"]) == 0
    out = capsys.readouterr().out
    for i in (0, 1):
        assert f"NVIDIA GPU {i} (NVML): nvml-counter, boundary: GPU board, unit: mJ" in out
        # the counter steps every 50 ms, so 0.5 s reads 100 W to within a step or two
        assert watts(out, f"NVIDIA GPU {i} (NVML)")["total"] == pytest.approx(100.0, rel=0.25)


def test_sensors_says_when_a_sensor_fails_while_read(capsys, sysfs_root, quick_probe, monkeypatch):
    base = rapl_tree(sysfs_root, dram=False, psys=False)
    from pytest_e3p.hardware.sensors.rapl import RaplSensor

    real_start = RaplSensor.start

    def start_then_break(self):
        real_start(self)
        write(base / "intel-rapl:0/energy_uj", "garbage")

    monkeypatch.setattr(RaplSensor, "start", start_then_break)
    assert main(["sensors", "--window-s", "0.1"]) == 1
    out = capsys.readouterr().out
    assert "CPU (RAPL): rapl, boundary: CPU package: reading failed:" in out and "not a number" in out
