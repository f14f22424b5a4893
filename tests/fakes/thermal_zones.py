"""Sysfs trees of thermal sources laid out as the kernel lays them out.

Layouts (as on real machines):
- thermal zones live in /sys/devices/virtual/thermal/thermal_zoneN/ and /sys/class/thermal/thermal_zoneN
  links there; temperatures and trip points in millidegrees C.
- coretemp's hwmon is /sys/devices/platform/coretemp.0/hwmon/hwmonN/, linked from /sys/class/hwmon/.
- cpufreq policies are /sys/devices/system/cpu/cpufreq/policyN/ and cpuM/cpufreq links to its policy;
  frequencies in kHz.
- Intel's counters are /sys/devices/system/cpu/cpuM/thermal_throttle/*_throttle_count; the package
  counter repeats in every CPU of the package.
- a Jetson GPU's devfreq is /sys/devices/platform/<addr>.<gpu>/devfreq/<addr>.<gpu>/, linked from
  /sys/class/devfreq/; frequencies in Hz.
"""

import dataclasses
import os

from fakes.boards import BOARDS, write_board
from fakes.files import link, write


def zone(root, n, zone_type, temp_mc, trips=()):
    """A thermal zone; trips are (millidegrees, type). Returns its temp file."""
    d = root / f"sys/devices/virtual/thermal/thermal_zone{n}"
    write(d / "type", zone_type)
    write(d / "temp", temp_mc)
    write(d / "mode", "enabled")
    write(d / "policy", "step_wise")
    for i, (trip_mc, trip_type) in enumerate(trips):
        write(d / f"trip_point_{i}_temp", trip_mc)
        write(d / f"trip_point_{i}_type", trip_type)
        write(d / f"trip_point_{i}_hyst", 0)
    link(root, f"sys/devices/virtual/thermal/thermal_zone{n}", f"sys/class/thermal/thermal_zone{n}")
    return d / "temp"


def cpufreq(root, cpus, policy, cur_khz, max_khz, driver, governor, min_khz=400_000):
    d = root / f"sys/devices/system/cpu/cpufreq/policy{policy}"
    write(d / "scaling_cur_freq", cur_khz)
    write(d / "scaling_max_freq", max_khz)
    write(d / "scaling_min_freq", min_khz)
    write(d / "cpuinfo_max_freq", max_khz)
    write(d / "scaling_driver", driver)
    write(d / "scaling_governor", governor)
    write(d / "related_cpus", " ".join(str(c) for c in cpus))
    write(d / "affected_cpus", " ".join(str(c) for c in cpus))
    for c in cpus:
        (root / f"sys/devices/system/cpu/cpu{c}").mkdir(parents=True, exist_ok=True)
        link(root, f"sys/devices/system/cpu/cpufreq/policy{policy}", f"sys/devices/system/cpu/cpu{c}/cpufreq")
    return d / "scaling_cur_freq"


def intel_laptop_tree(root, cpus=2):
    """An Intel laptop: acpitz, x86_pkg_temp (trip points unset: 0), coretemp, intel_pstate, throttle counters."""
    zone(root, 0, "acpitz", 45_000, [(119_000, "critical")])
    pkg = zone(root, 1, "x86_pkg_temp", 52_000, [(0, "passive"), (0, "passive")])
    hw = root / "sys/devices/platform/coretemp.0/hwmon/hwmon3"
    write(hw / "name", "coretemp")
    for n, (label, mc) in enumerate([("Package id 0", 52_000)] + [(f"Core {c}", 50_000 + c * 1000) for c in range(cpus)], start=1):
        write(hw / f"temp{n}_label", label)
        write(hw / f"temp{n}_input", mc)
        write(hw / f"temp{n}_max", 80_000)
        write(hw / f"temp{n}_crit", 100_000)
        write(hw / f"temp{n}_crit_alarm", 0)
    link(root, "sys/devices/platform/coretemp.0/hwmon/hwmon3", "sys/class/hwmon/hwmon3")
    counters = {}
    for c in range(cpus):
        cpu = root / f"sys/devices/system/cpu/cpu{c}"
        write(cpu / "topology/physical_package_id", 0)
        write(cpu / "thermal_throttle/core_throttle_count", 5 if c == 0 else 0)
        write(cpu / "thermal_throttle/core_throttle_max_time_ms", 0)
        write(cpu / "thermal_throttle/package_throttle_count", 7)
        write(cpu / "thermal_throttle/package_throttle_max_time_ms", 0)
        counters[c] = cpu / "thermal_throttle"
        cpufreq(root, [c], c, 2_400_000, 4_700_000, "intel_pstate", "powersave")
    return pkg, hw, counters


def arm_board_tree(root, governor="schedutil", pinned=True):
    """An ARM board (one cluster on cpufreq-dt): cpu-thermal with a passive trip at 85 C; `pinned`:
    its minimum clock raised to the maximum for benchmarking, as a CI runner on a board should be."""
    temp = zone(root, 0, "cpu-thermal", 70_000, [(85_000, "passive"), (95_000, "hot"), (105_000, "critical")])
    zone(root, 1, "gpu-thermal", 60_000, [(105_000, "critical")])
    cur = cpufreq(root, [0, 1, 2, 3], 0, 1_500_000, 1_500_000, "cpufreq-dt", governor, 1_500_000 if pinned else 400_000)
    return temp, cur


def orin_tree(root, jetson_clocks=True):
    """Orin NX: its zones, trip points at 99 C (passive) and 105.5 C (critical), the ga10b devfreq;
    `jetson_clocks`: the GPU's minimum clock raised to its maximum, as jetson_clocks does."""
    write_board(root, dataclasses.replace(BOARDS["orin-nx"], model="NVIDIA Jetson Orin NX Engineering Reference Developer Kit"))
    temps = {}
    for n, name in enumerate(["cpu-thermal", "gpu-thermal", "cv0-thermal", "soc0-thermal", "soc1-thermal", "tj-thermal"]):
        temps[name] = zone(root, n, name, 50_000 + n * 500, [(99_000, "passive"), (105_500, "critical")])
    gpu = root / "sys/devices/platform/17000000.ga10b"
    d = gpu / "devfreq/17000000.ga10b"
    write(d / "cur_freq", 918_000_000)
    write(d / "max_freq", 918_000_000)
    write(d / "min_freq", 918_000_000 if jetson_clocks else 306_000_000)
    write(d / "governor", "nvhost_podgov")
    write(gpu / "of_node/name", "gpu")
    link(root, "sys/devices/platform/17000000.ga10b", "sys/devices/platform/17000000.ga10b/devfreq/17000000.ga10b/device")
    link(root, "sys/devices/platform/17000000.ga10b/devfreq/17000000.ga10b", "sys/class/devfreq/17000000.ga10b")
    vic = root / "sys/devices/platform/15340000.vic/devfreq/15340000.vic"  # not the GPU
    write(vic / "cur_freq", 115_200_000)
    write(vic / "max_freq", 729_600_000)
    link(root, "sys/devices/platform/15340000.vic/devfreq/15340000.vic", "sys/class/devfreq/15340000.vic")
    cpufreq(root, [0, 1, 2, 3], 0, 729_600, 1_984_000, "tegra194", "schedutil")
    cpufreq(root, [4, 5, 6, 7], 4, 729_600, 1_984_000, "tegra194", "schedutil")
    return temps, d / "cur_freq"


def hot_cpu(root, temp_c):
    """A CPU thermal zone laid out as the kernel does, with a passive trip point at 80 C."""
    folder = root / "sys/devices/virtual/thermal/thermal_zone0"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("type", "x86_pkg_temp"), ("temp", str(temp_c * 1000)), ("trip_point_0_temp", "80000"), ("trip_point_0_type", "passive")):
        (folder / name).write_text(text + "\n")
    class_link = root / "sys/class/thermal/thermal_zone0"
    if not class_link.exists():
        class_link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(folder, class_link)
