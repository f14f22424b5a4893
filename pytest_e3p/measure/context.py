"""What every measurement reads and waits on, as one value: the protocols, the sustained run and the
accuracy pass take it instead of the same six parameters each."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..hardware.sensors import EnergySensor, NullSensor


class ThermalRound(Protocol):
    """What a thermal monitor's end_round() returns (duck-typed)."""

    @property
    def max_temperature_c(self) -> float | None: ...
    @property
    def min_clock_ratio(self) -> float | None: ...
    @property
    def throttled(self) -> bool | None: ...


class ThermalMonitor(Protocol):
    def begin_round(self) -> Any: ...
    def end_round(self) -> ThermalRound: ...


def _no_sync() -> None:
    """A CPU needs no synchronisation: its work is done when the call returns."""


def _monotonic() -> float:
    # looked up at each call, so a test that scripts time.monotonic is the clock used
    return time.monotonic()


@dataclass(frozen=True)
class MeasureContext:
    """The instruments of a measurement and how to drive them.

    `sensor` is never None: a machine without one has a NullSensor, whose energy is unavailable.
    `thermal` (a thermal.ThermalMonitor) samples temperature, clocks and throttling per round, where
    there is one. `torch_device` is where the model's input goes and where --e3p-slowdown's extra
    work runs (`slowdown`, a fraction of a batch's time)."""

    synchronize: Callable[[], None] = _no_sync
    sensor: EnergySensor = field(default_factory=NullSensor)
    thermal: ThermalMonitor | None = None
    clock: Callable[[], float] = _monotonic
    torch_device: str = "cpu"
    slowdown: float = 0.0
