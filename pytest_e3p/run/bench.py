"""The bench every case is measured on: the device, its power sensor (a fresh one after a fault),
the thermal monitor, peak memory, and the protocol that drives them. It runs one pass of a case,
its sustained run, and hands the accuracy pass its instruments."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..config import Options
from ..hardware.devices import Device
from ..hardware.sensors import EnergySensor, NullSensor, SensorFault, SensorUnavailable
from ..measure.context import MeasureContext
from ..measure.protocols import EDGEVIT, Protocol, SteadyState, run_edgevit, run_protocol
from .case import Case
from .loading import LoadedModel, input_batch

if TYPE_CHECKING:
    from ..measure.memory import PeakMemory
    from ..measure.sustained import SustainedRun
    from ..measure.thermal import ThermalMonitor


class NoSensor(Exception):
    """--e3p-require-sensor and this device has no power sensor; the message says why."""


class Bench:
    """Opened by the session's start(), closed by its finish()."""

    def __init__(self, device: Device, protocol: Protocol, options: Options, thermal: ThermalMonitor | None, memory: PeakMemory | None):
        self.device, self.protocol, self.options = device, protocol, options
        self.thermal = thermal  # started
        self.memory = memory  # None where peak memory is unavailable
        self.sensor: EnergySensor = NullSensor()
        self.sensor_note = ""  # why energy is an estimate or unavailable ("" where it is measured)
        # case id -> why a pass of it has no peak memory (its runtime allocates outside torch, and NVML
        # cannot measure it): the case's record says so rather than show torch's near-zero figure
        self.memory_unavailable: dict[str, str] = {}
        self._open_sensor()

    def _open_sensor(self) -> None:
        o = self.options
        try:
            sensor, self.sensor_note = self.device.open_sensor(o.require_sensor, o.w_per_core, o.sample_hz, o.static_w)
        except SensorUnavailable as exc:
            raise NoSensor(f"--e3p-require-sensor: no power sensor for --device {self.device.name}: {exc}") from None
        self.sensor = sensor if sensor is not None else NullSensor(self.sensor_note)
        try:
            self.sensor.start()
        except SensorFault as exc:
            # a sensor that opened but cannot take its first reading (a GPU lost between the probe and
            # the start, a rail file gone): the run goes on without energy, as when there is no sensor
            self.sensor.close()
            why = f"the {self.sensor.info.name} sensor failed at its first reading ({exc})"
            if o.require_sensor:
                raise NoSensor(f"--e3p-require-sensor: no power sensor for --device {self.device.name}: {why}") from None
            self.sensor_note = f"{why}; energy is reported as unavailable"
            self.sensor = NullSensor(self.sensor_note)

    def reopen_sensor(self) -> None:
        """After a sensor fault: a fresh sensor for the next case, so the other cases go on."""
        self.sensor.close()
        try:
            self._open_sensor()
        except NoSensor as exc:
            self.sensor, self.sensor_note = NullSensor(str(exc)), str(exc)

    def context(self) -> MeasureContext:
        """The instruments as they are now: the sensor is the one after any fault."""
        return MeasureContext(self.device.synchronize, self.sensor, self.thermal, torch_device=self.device.torch_device, slowdown=self.options.slowdown)

    def steady_state(self, case: Case, loaded: LoadedModel) -> SteadyState:
        """One pass of the protocol's rounds on a case's model (random input of its size), with the
        pass's peak memory: the resident model, its input batch and what running it takes."""
        from ..measure.memory import MemoryUnavailable, runs_outside_torch_allocator

        if self.memory is not None:
            # ONNX Runtime, OpenVINO and TensorRT allocate outside torch: their peak comes from NVML
            self.memory.reset(outside_allocator=loaded.variant is not None and runs_outside_torch_allocator(loaded.variant.runtime))
        x = input_batch(case, loaded.input_size, self.device.torch_device, loaded.input_dtype)
        model = loaded.forward
        assert model is not None  # set in LoadedModel.__post_init__
        with torch.inference_mode():
            if self.protocol.name == EDGEVIT:
                steady = run_edgevit(lambda: model(x), self.context(), self.protocol)
            else:
                steady = run_protocol(lambda: model(x), case.batch_size, self.context(), self.protocol)
        if self.memory is not None:
            try:
                steady.memory = self.memory.read()
            except MemoryUnavailable as exc:
                self.memory_unavailable[case.id] = f"peak memory unavailable: {exc}"
        return steady

    def sustained(self, case: Case, loaded: LoadedModel) -> SustainedRun:
        """--e3p-sustained-s: the case's model run back to back for that long, in windows."""
        from ..measure.sustained import run_sustained

        x = input_batch(case, loaded.input_size, self.device.torch_device, loaded.input_dtype)
        model = loaded.forward
        assert model is not None
        with torch.inference_mode():
            return run_sustained(lambda: model(x), case.batch_size, self.context(), self.options.sustained_s, self.options.sustained_window_s)

    def close(self) -> None:
        self.sensor.close()
        if self.thermal is not None:
            self.thermal.close()
