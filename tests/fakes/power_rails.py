"""Sysfs trees of power sensors with the real layouts: RAPL's powercap zones and the Jetson boards'
INA3221 monitors (iio and hwmon layouts), each rail holding a constant power."""

import dataclasses
import os

from fakes.boards import BOARDS, write_board
from fakes.files import write


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


# -- Jetson ----------------------------------------------------------------------------------
# Board trees with the real layouts. Rails are named by label; the folder numbers (iio:deviceN,
# hwmonN, the i2c bus) differ from board to board and boot to boot, and the code must not use them.


def iio_monitor(root, device, iio, rails, driver="ina3221x"):
    """One INA3221 on the iio layout (L4T 32): rail_name_N and in_power{N}_input (mW)."""
    dev = root / f"sys/bus/i2c/drivers/{driver}/{device}/iio:device{iio}"
    for n, (name, mw) in enumerate(rails):
        write(dev / f"rail_name_{n}", name)
        write(dev / f"in_power{n}_input", mw)
        write(dev / f"in_voltage{n}_input", 5000)
        write(dev / f"in_current{n}_input", int(mw * 1000 / 5000))
    return dev


def hwmon_monitor(root, device, hwmon, rails, driver="ina3221"):
    """One INA3221 on the hwmon layout (L4T 34+): in{N}_label, in{N}_input (mV), curr{N}_input (mA)."""
    hw = root / f"sys/bus/i2c/drivers/{driver}/{device}/hwmon/hwmon{hwmon}"
    for n, (label, mv, ma) in enumerate(rails, 1):
        write(hw / f"in{n}_label", label)
        write(hw / f"in{n}_input", mv)
        write(hw / f"curr{n}_input", ma)
    write(hw / "in7_label", "sum of shunt voltages")
    write(hw / "in7_input", 40)
    return hw


def board(root, key, model, l4t_line):
    """The device tree of fakes.boards' board `key` (its compatible list: what makes it a Jetson),
    under this tree's model string and L4T release line."""
    write_board(root, dataclasses.replace(BOARDS[key], model=model, l4t_line=l4t_line))


def _l4t_32_or_35(l4t):
    return f"# {l4t} (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64"


TX2_CARRIER_RAILS = ["VDD_MUX", "VDD_5V0_IO_SYS", "VDD_3V3_SYS", "VDD_3V3_IO_SLP", "VDD_1V8_IO", "VDD_3V3_SYS_M2"]


def tx2_tree(root, carrier=False, iio_numbers=(1, 0, 2, 3)):
    """TX2, L4T 32: module monitors 0-0041 (VDD_IN, CPU, DDR) and 0-0040 (GPU, SOC, WIFI), both on
    the iio layout; with carrier=True also the developer kit's carrier monitors 0-0042, 0-0043."""
    n41, n40, n42, n43 = iio_numbers
    dev1 = iio_monitor(root, "0-0041", n41, [("VDD_IN", 5000), ("VDD_SYS_CPU", 800), ("VDD_SYS_DDR", 600)])
    dev0 = iio_monitor(root, "0-0040", n40, [("VDD_SYS_GPU", 2000), ("VDD_SYS_SOC", 700), ("VDD_4V0_WIFI", 100)])
    if carrier:
        # VDD_MUX is the whole carrier board's input: adding it to the module would count ~twice
        iio_monitor(root, "0-0042", n42, [("VDD_MUX", 9000), ("VDD_5V0_IO_SYS", 1500), ("VDD_3V3_SYS", 900)])
        iio_monitor(root, "0-0043", n43, [("VDD_3V3_IO_SLP", 300), ("VDD_1V8_IO", 200), ("VDD_3V3_SYS_M2", 100)])
    board(root, "tx2", "NVIDIA Jetson TX2 Developer Kit", _l4t_32_or_35("R32"))
    return dev1, dev0


def nano_tree(root):
    """The original Jetson Nano, L4T 32: one INA3221 at 6-0040, its input rail named POM_5V_IN."""
    dev = iio_monitor(root, "6-0040", 0, [("POM_5V_IN", 4000), ("POM_5V_GPU", 1000), ("POM_5V_CPU", 1200)])
    board(root, "nano", "NVIDIA Jetson Nano Developer Kit", _l4t_32_or_35("R32"))
    return dev


def orin_tree(root, agx=False):
    """Orin NX / Orin Nano (one monitor with VDD_IN) or AGX Orin (two monitors, no VDD_IN)."""
    if agx:
        hw = hwmon_monitor(root, "1-0040", 4, [("VDD_GPU_SOC", 5000, 1000), ("VDD_CPU_CV", 5000, 400), ("VIN_SYS_5V0", 5000, 300)])
        hwmon_monitor(root, "1-0041", 2, [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 100), ("NC", 0, 0)])
        model = "NVIDIA Jetson AGX Orin Developer Kit"
    else:
        hw = hwmon_monitor(root, "1-0040", 3, [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 500), ("VDD_SOC", 5000, 300)])
        model = "NVIDIA Orin NX Developer Kit"
    board(root, "agx-orin" if agx else "orin-nx", model, "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64")
    return hw


def xavier_nx_tree(root):
    """Xavier NX, L4T 35: one monitor at 7-0040 on the hwmon layout, VDD_IN its input."""
    hw = hwmon_monitor(root, "7-0040", 1, [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 200)])
    board(root, "xavier-nx", "NVIDIA Jetson Xavier NX Developer Kit", _l4t_32_or_35("R35"))
    return hw


def agx_xavier_tree(root):
    """AGX Xavier, L4T 35: two monitors, six rails, no input rail."""
    hwmon_monitor(root, "1-0041", 0, [("CV", 5000, 100), ("VDDRQ", 5000, 200), ("SYS5V", 5000, 300)])
    hw = hwmon_monitor(root, "1-0040", 1, [("GPU", 5000, 400), ("CPU", 5000, 500), ("SOC", 5000, 600)])
    board(root, "agx-xavier", "Jetson-AGX", _l4t_32_or_35("R35"))
    return hw
