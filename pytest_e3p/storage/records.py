"""The typed parts of a case's record: its earlier runs, its peak memory, its sustained run, a
variant's change against its fp32 reference.

Each is a frozen dataclass with from_dict/to_dict, units in the field names, and writes exactly the
keys the results file has always held for it. The measurement layer fills them (storage is below it):
measure.memory's readers return a MemoryPeak, measure.sustained's SustainedRun builds a SustainedRecord
(`to_record()`) and works out its Drift values here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PASS_KEYS = {"energy": "energy_mj_per_image_passes", "latency": "latency_ms_per_image_passes"}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of `cls` (a key added by a later version is dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class EarlierRun:
    """One earlier run of a case kept in a baseline: when it was made and its pass values."""

    created: str = ""
    energy_mj_per_image_passes: list[float] = field(default_factory=list)
    latency_ms_per_image_passes: list[float] = field(default_factory=list)

    def passes(self, metric: str) -> list[float]:
        """The pass values of "energy" (mJ/img) or "latency" (ms/img)."""
        return list(self.energy_mj_per_image_passes if metric == "energy" else self.latency_ms_per_image_passes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlierRun:
        known = _known(cls, data)
        for key in PASS_KEYS.values():  # an old entry may hold null for a metric it did not measure
            known[key] = list(known.get(key) or [])
        return cls(**known)


@dataclass(frozen=True)
class MemoryPeak:
    """The peak of one measured stretch, in MiB (measure.memory says where each figure comes from).

    peak_mb: the highest resident set (CPU, Jetson) or the allocator's peak of tensor memory (CUDA).
    start_mb: the same quantity when the measurement was reset; growth_mb = peak_mb - start_mb is what
    the case added. end_mb: the current value when read (VmRSS, or torch.cuda.memory_allocated).
    method: where the peak came from ("VmHWM after clear_refs", "VmRSS sampled every 5 ms",
    "torch.cuda.max_memory_allocated"); note: why a fallback was taken, or what is missing."""

    peak_mb: float
    start_mb: float
    growth_mb: float
    method: str
    end_mb: float | None = None
    cuda_allocated_peak_mb: float | None = None
    cuda_reserved_peak_mb: float | None = None
    nvml_used_mb: float | None = None  # whole GPU, all processes, at read time: not a peak
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryPeak:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Drift:
    """How a metric moved between the start and the end of a sustained run.

    first/last: duration-weighted means of the windows in the first and the last span (equal windows:
    the plain mean); relative_change = last / first - 1; delta = last - first, in the metric's unit.
    basis says what was compared: the spans, or the first and last window when the run is shorter than
    two spans. None values: the metric was not measured (no sensor, no thermal monitor)."""

    metric: str  # the window's attribute, unit in the name: "energy_mj_per_image", ...; the key in a file
    first: float | None
    last: float | None
    relative_change: float | None
    delta: float | None
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "relative_change": self.relative_change, "delta": self.delta, "basis": self.basis}

    @classmethod
    def from_dict(cls, metric: str, data: dict[str, Any]) -> Drift:
        return cls(metric=metric, **_known(cls, {k: v for k, v in data.items() if k != "metric"}))


@dataclass(frozen=True)
class WindowRecord:
    """One window of a sustained run as the results file keeps it: its measured and derived values."""

    index: int
    start_s: float  # since the run began
    duration_s: float
    images: int
    energy_mj: float | None  # None: no sensor
    energy_mj_per_image: float | None
    latency_ms_per_image: float
    power_w: float | None
    temperature_c: float | None = None  # the window's highest
    clock_ratio: float | None = None  # the window's lowest clock / nominal clock
    throttled: bool | None = None  # None: no thermal monitor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowRecord:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class SustainedRecord:
    """A sustained run (--e3p-sustained-s) as the results file keeps it: what was asked, what ran, the
    drift of each measured metric between the first and the last span, and the windows."""

    requested_s: float
    window_s: float
    duration_s: float
    images: int
    sensor: str | None  # None: energy unavailable
    energy_kind: str | None
    thermal: bool
    throttled_windows: int
    drift_span_s: float
    drift: dict[str, Drift] = field(default_factory=dict)  # keyed by Drift.metric; only the measured ones
    notes: list[str] = field(default_factory=list)
    windows: list[WindowRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("drift", "notes", "windows")},
            "drift": {name: d.to_dict() for name, d in self.drift.items()},
            "notes": list(self.notes),
            "windows": [w.to_dict() for w in self.windows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SustainedRecord:
        known = _known(cls, data)
        known["drift"] = {name: Drift.from_dict(name, d) for name, d in (data.get("drift") or {}).items()}
        known["notes"] = list(data.get("notes") or [])
        known["windows"] = [WindowRecord.from_dict(w) for w in data.get("windows") or []]
        return cls(**known)


@dataclass(frozen=True)
class VsReference:
    """A variant against its fp32 reference (same model, device, dataset, batch and image size),
    compared within each pass: pass k of the variant ran right after pass k of its reference, so a
    drift of the machine between passes cancels in the per-pass ratio variant / fp32.

    energy_ratio: the median over the passes of the per-pass ratio of energy per image (None: energy
    unavailable); energy_ratio_low/high: the smallest and largest per-pass ratio. latency_ratio and
    its low/high likewise for latency per image. within_noise: the interval [low, high] (of energy,
    or of latency where energy is unavailable) contains 1.0, or fewer than 2 passes were compared:
    the run cannot tell the variant from fp32, so no saving (or cost) may be claimed on it."""

    reference_case_id: str
    passes: int  # the passes where both were measured
    energy_ratio: float | None
    energy_ratio_low: float | None
    energy_ratio_high: float | None
    latency_ratio: float | None
    latency_ratio_low: float | None
    latency_ratio_high: float | None
    within_noise: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VsReference:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Footprint:
    """A case's energy per image scaled to a million images, and as carbon and money at the factors
    the user gave (--e3p-carbon-g-per-kwh, --e3p-price-per-kwh; nothing is looked up). energy_kind
    is the case's: an estimated energy gives an estimated footprint, labelled so wherever it is shown.

    energy_kwh_per_million_images = energy_mj_per_image x 1e6 / 3.6e9; co2e_g_per_million_images and
    cost_per_million_images are None where their factor was not given (0)."""

    energy_kwh_per_million_images: float
    energy_kind: str  # "measured" or "estimate"
    carbon_g_per_kwh: float | None = None
    co2e_g_per_million_images: float | None = None
    price_per_kwh: float | None = None  # in the user's currency
    cost_per_million_images: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Footprint:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class AttributedPart:
    """One part of a model in an attribution (--e3p-attribution): a group (stem, a few blocks or a
    stage, head, other) with both methods side by side, or a fine part (a block's attention, MLP,
    norms...) with Method 1 only. Energies are per image, of the case's energy kind.

    time_share: the part's own time over the whole forward (Method 1, torch.profiler);
    method1_mj_per_image: time_share x the case's energy per image ("attributed by time share");
    method2_mj_per_image: the difference of two consecutive prefixes' measured energies
    ("differential measurement"), method2_noise_mj_per_image its noise; disagree: the two differ by
    more than that noise (power is not proportional to time there)."""

    name: str
    group: str
    role: str
    time_share: float | None = None
    method1_mj_per_image: float | None = None
    method2_mj_per_image: float | None = None
    method2_noise_mj_per_image: float | None = None
    disagree: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributedPart:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class PrefixEnergy:
    """A truncated model (the stem, stem + the first groups, ..., the whole model) measured by the
    case's sensor under the case's protocol, one value per pass."""

    name: str
    energy_mj_per_image_passes: list[float] = field(default_factory=list)
    latency_ms_per_image_passes: list[float] = field(default_factory=list)
    energy_mj_per_image: float | None = None  # median of the passes
    spread_mj_per_image: float | None = None  # half the range of the passes (of the rounds with one pass)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrefixEnergy:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Attribution:
    """Where a case's energy goes, by two methods (measure.attribution; docs/features/attribution.md).

    mode: "both" or "time" (Method 1 only). energy_kind: the case's ("estimate" labels both methods
    as estimates). spread: what Method 1 spreads (the case's total, or which Jetson rail).
    groups: the coarse parts, both methods; parts: the fine parts, Method 1. prefixes: Method 2's
    measured truncated models. The checks: method1_sum_ratio (the parts' raw times over the whole
    forward's, within 2 % of 1), prefixes_monotone, whole_matches_case. notes: anything unavailable or
    off, one line each. cost_s: what the attribution took, after the case's passes."""

    mode: str
    energy_kind: str
    method1_label: str = "attributed by time share"
    method2_label: str = "differential measurement"
    spread: str = ""
    case_energy_mj_per_image: float | None = None
    groups: list[AttributedPart] = field(default_factory=list)
    parts: list[AttributedPart] = field(default_factory=list)
    prefixes: list[PrefixEnergy] = field(default_factory=list)
    method1_sum_ratio: float | None = None
    method1_sum_ok: bool | None = None
    prefixes_monotone: bool | None = None
    whole_matches_case: bool | None = None
    profiler_overhead_ratio: float | None = None  # the profiled forward's time over the unprofiled one
    noise_rule: str = ""
    notes: list[str] = field(default_factory=list)
    cost_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attribution:
        known = _known(cls, data)
        known["groups"] = [AttributedPart.from_dict(p) for p in known.get("groups") or []]
        known["parts"] = [AttributedPart.from_dict(p) for p in known.get("parts") or []]
        known["prefixes"] = [PrefixEnergy.from_dict(p) for p in known.get("prefixes") or []]
        return cls(**known)
