"""A pytest plugin for the plugin's own runs (pytester): `-p fakes.scripted_run` puts pytest-e3p's
measurements on a scripted machine, so the figures of a run are exact however busy the machine
running the tests is.

The models still run for real (shapes, memory, accuracy, the benchmark's flow), but the rounds, the
warm-up and the sustained windows (every MeasureContext's default clock) are timed on a fakes.clock.Machine, and energy is read from it by a
fakes.sensors.ScriptedSensor: each forward call of a case's model takes --scripted-ms-per-image per
image of the batch at --scripted-power-w. So every pass of a case gives the same energy and latency
per image, and a run with other options is exactly that much slower or hungrier. By default a batch
of 2 fills a round of 50 ms (fakes.runs.SHORT) in one forward call: few real ones, a quick test."""

import dataclasses

import pytest

from fakes.clock import Machine
from fakes.sensors import ScriptedSensor

_UNDO = pytest.StashKey[pytest.MonkeyPatch]()


def pytest_addoption(parser):
    group = parser.getgroup("scripted machine (pytest-e3p's tests)")
    group.addoption("--scripted-ms-per-image", type=float, default=25.0, help="scripted time of one image of a forward call")
    group.addoption("--scripted-power-w", type=float, default=10.0, help="scripted power while the model runs")


@pytest.hookimpl(tryfirst=True)  # before pytest-e3p's own pytest_configure starts its session and opens the sensor
def pytest_configure(config):
    from pytest_e3p.hardware.devices import Device
    from pytest_e3p.measure import context, protocols
    from pytest_e3p.run.session import E3PSession

    s_per_image, power_w = config.getoption("scripted_ms_per_image") / 1000.0, config.getoption("scripted_power_w")
    machine = Machine(power_w)
    patch = config.stash[_UNDO] = pytest.MonkeyPatch()
    patch.setattr(Device, "open_sensor", lambda self, *args, **kwargs: (ScriptedSensor(machine), ""))
    for module in (protocols, context):  # the protocols' waits, and every measurement's default clock
        patch.setattr(module, "time", machine.as_time_module())
    load_model = E3PSession.load_model

    def scripted_load_model(self, case):
        loaded = load_model(self, case)
        forward = loaded.forward

        def timed(x):
            out = forward(x)
            machine.sleep(s_per_image * x.shape[0])
            return out

        return dataclasses.replace(loaded, forward=timed)

    patch.setattr(E3PSession, "load_model", scripted_load_model)


def pytest_unconfigure(config):
    patch = config.stash.get(_UNDO, None)
    if patch is not None:
        patch.undo()
