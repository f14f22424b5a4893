"""A case's record, made in one place: the runner's stages collect what they measured as small
values (the passes, the sustained run, the accuracy pass, a failure), and build_result() derives
every field of the CaseResult from them."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..gate import stats as gate
from ..hardware.sensors import ESTIMATE, MEASURED, SensorInfo
from ..measure.protocols import EDGEVIT, Protocol, Round, SteadyState
from ..metrics import kwh_per_million_images, netscore, sam
from ..models import datasets as data
from ..models import zoo
from ..storage import results
from ..storage.records import Footprint
from .case import Case
from .loading import LoadedModel

if TYPE_CHECKING:
    from ..measure.accuracy import EvalResult
    from ..measure.sustained import SustainedRun
    from ..storage.records import Attribution, MemoryPeak


@dataclass(frozen=True)
class CaseSetup:
    """What a case's record states before anything is measured."""

    case: Case
    loaded: LoadedModel
    device: str  # the --device name
    sensor: SensorInfo  # the sensor when the case began (the null sensor's where energy is unavailable)
    protocol: Protocol
    threads: int
    versions: dict[str, str]
    sam_alpha: float
    # --e3p-carbon-g-per-kwh, --e3p-price-per-kwh (0: not given)
    carbon_g_per_kwh: float = 0.0
    price_per_kwh: float = 0.0


@dataclass(frozen=True)
class Accuracy:
    """What the accuracy step found: a measured pass, or why top-1 is the reference figure
    (`reference_why`) or cannot be had at all (`unavailable_reason`, which becomes the case's reason)."""

    measured: EvalResult | None = None
    subset_note: str | None = None  # --e3p-limit evaluated part of the dataset
    reference_why: str = ""
    unavailable_reason: str = ""


@dataclass
class Collected:
    """What a case's stages measured, in the order they measured it."""

    temperature_c_start: float | None = None
    temperature_c_end: float | None = None
    passes: list[SteadyState] = field(default_factory=list)  # the earlier passes and the last
    thermal_note: str = ""  # the run's thermal monitor's note after the passes, for rounds that say nothing
    sustained: SustainedRun | None = None
    memory_unavailable: str = ""  # why a pass has no peak memory (Bench.memory_unavailable), "" where none
    accuracy: Accuracy | None = None
    attribution: Attribution | None = None  # --e3p-attribution, after the passes
    status: results.Status = results.OK
    reason: str = ""

    def fail(self, status: results.Status, reason: str) -> None:
        """The first failure is the case's: later ones follow from it."""
        if self.status == results.OK:
            self.status, self.reason = status, reason

    @property
    def peak(self) -> MemoryPeak | None:
        """The memory.MemoryPeak of the largest pass, where peak memory was measured."""
        peaks = [p.memory for p in self.passes if p.memory is not None]
        return max(peaks, key=lambda m: m.peak_mb) if peaks else None


def build_result(setup: CaseSetup, got: Collected, final: bool = False) -> results.CaseResult:
    """The case's CaseResult from what it measured. `final`: the case is over, so a top-1 it did not
    evaluate is the reference one, and SAM and its notes are worked out."""
    r = _setup_fields(setup)
    r.temperature_c_start, r.temperature_c_end = got.temperature_c_start, got.temperature_c_end
    if got.passes:
        _pass_fields(r, setup, got.passes, got.thermal_note)
        _memory_fields(r, got.peak, got.memory_unavailable)
    r.footprint = footprint(r.energy_mj_per_image, r.energy_kind, setup.carbon_g_per_kwh, setup.price_per_kwh)
    if got.sustained is not None:
        r.sustained = got.sustained.to_record()
    r.attribution = got.attribution
    if got.accuracy is not None:
        _accuracy_fields(r, setup.case, got.accuracy)
    elif final and got.status == results.OK:
        _reference_top1(r, setup.case, "accuracy was not evaluated")
    if got.status != results.OK:
        r.status, r.reason = got.status, got.reason
    if final:
        _sam_fields(r)
    return r


def footprint(energy_mj_per_image: float | None, energy_kind: str, carbon_g_per_kwh: float = 0.0, price_per_kwh: float = 0.0) -> Footprint | None:
    """A case's energy per image as a million images' kWh, and as grams CO2e and cost where their
    factor is given (> 0); None without an energy. The energy's kind goes with it: an estimate
    stays an estimate."""
    if energy_mj_per_image is None or energy_kind not in (MEASURED, ESTIMATE):
        return None
    kwh = kwh_per_million_images(energy_mj_per_image)
    carbon, price = carbon_g_per_kwh or None, price_per_kwh or None
    return Footprint(
        energy_kwh_per_million_images=kwh,
        energy_kind=energy_kind,
        carbon_g_per_kwh=carbon,
        co2e_g_per_million_images=kwh * carbon if carbon else None,
        price_per_kwh=price,
        cost_per_million_images=kwh * price if price else None,
    )


def _setup_fields(s: CaseSetup) -> results.CaseResult:
    case, loaded = s.case, s.loaded
    ref = zoo.reference(case.model)
    top1_ref = ref.top1 if ref else None
    variant: dict[str, Any] = {}
    if loaded.variant is not None and loaded.agreement is not None:
        a = loaded.agreement
        variant = {
            "agreement_top1_pct": a.top1_pct,
            "max_rel_logit_error": a.max_rel_err,
            "agreement_bound": a.bound,
            "prepare_s": loaded.variant.prepare_s,
            "variant_detail": loaded.variant.detail,
        }
    return results.CaseResult(
        case_id=case.id,
        model=case.model.full,
        device=s.device,
        dataset=case.dataset.name,
        batch_size=case.batch_size,
        image_size=list(loaded.input_size),
        precision=loaded.precision,
        variant=case.variant,
        weights=loaded.weights.source,
        weights_detail=loaded.weights.detail,
        params_m=loaded.complexity.params_m,
        gmacs=loaded.complexity.gmacs,
        top1_ref=top1_ref,
        top1_ref_source=ref.source if ref else "",
        netscore=netscore(top1_ref, loaded.complexity.params_m, loaded.complexity.gmacs) if top1_ref else None,
        energy_kind=s.sensor.kind,
        energy_source=s.sensor.name,
        boundary=s.sensor.boundary,
        total_rail=s.sensor.total_rail,
        sam_alpha=s.sam_alpha,
        versions=s.versions,
        passes=s.protocol.passes,
        threads=s.threads,
        protocol=s.protocol.name,
        **variant,
    )


def joined_rounds(passes: list[SteadyState]) -> SteadyState:
    """Every pass's rounds as one: the power over all of them, and pytest-benchmark's samples."""
    return SteadyState([x for p in passes for x in p.rounds], passes[-1].sensor)


def _pass_fields(r: results.CaseResult, s: CaseSetup, passes: list[SteadyState], thermal_note: str) -> None:
    joined = joined_rounds(passes)
    last = passes[-1]
    r.passes = len(passes)
    r.latency_ms_per_image_samples = [x.latency_ms_per_image for x in joined.rounds]
    r.energy_mj_per_image_samples = [v for p in passes for v in p.energy_mj_per_image_samples]  # net under edgevit
    r.latency_ms_per_image_passes = [p.latency_ms_per_image for p in passes]
    r.energy_mj_per_image_passes = [p.energy_mj_per_image for p in passes if p.energy_mj_per_image is not None]
    r.latency_ms_per_image = statistics.median(r.latency_ms_per_image_passes)
    r.energy_mj_per_image = statistics.median(r.energy_mj_per_image_passes) if r.energy_mj_per_image_passes else None
    r.latency_spread = gate.spread(r.latency_ms_per_image_passes)
    r.energy_spread = gate.spread(r.energy_mj_per_image_passes)
    r.power_w = joined.power_w
    r.rails_mj_per_image = last.rails_mj_per_image
    idle = [p.idle_power_w for p in passes if p.idle_power_w is not None]
    if s.protocol.name == EDGEVIT:
        _inference_fields(r, passes, s.protocol.inferences)
    elif idle and r.energy_kind != ESTIMATE:
        r.idle_power_w = statistics.median(idle)
    _thermal_fields(r, joined.rounds, thermal_note)


def _memory_fields(r: results.CaseResult, peak: MemoryPeak | None, unavailable: str = "") -> None:
    """The largest pass's peak memory (and its growth over what was resident when it began); where a
    pass could not be measured, why, in the method (no peak at all) or the note (a pass missing)."""
    if peak is not None:
        if unavailable:
            peak = dataclasses.replace(peak, note="; ".join(n for n in (peak.note, f"a pass is missing: {unavailable}") if n))
        r.peak_memory_mb, r.memory_growth_mb, r.memory_method, r.memory = peak.peak_mb, peak.growth_mb, peak.method, peak
    elif unavailable:
        r.memory_method = unavailable


def _thermal_fields(r: results.CaseResult, rounds: list[Round], run_note: str) -> None:
    """Temperature and throttling through the rounds of every pass."""
    # one entry per thermal round: a round of the e3p protocol, a whole pass of the edgevit one
    # rounds without a thermal source say nothing about throttling: they are left out, not "not throttled"
    heat = list({id(x.thermal): x.thermal for x in rounds if x.thermal is not None and getattr(x.thermal, "available", True)}.values())
    temps = [h.max_temperature_c for h in heat if h.max_temperature_c is not None]
    r.temperature_c_max = max(temps) if temps else None
    clocks = [h.min_clock_ratio for h in heat if h.min_clock_ratio is not None]
    r.clock_ratio_min = min(clocks) if clocks else None
    r.round_throttled = [bool(h.throttled) for h in heat]
    r.throttled_rounds = sum(r.round_throttled)
    # reasons, note and available are measure.thermal.RoundThermal's, beyond what every monitor reports
    r.throttle_reasons = sorted({reason for h in heat if h.throttled for reason in getattr(h, "reasons", ())})
    notes = {note for h in heat if (note := getattr(h, "note", ""))}
    r.thermal_note = "; ".join(sorted(notes)) or run_note


def _inference_fields(r: results.CaseResult, passes: list[SteadyState], inferences: int) -> None:
    """The edgevit protocol's figures: mean +/- sd over every inference of every pass, net of the
    background; a pass whose inferences the sensor could not resolve gives window averages only."""
    r.latency_ms_per_image_sd = _sd([x for p in passes for x in p.latency_ms_per_image_samples])
    backgrounds = [p.background_w for p in passes if p.background_w is not None]
    r.background_power_w = statistics.median(backgrounds) if backgrounds else None
    raw = [p.raw_energy_mj_per_image for p in passes if p.raw_energy_mj_per_image is not None]
    r.energy_raw_mj_per_image = statistics.median(raw) if raw else None
    powers = [p.power_w for p in passes if p.power_w is not None]
    r.power_w = statistics.median(powers) if powers else None
    r.per_inference = all(p.per_inference for p in passes)
    if r.per_inference:
        r.energy_mj_per_image_sd = _sd([x for p in passes for x in p.energy_mj_per_image_samples])
        r.power_w_sd = _sd([x for p in passes for x in p.power_w_samples])
    else:  # only a sensor with an update period leaves inferences unresolved
        info = passes[-1].sensor
        r.resolution_note = (
            f"inferences of {r.latency_ms_per_image:.3g} ms are shorter than 2 update periods of {info.name} "
            f"({1000 * info.update_period_s:.3g} ms): energy and power are averages over each pass's {inferences} inferences, "
            "not per inference (no sd)"
        )


def _accuracy_fields(r: results.CaseResult, case: Case, acc: Accuracy) -> None:
    if acc.measured is not None:
        ev = acc.measured
        r.top1, r.top5, r.top1_source = ev.top1, ev.top5, results.MEASURED_TOP1
        r.eval_images, r.eval_duration_s, r.eval_energy_mj = ev.images, ev.duration_s, ev.energy_mj
        r.eval_subset = acc.subset_note
    elif acc.unavailable_reason:
        r.top1_source, r.reason = results.NO_TOP1, acc.unavailable_reason
    else:
        _reference_top1(r, case, acc.reference_why)


def _reference_top1(r: results.CaseResult, case: Case, why: str) -> None:
    if r.top1_ref is not None and case.dataset.kind in (data.SYNTHETIC, data.IMAGENET):
        r.top1, r.top1_source = r.top1_ref, results.REFERENCE_TOP1
        ref = zoo.reference(case.model)
        r.top5 = ref.top5 if ref else None
    else:
        r.top1_source = results.NO_TOP1
    r.sam_note = why


def _sam_fields(r: results.CaseResult) -> None:
    """SAM from whatever the case measured, with notes saying what it rests on."""
    notes = []
    if r.top1 is None or r.energy_mj_per_image is None:
        r.sam = None
        notes.append("no SAM: " + ("top-1 unavailable" if r.top1 is None else "energy unavailable"))
    else:
        r.sam = sam(r.top1 / 100.0, r.energy_mj_per_image, r.sam_alpha)
        if r.sam is None:
            notes.append(f"SAM undefined: energy {r.energy_mj_per_image:.3g} mJ/image <= 1 mJ")
        if r.top1_source == results.REFERENCE_TOP1:
            notes.append("SAM on reference top-1")
        if r.energy_kind == ESTIMATE:
            notes.append("SAM on estimated energy")
        if r.protocol == EDGEVIT:
            notes.append("SAM on net energy (background subtracted)")
    r.sam_note = "; ".join(n for n in [r.sam_note, *notes] if n)
    if r.protocol == EDGEVIT and r.top1 is not None and r.energy_mj_per_image is not None and r.energy_mj_per_image > 0:
        r.efficiency_pct_per_mj = r.top1 / r.energy_mj_per_image  # the EdgeViT paper's %/mJ


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None
