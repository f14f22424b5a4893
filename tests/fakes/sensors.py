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
