"""`python -m pytest_e3p sensors` lists the thermal zones and throttle sources after the power sensors."""

import pytest
from fakes.files import write
from fakes.nvml import FakeNvml
from fakes.thermal_zones import intel_laptop_tree, orin_tree

import pytest_e3p.hardware.sensors as sensors
from pytest_e3p.cli import main
from pytest_e3p.hardware.sensors import nvml as nv


@pytest.fixture
def quick_probe(monkeypatch):
    monkeypatch.setattr(sensors, "measure_update_period_s", lambda sensor: 0.01)


def thermal_block(out):
    return out[out.index("thermal and throttle sources") :].splitlines()


def test_sensors_lists_zones_clocks_and_counters_after_the_power_sensors(capsys, sysfs_root, quick_probe):
    intel_laptop_tree(sysfs_root)
    assert main(["sensors", "--window-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.index("CPU (RAPL): unavailable") < out.index("thermal and throttle sources (temperature, clock vs max, trip points):")
    block = thermal_block(out)
    assert "  thermal zone acpitz (thermal_zone0): 45.0 C; trip points: critical 119.0 C" in block
    assert "  thermal zone x86_pkg_temp (thermal_zone1): 52.0 C; trip points: passive 0.0 C, passive 0.0 C; watched for: cpu" in block
    assert "  hwmon coretemp Package id 0 (hwmon3): 52.0 C; trip points: crit 100.0 C; watched for: cpu" in block
    assert "  cpufreq policy1 (cpus 1, intel_pstate, powersave): clock 2400 of 4700 MHz (51% of max); watched for: cpu" in block
    assert block[-1] == "  Intel throttle counters (times throttled since boot): core: 5 over 2 CPUs; package 0: 7"


def test_sensors_says_why_no_thermal_source_was_found(capsys, sysfs_root, quick_probe):
    assert main(["sensors", "--window-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == (
        f"thermal: none found: no thermal zone or hwmon sensor readable under {sysfs_root / 'sys'}, no cpufreq or GPU devfreq clock, no NVML GPU"
    )


def test_sensors_lists_a_jetson_gpu_clock_and_an_unreadable_zone(capsys, sysfs_root, quick_probe):
    orin_tree(sysfs_root)
    write(sysfs_root / "sys/devices/virtual/thermal/thermal_zone2/temp", "garbage")  # cv0-thermal
    main(["sensors", "--window-s", "0.1"])  # no INA3221 in this tree: the power part says so
    block = thermal_block(capsys.readouterr().out)
    assert "  GPU devfreq 17000000.ga10b (nvhost_podgov): clock 918 of 918 MHz (100% of max); watched for: jetson" in block
    assert "  thermal zone tj-thermal (thermal_zone5): 52.5 C; trip points: passive 99.0 C, critical 105.5 C; watched for: cpu, jetson" in block
    unreadable = [line for line in block if line.startswith("  thermal zone cv0-thermal: unreadable:")]
    assert len(unreadable) == 1 and "not a number" in unreadable[0]


def test_sensors_lists_each_gpu_temperature_and_clock(capsys, sysfs_root, monkeypatch, quick_probe):
    fake = FakeNvml(count=2)  # the bare fake: no max clock, no clock-event reasons, no threshold
    monkeypatch.setattr(nv, "load_pynvml", lambda: fake)
    assert main(["sensors", "--window-s", "0.1"]) == 0
    block = thermal_block(capsys.readouterr().out)
    assert block[1:] == [
        f"  NVIDIA GPU {i} (NVML): 55.0 C; clock 1500 MHz (max unknown); watched for: cuda; not supported by this GPU: clock-event reasons" for i in (0, 1)
    ]
