"""jetson-stats' jtop client, faked with the shape jetson-stats really returns.

jetson-stats' PowerService.get_status gives {"rail": {label: values}, "tot": total}; values are
read from the INA3221 files ('volt' mV, 'curr' mA, 'power' mW, 'warn'/'crit' mA where present) plus
'online' and 'avg', a running average (avg = (power + previous avg) // 2). Where the board has an input
rail (VDD_IN, POM_5V_IN) jetson-stats deletes it from "rail" and returns its values as "tot" with
'name' added; otherwise "tot" is {'power': sum of the rails, 'avg': sum of their avg}.
"""

import time


def rail(power_mw, volt_mv=5000):
    # 'avg' far from 'power': integrating it would show at once
    return {"volt": volt_mv, "curr": power_mw * 1000 // volt_mv, "power": power_mw, "avg": power_mw * 10, "online": True, "warn": 32760, "crit": 32760}


def jtop_power(rails, input_rail=None):
    """What jetson-stats' `jtop.power` holds for these rails (mW), input rail first moved to "tot"."""
    rails = {name: rail(mw) for name, mw in rails.items()}
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
