"""The stage-2 measurement protocol (METHOD.md, "Protocol").

Idle power first, with the device idle. Then warm-up, then rounds: each round is a window that
lasts at least max(min_round_s, 10 sensor update periods), synchronised with the accelerator at both
edges and timed with a monotonic clock. Each round gives one sample of energy per image and latency
per image; a pass's value is their median. A run measures every case in several passes (the session
orders them: pass 1 over all cases, then pass 2, ...), so the gate sees between-pass noise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .sensors import EnergySensor, SensorFault, SensorInfo, window


@dataclass(frozen=True)
class Protocol:
    batch_size: int = 64  # the paper's
    rounds: int = 5  # per pass
    passes: int = 3
    min_round_s: float = 1.0
    warmup_s: float = 2.0
    idle_s: float = 1.0  # 0 skips the idle measurement

    def round_s(self, sensor: SensorInfo | None) -> float:
        """Shortest round: a window shorter than a few sensor updates reads nothing useful."""
        return max(self.min_round_s, 10 * sensor.update_period_s) if sensor else self.min_round_s


@dataclass(frozen=True)
class Round:
    images: int
    duration_s: float
    energy_mj: float | None
    rails_mj: dict[str, float] = field(default_factory=dict)

    @property
    def latency_ms_per_image(self) -> float:
        return self.duration_s * 1000.0 / self.images

    @property
    def energy_mj_per_image(self) -> float | None:
        return None if self.energy_mj is None else self.energy_mj / self.images


@dataclass
class SteadyState:
    """The rounds of one case, and what the sensor said before them."""

    rounds: list[Round]
    sensor: SensorInfo | None
    idle_power_w: float | None = None

    @property
    def latency_ms_per_image_samples(self) -> list[float]:
        return [r.latency_ms_per_image for r in self.rounds]

    @property
    def energy_mj_per_image_samples(self) -> list[float]:
        return [r.energy_mj_per_image for r in self.rounds if r.energy_mj_per_image is not None]

    @property
    def latency_ms_per_image(self) -> float:
        return statistics.median(self.latency_ms_per_image_samples)

    @property
    def energy_mj_per_image(self) -> float | None:
        samples = self.energy_mj_per_image_samples
        return statistics.median(samples) if samples else None

    @property
    def power_w(self) -> float | None:
        measured = [(r.energy_mj, r.duration_s) for r in self.rounds if r.energy_mj is not None]
        if not measured:
            return None
        return sum(e for e, _ in measured) / 1000.0 / sum(d for _, d in measured)

    @property
    def rails_mj_per_image(self) -> dict[str, float]:
        names = self.rounds[0].rails_mj.keys() if self.rounds else []
        return {n: statistics.median(r.rails_mj[n] / r.images for r in self.rounds) for n in names}


def measure_idle_power_w(sensor: EnergySensor, idle_s: float) -> float:
    start = sensor.read()
    time.sleep(idle_s)
    return window(start, sensor.read()).power_w


def slowed(forward: Callable[[], Any], synchronize: Callable[[], None], batch_s: float, fraction: float, device: str = "cpu") -> Callable[[], Any]:
    """`forward` plus matrix products taking about `fraction` of its time (`batch_s`): the
    known slow-down that scripts/bench_gate.py checks the gate catches (--e3p-slowdown)."""
    import torch

    a = torch.randn(256, 256, device=device)
    unit_s = math.inf
    for _ in range(5):
        t0 = time.monotonic()
        torch.mm(a, a)
        synchronize()
        unit_s = min(unit_s, time.monotonic() - t0)
    reps = max(1, round(fraction * batch_s / max(unit_s, 1e-9)))

    def forward_and_extra() -> Any:
        out = forward()
        for _ in range(reps):
            torch.mm(a, a)
        return out

    return forward_and_extra


def run_protocol(
    forward: Callable[[], Any],
    images_per_call: int,
    synchronize: Callable[[], None],
    sensor: EnergySensor | None,
    protocol: Protocol,
    measure_idle: bool = True,
    slowdown: float = 0.0,
    device: str = "cpu",
) -> SteadyState:
    """Run `forward` (one batch) under the protocol and return the rounds of one pass.

    The sensor must be started. SensorFault propagates: a window the sensor broke in is invalid."""
    info = sensor.info if sensor else None
    idle = None
    if sensor is not None and measure_idle and protocol.idle_s > 0:
        synchronize()
        idle = measure_idle_power_w(sensor, protocol.idle_s)

    # Warm-up: at least two batches and warmup_s, timed batch by batch to size the rounds.
    batches, started = 0, time.monotonic()
    batch_s = math.inf
    while batches < 2 or time.monotonic() - started < protocol.warmup_s:
        t0 = time.monotonic()
        forward()
        synchronize()
        batch_s = min(batch_s, time.monotonic() - t0)
        batches += 1

    if slowdown > 0:
        forward = slowed(forward, synchronize, batch_s, slowdown, device)
    round_s = protocol.round_s(info)
    per_round = max(1, math.ceil(round_s / max(batch_s, 1e-9)))
    rounds = []
    for _ in range(protocol.rounds):
        synchronize()
        e0 = sensor.read() if sensor else None
        t0 = time.monotonic()
        for _ in range(per_round):
            forward()
        synchronize()
        calls = per_round
        # A round that came out short (the machine got faster) is extended, never cut.
        while time.monotonic() - t0 < round_s:
            forward()
            synchronize()
            calls += 1
        t1 = time.monotonic()
        if sensor is not None:
            assert e0 is not None  # read at the start of the round
            w = window(e0, sensor.read())
            if w.energy_mj <= 0:
                raise SensorFault(
                    f"{sensor.info.name} read no energy over a {t1 - t0:.2f} s window: the window is shorter than the sensor's update period, or the sensor is stuck"
                )
            rounds.append(Round(calls * images_per_call, t1 - t0, w.energy_mj, w.rails_mj))
        else:
            rounds.append(Round(calls * images_per_call, t1 - t0, None))
        per_round = max(per_round, calls)
    return SteadyState(rounds, info, idle)
