"""Sustained mode (--e3p-sustained-s): one case run continuously, cut into windows, to see drift.

The steady-state protocol (measure.py) takes a few rounds of about a second each: the device is warm
but has not yet reached thermal equilibrium. An edge board that runs a model for minutes heats up,
and its clocks may throttle, so energy and latency per image drift; MLPerf Power therefore measures
runs of at least 600 s. This module runs `forward` back to back for the requested time and records
each window of `window_s` (energy and latency per image, power, and temperature / clock ratio /
throttling where a thermal monitor is given), then compares the first and the last minute.

Windows end at batch boundaries: the clock is checked after each forward call, and a window whose
time is up is closed after synchronising with the accelerator, so every window holds whole batches
and its energy covers exactly the work in it. The window edges follow a fixed grid (start + k x
window_s), so a window that overran by part of a batch does not push every later edge. A remainder
shorter than half a window is folded into the last window rather than left as a short, noisy one.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hardware.sensors import UNAVAILABLE, EnergyReading, SensorFault, SensorInfo, measures_energy, window
from ..storage.records import Drift, SustainedRecord, WindowRecord
from ..text import slug
from .context import MeasureContext, ThermalMonitor, ThermalRound

__all__ = ["Drift", "SustainedRun", "ThermalMonitor", "ThermalRound", "ValueAxis", "Window", "plot", "plot_name", "run_sustained", "value_axis"]

DEFAULT_WINDOW_S = 10.0
DEFAULT_SPAN_S = 60.0
MLPERF_POWER_MIN_S = 600.0  # MLPerf Power's shortest measured run

# drift() metric names -> (Window attribute, unit for labels)
METRICS: dict[str, tuple[str, str]] = {
    "energy": ("energy_mj_per_image", "mJ/img"),
    "latency": ("latency_ms_per_image", "ms/img"),
    "power": ("power_w", "W"),
    "temperature": ("temperature_c", "C"),
    "clock": ("clock_ratio", ""),
}


@dataclass(frozen=True)
class Window:
    """One window of a sustained run: whole batches, timed from the run's start."""

    index: int
    start_s: float  # since the run began
    duration_s: float
    images: int
    energy_mj: float | None  # None: no sensor
    temperature_c: float | None = None  # the window's highest, from the thermal monitor
    clock_ratio: float | None = None  # the window's lowest clock / nominal clock
    throttled: bool | None = None  # None: no thermal monitor

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def mid_s(self) -> float:
        return self.start_s + 0.5 * self.duration_s

    @property
    def latency_ms_per_image(self) -> float:
        return self.duration_s * 1000.0 / self.images

    @property
    def energy_mj_per_image(self) -> float | None:
        return None if self.energy_mj is None else self.energy_mj / self.images

    @property
    def power_w(self) -> float | None:
        if self.energy_mj is None or self.duration_s <= 0:
            return None
        return self.energy_mj / 1000.0 / self.duration_s

    def to_record(self) -> WindowRecord:
        """The window as the results file keeps it, its per-image values and power worked out."""
        return WindowRecord(
            index=self.index,
            start_s=self.start_s,
            duration_s=self.duration_s,
            images=self.images,
            energy_mj=self.energy_mj,
            energy_mj_per_image=self.energy_mj_per_image,
            latency_ms_per_image=self.latency_ms_per_image,
            power_w=self.power_w,
            temperature_c=self.temperature_c,
            clock_ratio=self.clock_ratio,
            throttled=self.throttled,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.to_record().to_dict()


def _weighted_mean(windows: list[Window], attr: str) -> float | None:
    pairs = [(v, w.duration_s) for w in windows if (v := getattr(w, attr)) is not None]
    total = sum(d for _, d in pairs)
    if not pairs or total <= 0:
        return None
    return sum(v * d for v, d in pairs) / total


@dataclass(frozen=True)
class SustainedRun:
    """The windows of a sustained run, and what it was asked for."""

    windows: list[Window]
    window_s: float
    requested_s: float
    sensor: SensorInfo | None = None  # None or the null sensor's: energy unavailable
    thermal: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.windows[-1].end_s if self.windows else 0.0

    @property
    def images(self) -> int:
        return sum(w.images for w in self.windows)

    @property
    def measured_energy(self) -> bool:
        return self.sensor is not None and self.sensor.kind != UNAVAILABLE

    @property
    def throttled_windows(self) -> int:
        return sum(1 for w in self.windows if w.throttled)

    def drift(self, metric: str, span_s: float = DEFAULT_SPAN_S) -> Drift:
        """Relative change of `metric` ("energy", "latency", "power", "temperature", "clock", or the
        Window attribute) between the first and the last `span_s` of the run.

        A window belongs to a span when its middle lies in it. A run shorter than two spans has no
        separate first and last span: its first and last windows are compared, and basis says so."""
        attr = METRICS[metric][0] if metric in METRICS else metric
        if attr not in {a for a, _ in METRICS.values()}:
            raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")
        if span_s <= 0:
            raise ValueError("span_s must be positive")
        if not self.windows:
            return Drift(attr, None, None, None, None, "no windows")
        total = self.duration_s
        if len(self.windows) == 1:
            first_ws, last_ws = self.windows, self.windows
            basis = f"one window only ({total:.0f} s): no drift can be seen"
        elif total >= 2 * span_s:
            first_ws = [w for w in self.windows if w.mid_s <= span_s] or self.windows[:1]
            last_ws = [w for w in self.windows if w.mid_s >= total - span_s] or self.windows[-1:]
            basis = f"first {span_s:g} s ({len(first_ws)} windows) vs last {span_s:g} s ({len(last_ws)} windows)"
        else:
            first_ws, last_ws = self.windows[:1], self.windows[-1:]
            basis = f"run of {total:.0f} s is shorter than 2 x {span_s:g} s: first window vs last window"
        first, last = _weighted_mean(first_ws, attr), _weighted_mean(last_ws, attr)
        if first is None or last is None:
            return Drift(attr, None, None, None, None, f"{attr} not measured in this run")
        change = last / first - 1.0 if first != 0 else None
        return Drift(attr, first, last, change, last - first, basis)

    def to_record(self, span_s: float = DEFAULT_SPAN_S) -> SustainedRecord:
        """For the results file: units in the field names; drift of each measured metric, keyed by its attribute."""
        drifts = (self.drift(name, span_s) for name in METRICS)
        energy = self.sensor is not None and self.measured_energy
        return SustainedRecord(
            requested_s=self.requested_s,
            window_s=self.window_s,
            duration_s=self.duration_s,
            images=self.images,
            sensor=self.sensor.name if energy and self.sensor is not None else None,
            energy_kind=self.sensor.kind if energy and self.sensor is not None else None,
            thermal=self.thermal,
            throttled_windows=self.throttled_windows,
            drift_span_s=span_s,
            drift={d.metric: d for d in drifts if d.first is not None},
            notes=list(self.notes),
            windows=[w.to_record() for w in self.windows],
        )

    def to_dict(self, span_s: float = DEFAULT_SPAN_S) -> dict[str, Any]:
        return self.to_record(span_s).to_dict()


def _next_edge(t0: float, t_start: float, end: float, window_s: float) -> float:
    """The end of the window that starts at t0: the next grid point after t0, or the run's end where
    less than half a window would be left after it."""
    edge = t_start + (math.floor((t0 - t_start) / window_s + 1e-9) + 1) * window_s
    if end - edge < 0.5 * window_s:
        edge = end
    return min(edge, end)


def run_sustained(forward: Callable[[], Any], images_per_call: int, ctx: MeasureContext, seconds: float, window_s: float = DEFAULT_WINDOW_S) -> SustainedRun:
    """Run `forward` (one batch of `images_per_call`) back to back for `seconds`, in windows of `window_s`.

    The context's sensor must be started (as for run_protocol); the null sensor's energy is not
    measured. Its thermal monitor, where there is one, is asked once per window. The run lasts at least
    `seconds`: it ends at the first batch boundary after. SensorFault propagates: a run the sensor
    broke in is invalid, as in the steady state."""
    if seconds <= 0 or window_s <= 0:
        raise ValueError(f"seconds and window_s must be positive (got {seconds}, {window_s})")
    if images_per_call < 1:
        raise ValueError("images_per_call must be at least 1")
    notes = [f"{seconds:g} s is shorter than MLPerf Power's {MLPERF_POWER_MIN_S:.0f} s runs"] if seconds < MLPERF_POWER_MIN_S else []
    meter = _WindowMeter(ctx)
    t_start = t0 = ctx.clock()
    end = t_start + seconds
    windows: list[Window] = []
    while True:
        calls = _batches_until(forward, ctx.clock, _next_edge(t0, t_start, end, window_s))
        t1, energy_mj, heat = meter.close_window(t0=t0)
        windows.append(_window_of(len(windows), t0 - t_start, t1 - t0, calls * images_per_call, energy_mj, heat))
        if t1 >= end:
            break
        t0 = t1
        meter.open_window()
    return SustainedRun(windows, window_s, seconds, ctx.sensor.info, ctx.thermal is not None, notes)


def _batches_until(forward: Callable[[], Any], clock: Callable[[], float], edge: float) -> int:
    """Batches back to back until the clock passes `edge` (checked after each: windows hold whole batches)."""
    calls = 0
    while True:
        forward()
        calls += 1
        if clock() >= edge:
            return calls


class _WindowMeter:
    """The sensor and thermal readings at the edges of consecutive windows: the end of one is the
    start of the next, so no energy falls between two windows."""

    def __init__(self, ctx: MeasureContext):
        self.ctx = ctx
        self.measuring = measures_energy(ctx.sensor)
        ctx.synchronize()
        self.start: EnergyReading | None = None
        self.open_window(first=True)

    def open_window(self, first: bool = False) -> None:
        if self.ctx.thermal is not None:
            self.ctx.thermal.begin_round()
        if first and self.measuring:
            self.start = self.ctx.sensor.read()

    def close_window(self, t0: float) -> tuple[float, float | None, ThermalRound | None]:
        """Synchronise, then (end time, energy of the window in mJ or None, thermal round or None)."""
        self.ctx.synchronize()
        t1 = self.ctx.clock()
        energy_mj = None
        if self.start is not None:
            end = self.ctx.sensor.read()
            energy_mj = window(self.start, end).energy_mj
            if energy_mj <= 0:
                raise SensorFault(
                    f"{self.ctx.sensor.info.name} read no energy over a {t1 - t0:.2f} s window: "
                    "the window is shorter than the sensor's update period, or the sensor is stuck"
                )
            self.start = end
        heat = self.ctx.thermal.end_round() if self.ctx.thermal is not None else None
        return t1, energy_mj, heat


def _window_of(index: int, start_s: float, duration_s: float, images: int, energy_mj: float | None, heat: ThermalRound | None) -> Window:
    if heat is None:
        return Window(index, start_s, duration_s, images, energy_mj)
    temperature = getattr(heat, "max_temperature_c", None)
    ratio = getattr(heat, "min_clock_ratio", None)
    throttled = getattr(heat, "throttled", None)
    return Window(index, start_s, duration_s, images, energy_mj, temperature, ratio, throttled)


REPORT_EXTRA = 'pip install "pytest-e3p[report]"'


# -- the plot ------------------------------------------------------------------------------

# Values spanning less than this share of their median are drawn as percent from the median: on an
# auto-scaled axis 29.34-29.37 W fills the panel and a 0.1 % wobble looks like a cliff.
RELATIVE_BELOW = 0.10
MIN_RELATIVE_HALF_RANGE_PCT = 1.0  # a relative axis shows at least +/- 1 %, so 0.1 % stays small


@dataclass(frozen=True)
class ValueAxis:
    """How a positive quantity is drawn: from zero in its unit, or as percent from its median (the
    median stated in the label) where its values span a small relative range."""

    relative: bool
    median: float
    label: str

    def __call__(self, value: float) -> float:
        return 100.0 * (value / self.median - 1.0) if self.relative else value

    def limits(self, drawn: Sequence[float]) -> tuple[float, float]:
        """The axis limits for the drawn (already converted) values, intervals included."""
        finite = [v for v in drawn if math.isfinite(v)]
        top = max(finite, default=1.0)
        if not self.relative:
            return 0.0, top * 1.08 if top > 0 else 1.0
        half = max(MIN_RELATIVE_HALF_RANGE_PCT, *(abs(v) for v in finite)) * 1.15
        return -half, half


def value_axis(values: Sequence[float | None], name: str, unit: str) -> ValueAxis:
    """The axis for these values: from zero ("name (unit)"), or relative ("name: % from the
    median, 29.35 W") when they span less than RELATIVE_BELOW of their median."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    median = statistics.median(finite) if finite else 0.0
    if median > 0 and (max(finite) - min(finite)) / median < RELATIVE_BELOW:
        return ValueAxis(True, median, f"{name}: % from the median\n({median:.4g} {unit})")
    return ValueAxis(False, median, f"{name} ({unit})")


def plot_name(case_id: str) -> str:
    """The file name of a case's sustained-run plot: the session writes it (run/session.py), the
    report links it (report/markdown.py)."""
    return f"sustained_{slug(case_id, '-_.')}.png"


def plot(run: SustainedRun, path: str | Path) -> None:
    """A PNG of the run over time (`figure`), written atomically (temporary file, then os.replace),
    so a reader never sees half a PNG. Needs matplotlib (the `report` extra)."""
    from ..storage.results import write_atomic

    fig = figure(run)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def figure(run: SustainedRun) -> Any:
    """The run over time, 4 stacked panels: power (W), temperature (C), clock ratio, latency
    (ms/img); throttled windows shaded."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"matplotlib is not installed, and the sustained-run plot needs it: {REPORT_EXTRA}") from None

    if not run.windows:
        raise ValueError("a run without windows has nothing to plot")
    edges = [w.start_s for w in run.windows] + [run.windows[-1].end_s]
    estimate = " (ESTIMATE)" if run.sensor is not None and run.sensor.kind == "estimate" else ""
    # (attribute, name, unit, what a missing panel says, colour); power and latency are drawn from
    # zero or, spanning a small range, as percent from their median (value_axis): on an
    # auto-scaled axis 29.34-29.37 W filled the panel and read as a cliff
    panels = [
        ("power_w", f"power{estimate}", "W", "no energy sensor", "tab:red"),
        ("temperature_c", "temperature", "C", "no thermal monitor", "tab:orange"),
        ("clock_ratio", "clock ratio", "", "no thermal monitor", "tab:green"),
        ("latency_ms_per_image", "latency", "ms/img", "", "tab:blue"),
    ]
    fig = Figure(figsize=(9.0, 8.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (attr, name, unit, missing, color) in zip(axes, panels):
        values = [getattr(w, attr) for w in run.windows]
        ax.set_ylabel(f"{name} ({unit})" if unit else name, fontsize=8)
        ax.grid(True, alpha=0.3)
        for w in run.windows:
            if w.throttled:
                ax.axvspan(w.start_s, w.end_s, color="tab:red", alpha=0.15, linewidth=0)
        if all(v is None for v in values):
            ax.text(0.5, 0.5, missing, transform=ax.transAxes, ha="center", va="center", color="gray")
            continue
        known = [float(v) for v in values if v is not None]
        scale = None
        if attr in ("power_w", "latency_ms_per_image"):
            scale = value_axis(known, name, unit)
            ax.set_ylabel(scale.label, fontsize=8)
        # A window the monitor could not read is a gap, not a zero.
        drawn = [math.nan if v is None else (scale(float(v)) if scale else float(v)) for v in values]
        ax.stairs(drawn, edges, color=color, linewidth=1.5, baseline=None)
        if scale is not None:
            ax.set_ylim(*scale.limits(drawn))
        elif attr == "clock_ratio":
            ax.set_ylim(0.0, 1.05)  # a ratio to the maximum clock: its whole range
        else:  # temperature: at least 10 C tall, so half a degree is not the panel's height
            mid, half = (max(known) + min(known)) / 2, max(5.0, (max(known) - min(known)) * 0.6)
            ax.set_ylim(mid - half, mid + half)
    axes[-1].set_xlabel("time since start (s)")
    sensor = f"{run.sensor.name}, {run.sensor.kind}" if run.sensor and run.measured_energy else "no energy sensor"
    throttled = f", {run.throttled_windows} throttled window(s) shaded" if run.throttled_windows else ""
    fig.suptitle(f"sustained run: {run.duration_s:.0f} s in {len(run.windows)} windows of {run.window_s:g} s ({sensor}{throttled})", fontsize=10)
    fig.tight_layout()
    return fig
