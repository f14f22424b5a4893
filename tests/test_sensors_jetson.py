"""The jetson-stats (jtop) fallback against a fake with the shape jetson-stats really returns.

jetson-stats' PowerService.get_status gives {"rail": {label: values}, "tot": total}; values are
read from the INA3221 files ('volt' mV, 'curr' mA, 'power' mW, 'warn'/'crit' mA where present) plus
'online' and 'avg', a running average (avg = (power + previous avg) // 2). Where the board has an input
rail (VDD_IN, POM_5V_IN) jetson-stats deletes it from "rail" and returns its values as "tot" with
'name' added; otherwise "tot" is {'power': sum of the rails, 'avg': sum of their avg}.
"""

import time

import pytest
from fakes.jtop import FakeJtop, jtop_power, supply, ucsi_supply_tree

from pytest_e3p.hardware.sensors import SensorFault, SensorUnavailable, window
from pytest_e3p.hardware.sensors.jetson import JtopSensor


def open_fake(power, **kw):
    fake = FakeJtop(power, **kw)
    return JtopSensor(rate_hz=100, jtop_factory=lambda: fake), fake


def power_w(sensor, seconds=0.1):
    with sensor:
        start = sensor.read()
        time.sleep(seconds)
        w = window(start, sensor.read())
    return w.power_w, {name: mj / w.duration_s / 1000.0 for name, mj in w.rails_mj.items()}


@pytest.mark.parametrize(
    "rails, input_rail",
    [
        ({"VDD_IN": 6000, "VDD_CPU_GPU_CV": 2000, "VDD_SOC": 1000}, "VDD_IN"),  # Orin NX, Xavier NX
        ({"POM_5V_IN": 4000, "POM_5V_GPU": 1000, "POM_5V_CPU": 1200}, "POM_5V_IN"),  # original Nano
    ],
    ids=["vdd-in", "nano"],
)
def test_jtop_total_is_the_input_rail_jetson_stats_moves_to_tot(rails, input_rail):
    sensor, _ = open_fake(jtop_power(rails, input_rail))
    assert sensor.info.name == "jetson-jtop"
    assert sensor.info.total_rail == input_rail and sensor.info.boundary == f"Jetson module input ({input_rail})"
    assert set(sensor.info.rails) == set(rails)
    total, per_rail = power_w(sensor)
    assert total == pytest.approx(rails[input_rail] / 1000.0, rel=1e-6)  # 'power', never 'avg'
    assert per_rail == pytest.approx({name: mw / 1000.0 for name, mw in rails.items()}, rel=1e-6)


def test_jtop_without_an_input_rail_totals_the_rails_and_says_so():
    rails = {"VDD_GPU_SOC": 5000, "VDD_CPU_CV": 2000, "VIN_SYS_5V0": 1500}  # AGX Orin
    sensor, _ = open_fake(jtop_power(rails))
    assert sensor.info.total_rail == "sum" and "no input rail" in sensor.info.boundary
    assert power_w(sensor)[0] == pytest.approx(8.5, rel=1e-6)


def test_jtop_is_sampled_without_waiting_for_its_next_update():
    sensor, fake = open_fake(jtop_power({"VDD_IN": 6000, "VDD_SOC": 1000}, "VDD_IN"), interval=0.5)
    # jtop changes its values once per service interval: rounds must span several of those
    assert sensor.info.update_period_s == 0.5
    t0 = time.monotonic()
    power_w(sensor, seconds=0.1)
    assert time.monotonic() - t0 < 0.45  # ok() blocking would hold each sample for 0.5 s
    assert sensor.samples >= 4


def test_jtop_service_that_stops_or_cannot_start_is_said_plainly():
    sensor, fake = open_fake(jtop_power({"VDD_IN": 6000, "VDD_SOC": 1000}, "VDD_IN"))
    with sensor:
        sensor.read()
        fake.running = False
        with pytest.raises(SensorFault, match="stopped answering"):
            sensor.read()
    with pytest.raises(SensorUnavailable, match="jtop.service cannot be reached: The jtop.service is not active"):
        open_fake({}, fail_start=RuntimeError("The jtop.service is not active. Please run:\nsudo jtop --install-service"))
    with pytest.raises(SensorUnavailable, match="no power rails"):
        open_fake({})


# -- USB-PD supplies among the rails ----------------------------------------------------------
# jetson-stats before its PR 900 ("skip UCSI supplies") served /sys/class/power_supply entries in
# power["rail"] beside the INA3221 channels; on an AGX Orin (no input rail) its "tot" summed them.

AGX_ORIN_RAILS = {"VDD_GPU_SOC": 5000, "VDD_CPU_CV": 2000, "VIN_SYS_5V0": 1500, "VDDQ_VDD2_1V8AO": 500}


def test_jtop_usb_pd_supply_is_outside_the_total_of_the_ina3221_rails(sysfs_root):
    ucsi_supply_tree(sysfs_root)  # 20 V x 3 A negotiated: 60 W that the board does not draw
    sensor, _ = open_fake(jtop_power(AGX_ORIN_RAILS, supplies={"USBC000:001": supply(20_000, 3000)}))
    assert set(sensor.info.rails) == set(AGX_ORIN_RAILS)
    assert sensor.info.outside_rails == ("USBC000:001",)
    total, per_rail = power_w(sensor)
    assert total == pytest.approx(9.0, rel=1e-6)
    assert "USBC000:001" not in per_rail


@pytest.mark.parametrize("kind, counted", [("INA3221", True), ("INA238", True), ("USB", False), ("Mains", False)])
def test_jtop_entry_type_decides_where_jetson_stats_gives_it(sysfs_root, kind, counted):
    extra = {**supply(19_000, 500), "type": kind}
    sensor, _ = open_fake(jtop_power({"VDD_IN": 6000, "VDD_SOC": 1000}, "VDD_IN", supplies={"EXTRA": extra}))
    assert ("EXTRA" in sensor.info.rails) is counted


def test_jtop_supply_with_a_status_is_not_a_rail(sysfs_root):
    # a charger's power_supply has "status" ("Charging"); jetson-stats reads it, no i2c rail has one
    charger = {**supply(5000, 900), "status": "Not charging"}
    sensor, _ = open_fake(jtop_power(AGX_ORIN_RAILS, supplies={"battery-charger": charger}))
    assert "battery-charger" not in sensor.info.rails and power_w(sensor)[0] == pytest.approx(9.0, rel=1e-6)


def test_jtop_with_only_power_supplies_is_unavailable(sysfs_root):
    ucsi_supply_tree(sysfs_root)
    fake = FakeJtop(jtop_power({}, supplies={"USBC000:001": supply(20_000, 3000)}))
    with pytest.raises(SensorUnavailable, match=r"no INA3221/INA238 rails.*USBC000:001"):
        JtopSensor(rate_hz=100, jtop_factory=lambda: fake)
    assert fake.closed
