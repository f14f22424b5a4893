"""jetson-stats' jtop client, faked with the shape jetson-stats really returns.

jetson-stats' PowerService.get_status gives {"rail": {label: values}, "tot": total}; values are
read from the INA3221 files ('volt' mV, 'curr' mA, 'power' mW, 'warn'/'crit' mA where present) plus
'online' and 'avg', a running average (avg = (power + previous avg) // 2). Where the board has an input
rail (VDD_IN, POM_5V_IN) jetson-stats deletes it from "rail" and returns its values as "tot" with
'name' added; otherwise "tot" is {'power': sum of the rails, 'avg': sum of their avg}.
"""

import time

from fakes.files import write


def rail(power_mw, volt_mv=5000):
    # 'avg' far from 'power': integrating it would show at once
    return {"volt": volt_mv, "curr": power_mw * 1000 // volt_mv, "power": power_mw, "avg": power_mw * 10, "online": True, "warn": 32760, "crit": 32760}


def supply(volt_mv, curr_ma, online=True):
    """A /sys/class/power_supply entry as jetson-stats (jtop/core/power.py, before PR 900) serves it:
    find_all_system_monitor reads online, voltage_now (uV), current_now (uA), current_max; then
    read_power_status drops "type", divides the uV/uA by 1000, and power = volt * curr / 1000."""
    return {"online": online, "volt": volt_mv, "curr": curr_ma, "warn": curr_ma, "power": volt_mv * curr_ma // 1000, "avg": volt_mv * curr_ma // 1000}


def ucsi_supply_tree(root, folder="ucsi-source-psy-USBC000:001", volt_uv=20_000_000, curr_ua=3_000_000):
    """The UCSI USB-C source an AGX Orin exposes: the properties of drivers/usb/typec/ucsi/psy.c."""
    d = root / "sys/class/power_supply" / folder
    for name, value in {
        "type": "USB",
        "usb_type": "C [PD] PD_PPS",
        "online": 1,
        "voltage_min": 5_000_000,
        "voltage_max": volt_uv,
        "voltage_now": volt_uv,
        "current_max": curr_ua,
        "current_now": curr_ua,
    }.items():
        write(d / name, value)
    return d


def jtop_power(rails, input_rail=None, supplies=None):
    """What jetson-stats' `jtop.power` holds for these rails (mW) and power supplies (their values,
    named as jetson-stats names them), sorted by name as jetson-stats sorts them, the input rail
    first moved to "tot"; without one "tot" sums every entry, supplies included."""
    rails = {name: rail(mw) for name, mw in rails.items()}
    rails = dict(sorted({**rails, **(supplies or {})}.items()))
    if input_rail:
        tot = rails.pop(input_rail)
        tot["name"] = input_rail
    else:
        tot = {"power": sum(v["power"] for v in rails.values()), "avg": sum(v["avg"] for v in rails.values())}
    return {"rail": rails, "tot": tot}


class FakeJtop:
    """jtop's client: start(), ok(spin), power, interval, close()."""

    def __init__(self, power, interval=0.5, fail_start=None):
        self.power, self.interval, self.fail_start = power, interval, fail_start
        self.running = True
        self.closed = False

    def start(self):
        if self.fail_start:
            raise self.fail_start

    def ok(self, spin=False):
        if not spin:
            time.sleep(self.interval)  # jtop's ok() waits for the service's next update
        return self.running

    def close(self):
        self.closed = True
