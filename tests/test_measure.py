"""The measurement protocol against a scripted sensor on a scripted clock: idle power, the rounds'
energy and power, and the zero-energy fault. Every figure is exact, so each is checked to the digit."""

import pytest
from fakes.clock import Machine
from fakes.sensors import ScriptedSensor

from pytest_e3p.hardware.sensors import SensorFault
from pytest_e3p.measure import protocols as measure

IDLE_W, LOAD_W = 2.0, 10.0
BATCH_S = 0.125  # each forward() takes 0.125 s of the scripted clock (binary fractions: exact sums)
IMAGES = 4  # images per forward()


@pytest.fixture
def machine(monkeypatch):
    """The device draws IDLE_W until the first forward() and LOAD_W from then on; each forward() is
    one batch of BATCH_S. measure.py's own clock and sleep: the idle window, warm-up and rounds all
    run on the script."""
    return Machine(IDLE_W, script=[(0.0, BATCH_S)], loaded_w=LOAD_W).install(monkeypatch, measure)


def protocol(**kw):
    fields = dict(batch_size=IMAGES, rounds=3, passes=1, min_round_s=0.5, warmup_s=0.0, idle_s=1.0)
    fields.update(kw)
    return measure.Protocol(**fields)


def test_idle_power_is_read_before_any_work_and_the_rounds_at_load(machine):
    sensor = ScriptedSensor(machine)
    steady = measure.run_protocol(machine.forward, IMAGES, measure.MeasureContext(sensor=sensor, clock=machine.monotonic), protocol())
    # idle: 1.0 s at 2 W, before the first forward; measured after the warm-up it would read 10 W
    assert steady.idle_power_w == pytest.approx(IDLE_W, rel=1e-12)
    assert sensor.reads[0].t_s == 0.0 and sensor.reads[1].t_s == pytest.approx(1.0)
    # rounds: 0.5 s = 4 batches of 4 images at 10 W: 5000 mJ over 16 images, 31.25 ms each
    assert [r.images for r in steady.rounds] == [16, 16, 16]
    assert steady.power_w == pytest.approx(LOAD_W, rel=1e-12)
    assert steady.energy_mj_per_image == pytest.approx(LOAD_W * BATCH_S * 1000.0 / IMAGES, rel=1e-12)
    assert steady.latency_ms_per_image == pytest.approx(BATCH_S * 1000.0 / IMAGES, rel=1e-12)


def test_measure_idle_power_w_is_the_energy_of_the_window_over_its_length(machine):
    machine.sleep(3.0)  # 6 J already counted: only the window's own energy counts
    assert measure.measure_idle_power_w(ScriptedSensor(machine), 0.25) == pytest.approx(IDLE_W, rel=1e-12)
    machine.power_w = 7.5
    assert measure.measure_idle_power_w(ScriptedSensor(machine), 2.0) == pytest.approx(7.5, rel=1e-12)


@pytest.mark.parametrize("kw, measure_idle", [({"idle_s": 0.0}, True), ({}, False)], ids=["idle-s-0", "measure-idle-off"])
def test_no_idle_window_when_it_is_switched_off(machine, kw, measure_idle):
    sensor = ScriptedSensor(machine)
    steady = measure.run_protocol(
        machine.forward, IMAGES, measure.MeasureContext(sensor=sensor, clock=machine.monotonic), protocol(**kw), measure_idle=measure_idle
    )
    assert steady.idle_power_w is None
    # the first read opens round 1, right after the two warm-up batches: no idle window was slept
    assert sensor.reads[0].t_s == 2 * BATCH_S


def test_a_sensor_whose_counter_never_moves_is_a_fault_not_a_zero(machine):
    sensor = ScriptedSensor(machine, frozen=True)
    with pytest.raises(SensorFault, match=r"scripted read no energy over a 0\.50 s window: .*the sensor is stuck"):
        measure.run_protocol(machine.forward, IMAGES, measure.MeasureContext(sensor=sensor, clock=machine.monotonic), protocol(idle_s=0.0))


class SlowThermalMonitor:
    """A thermal monitor whose closing sample takes `cost_s` of the scripted clock, as an NVML query or a
    sysfs read with a thread join does on a board: that time is not the model's, and must not be in the
    round's energy."""

    def __init__(self, machine, cost_s):
        self.machine, self.cost_s, self.rounds = machine, cost_s, 0

    def begin_round(self):
        pass

    def end_round(self):
        self.machine.sleep(self.cost_s)
        self.rounds += 1
        return None


def test_the_energy_window_is_the_latency_window_even_when_the_thermal_sample_takes_time(machine):
    """Issue 23: end_round() ran between the end of the timed window and the closing sensor read, so a
    slow thermal sample added its seconds (at the device's power) to each round's energy."""
    sensor = ScriptedSensor(machine)
    thermal = SlowThermalMonitor(machine, cost_s=0.25)
    ctx = measure.MeasureContext(sensor=sensor, clock=machine.monotonic, thermal=thermal)
    steady = measure.run_protocol(machine.forward, IMAGES, ctx, protocol(idle_s=0.0))
    assert thermal.rounds == 3
    # each round: 4 batches of 0.125 s at 10 W = 5000 mJ for 16 images; with the thermal sample inside
    # the window it would be 0.75 s of energy over 0.5 s of latency
    assert [r.energy_mj for r in steady.rounds] == [pytest.approx(5000.0, rel=1e-12)] * 3
    assert steady.energy_mj_per_image == pytest.approx(LOAD_W * BATCH_S * 1000.0 / IMAGES, rel=1e-12)


def test_the_edgevit_whole_window_closes_before_the_thermal_sample(machine):
    """The EdgeViT protocol's window over N inferences (used where one inference is shorter than two
    sensor periods) closes with the last inference, not after the thermal round's closing sample."""
    sensor = ScriptedSensor(machine, update_period_s=1.0)  # 0.125 s inferences: window averages
    thermal = SlowThermalMonitor(machine, cost_s=0.5)
    proto = measure.Protocol(batch_size=1, warmup_s=0.0, idle_s=0.0, name=measure.EDGEVIT, inferences=8)
    steady = measure.run_edgevit(machine.forward, measure.MeasureContext(sensor=sensor, clock=machine.monotonic, thermal=thermal), proto)
    assert thermal.rounds == 1
    energy_mj, duration_s = steady.window
    assert duration_s == pytest.approx(8 * BATCH_S, rel=1e-12)
    assert energy_mj == pytest.approx(8 * BATCH_S * LOAD_W * 1000.0, rel=1e-12)
