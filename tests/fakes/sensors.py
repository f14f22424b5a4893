"""Energy sensors that read a scripted machine (fakes.clock.Machine) exactly, at its time."""

from pytest_e3p.hardware.sensors import MEASURED, EnergyReading, EnergySensor, SensorInfo


class ScriptedSensor(EnergySensor):
    """The machine's cumulative energy at the machine's time; `frozen`: a counter that never moves.
    Every read is kept in `reads`."""

    def __init__(self, machine, update_period_s=0.001, frozen=False):
        self.machine, self.frozen = machine, frozen
        self.info = SensorInfo("scripted", MEASURED, "test boundary", "mJ", update_period_s)
        self.reads = []

    def read(self):
        reading = EnergyReading(self.machine.t_s, 0.0 if self.frozen else self.machine.energy_mj)
        self.reads.append(reading)
        return reading


class StepPowerSensor(EnergySensor):
    """5 W for the first 30 s of the run, 6 W after, on a fakes.clock.ScriptedClock: cumulative energy
    in mJ, exact at any time."""

    def __init__(self, clock, step_s: float = 30.0, before_w: float = 5.0, after_w: float = 6.0):
        self.clock, self.t0 = clock, clock.t_s
        self.step_s, self.before_w, self.after_w = step_s, before_w, after_w
        self.info = SensorInfo("scripted", MEASURED, "test rig", "mJ", 0.01)

    def read(self) -> EnergyReading:
        t = self.clock.t_s - self.t0
        joules = self.before_w * min(t, self.step_s) + self.after_w * max(t - self.step_s, 0.0)
        return EnergyReading(self.clock.t_s, joules * 1000.0)
