"""Sustained mode on a scripted power trace: a fake clock, a forward that advances it by a fixed batch
time, and a sensor whose cumulative energy follows a known power function of that clock, so every
window's energy, power and latency, and the drift, are exact."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
from fakes.clock import ScriptedClock
from fakes.sensors import StepPowerSensor

from pytest_e3p.hardware.sensors import EnergyReading, NullSensor, SensorFault
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.sustained import Window, plot, run_sustained

BATCH = 8  # images per forward call


@dataclass(frozen=True)
class ThermalRound:
    max_temperature_c: float
    min_clock_ratio: float
    throttled: bool


class ThrottleInWindow:
    """Temperature climbs 1 C a window from 60 C; window `hot` throttles to 0.8 of the clock at 85 C."""

    def __init__(self, hot: int):
        self.hot, self.rounds, self.open = hot, 0, False

    def begin_round(self) -> None:
        assert not self.open
        self.open = True

    def end_round(self) -> ThermalRound:
        assert self.open
        self.open = False
        i, self.rounds = self.rounds, self.rounds + 1
        if i == self.hot:
            return ThermalRound(85.0, 0.8, True)
        return ThermalRound(60.0 + i, 1.0, False)


def scripted(seconds: float, batch_s: float = 0.5, window_s: float = 10.0, thermal=None, sensor=True):
    clock = ScriptedClock(t_s=100.0)  # not zero: window times must be relative to the run's start
    syncs = []
    run = run_sustained(
        lambda: clock.advance(batch_s),  # one batch takes batch_s of the clock
        BATCH,
        MeasureContext(lambda: syncs.append(clock.t_s), StepPowerSensor(clock) if sensor else NullSensor(), thermal, clock),
        seconds,
        window_s=window_s,
    )
    return run, syncs


def test_windows_on_a_step_in_power():
    run, syncs = scripted(120.0)
    assert len(run.windows) == 12
    assert [w.start_s for w in run.windows] == [10.0 * i for i in range(12)]
    for w in run.windows:
        assert w.duration_s == 10.0 and w.images == 20 * BATCH  # 20 batches of 0.5 s
        assert w.latency_ms_per_image == pytest.approx(62.5)  # 500 ms / 8 images
        watts = 5.0 if w.end_s <= 30.0 else 6.0
        assert w.power_w == pytest.approx(watts)
        assert w.energy_mj == pytest.approx(watts * 10.0 * 1000.0)
        assert w.energy_mj_per_image == pytest.approx(watts * 10.0 * 1000.0 / 160)  # 312.5 or 375 mJ
        assert w.temperature_c is None and w.throttled is None
    assert run.duration_s == 120.0 and run.images == 240 * BATCH
    assert len(syncs) == 13  # once before the run, once at each window's end


def test_drift_between_first_and_last_minute():
    run, _ = scripted(120.0)
    energy = run.drift("energy")
    # First minute: 3 windows at 5 W and 3 at 6 W; last minute: 6 at 6 W.
    assert energy.first == pytest.approx((3 * 312.5 + 3 * 375.0) / 6)
    assert energy.last == pytest.approx(375.0)
    assert energy.relative_change == pytest.approx(375.0 / 343.75 - 1)  # +9.09%
    assert energy.delta == pytest.approx(31.25)
    assert energy.basis == "first 60 s (6 windows) vs last 60 s (6 windows)"
    power = run.drift("power")
    assert (power.first, power.last) == (pytest.approx(5.5), pytest.approx(6.0))
    assert power.relative_change == pytest.approx(6.0 / 5.5 - 1)
    latency = run.drift("latency")
    assert latency.relative_change == pytest.approx(0.0)
    assert latency.metric == "latency_ms_per_image"
    assert run.drift("temperature").first is None  # no thermal monitor: not measured, not zero
    with pytest.raises(ValueError, match="unknown metric"):
        run.drift("speed")


def test_drift_on_a_shorter_span():
    run, _ = scripted(120.0)
    d = run.drift("power", span_s=30.0)
    assert d.first == pytest.approx(5.0) and d.last == pytest.approx(6.0)
    assert d.basis == "first 30 s (3 windows) vs last 30 s (3 windows)"


def test_short_run_compares_first_and_last_window():
    run, _ = scripted(50.0)
    assert len(run.windows) == 5
    d = run.drift("energy")
    assert d.basis == "run of 50 s is shorter than 2 x 60 s: first window vs last window"
    assert d.first == pytest.approx(312.5) and d.last == pytest.approx(375.0)
    assert d.relative_change == pytest.approx(0.2)
    assert any("MLPerf Power" in n for n in run.notes)


def test_windows_end_at_batch_boundaries():
    """A batch of 0.75 s does not divide 10 s: each window ends at the first batch boundary past its
    grid point (10, 20, 30 s), so windows hold whole batches and the edges do not creep."""
    run, _ = scripted(30.0, batch_s=0.75)
    ends = [w.end_s for w in run.windows]
    assert ends == [pytest.approx(10.5), pytest.approx(20.25), pytest.approx(30.0)]
    for w in run.windows:
        batches = w.duration_s / 0.75
        assert batches == pytest.approx(round(batches))
        assert w.images == round(batches) * BATCH
        assert w.latency_ms_per_image == pytest.approx(750.0 / BATCH)
    # energy across windows adds up to the trace: 5 W x 30 s, then 6 W
    assert sum(w.energy_mj or 0 for w in run.windows) == pytest.approx(150_000.0)


def test_a_short_remainder_is_folded_into_the_last_window():
    run, _ = scripted(24.0)
    assert [w.duration_s for w in run.windows] == [10.0, 14.0]
    run, _ = scripted(25.0)
    assert [w.duration_s for w in run.windows] == [10.0, 10.0, 5.0]


def test_a_batch_longer_than_a_window():
    run, _ = scripted(10.0, batch_s=4.0, window_s=1.0)
    assert [w.images for w in run.windows] == [BATCH] * 3  # 12 s: the run ends at the batch boundary after 10 s
    assert run.duration_s == 12.0


def test_thermal_per_window_and_throttling():
    thermal = ThrottleInWindow(hot=4)
    run, _ = scripted(120.0, thermal=thermal)
    assert thermal.rounds == 12 and not thermal.open
    hot = run.windows[4]
    assert (hot.temperature_c, hot.clock_ratio, hot.throttled) == (85.0, 0.8, True)
    assert [w.throttled for w in run.windows].count(True) == 1
    assert run.windows[0].temperature_c == 60.0 and run.windows[11].temperature_c == 71.0
    assert run.throttled_windows == 1
    t = run.drift("temperature")
    assert t.first == pytest.approx((60 + 61 + 62 + 63 + 85 + 65) / 6)
    assert t.last == pytest.approx((66 + 67 + 68 + 69 + 70 + 71) / 6)
    clock = run.drift("clock")
    assert clock.first == pytest.approx((5 + 0.8) / 6) and clock.last == pytest.approx(1.0)


def test_no_sensor_means_no_energy():
    run, _ = scripted(20.0, sensor=False)
    assert all(w.energy_mj is None and w.power_w is None for w in run.windows)
    assert run.windows[0].latency_ms_per_image == pytest.approx(62.5)
    d = run.drift("energy")
    assert d.first is None and d.relative_change is None and "not measured" in d.basis
    assert run.to_dict()["sensor"] is None


def test_a_stuck_sensor_is_a_fault():
    clock = ScriptedClock(t_s=100.0)  # not zero: window times must be relative to the run's start

    class Stuck(StepPowerSensor):
        def read(self) -> EnergyReading:
            return EnergyReading(clock.t_s, 42.0)

    with pytest.raises(SensorFault, match="read no energy"):
        run_sustained(lambda: clock.advance(0.5), BATCH, MeasureContext(sensor=Stuck(clock), clock=clock), 20.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        run_sustained(lambda: None, BATCH, MeasureContext(), 0.0)
    with pytest.raises(ValueError):
        run_sustained(lambda: None, 0, MeasureContext(), 10.0)


def test_to_dict_for_the_results_file():
    run, _ = scripted(120.0, thermal=ThrottleInWindow(hot=4))
    d = json.loads(json.dumps(run.to_dict()))
    assert d["requested_s"] == 120.0 and d["window_s"] == 10.0 and d["duration_s"] == 120.0
    assert d["sensor"] == "scripted" and d["energy_kind"] == "measured"
    assert len(d["windows"]) == 12
    w = d["windows"][4]
    assert w["power_w"] == pytest.approx(6.0) and w["throttled"] is True and w["clock_ratio"] == 0.8
    assert set(d["drift"]) == {"energy_mj_per_image", "latency_ms_per_image", "power_w", "temperature_c", "clock_ratio"}
    assert d["drift"]["power_w"]["relative_change"] == pytest.approx(6.0 / 5.5 - 1)
    assert d["throttled_windows"] == 1


def test_window_properties():
    w = Window(0, 5.0, 2.0, 16, 4000.0)
    assert w.end_s == 7.0 and w.mid_s == 6.0
    assert w.power_w == 2.0 and w.energy_mj_per_image == 250.0 and w.latency_ms_per_image == 125.0


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    run, _ = scripted(120.0, thermal=ThrottleInWindow(hot=4))
    path = tmp_path / "sustained.png"
    plot(run, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sustained.png"]  # no temporary file left
    bare, _ = scripted(20.0, sensor=False)  # empty panels say why
    plot(bare, tmp_path / "bare.png")
    assert (tmp_path / "bare.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path):
    run, _ = scripted(20.0)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ImportError
    with pytest.raises(ImportError, match=r'pip install "pytest-e3p\[report\]"'):
        plot(run, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
