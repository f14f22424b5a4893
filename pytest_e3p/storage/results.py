"""Result records and the results file (JSON with a schema version).

A results file and a baseline file are the same format: a baseline is a results file that somebody
committed. Keys are sorted and cases are keyed by their test id, one entry each, so a refreshed
baseline reads as a small diff in review. Files are read and written through storage.files: an old
schema version is upgraded on reading (storage.schema), and writes are atomic, so an interrupted run
never leaves a truncated file behind.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..strenum import StrEnum
from .files import ResultsData, encode, read_results, write_atomic
from .records import Attribution, EarlierRun, Footprint, MemoryPeak, SustainedRecord, VsReference
from .schema import KNOWN_KEYS, SCHEMA, SCHEMA_VERSION, ResultsFileError, upgrade_note


class Status(StrEnum):
    """How a case ended: measured (ok), measured by a broken setup (invalid), not measured (failed),
    or requested but not run here (skipped: a variant, size or provider this machine or model cannot
    take; the reason says which). A skipped case holds no figures and is never compared."""

    OK = "ok"
    INVALID = "invalid"
    FAILED = "failed"
    SKIPPED = "skipped"


class Top1Source(StrEnum):
    """Where a case's top-1 comes from: this run's accuracy pass, the published figure, or nowhere."""

    MEASURED = "measured"
    REFERENCE = "reference"
    UNAVAILABLE = "unavailable"


# The names the run layer sets statuses and sources with (many call sites).
OK, INVALID, FAILED, SKIPPED = Status.OK, Status.INVALID, Status.FAILED, Status.SKIPPED
MEASURED_TOP1, REFERENCE_TOP1, NO_TOP1 = Top1Source.MEASURED, Top1Source.REFERENCE, Top1Source.UNAVAILABLE


class MeasurementError(Exception):
    """A case that could not be measured (an earlier pass failed); the message says why."""


@dataclass
class CaseResult:
    """Everything one (model x device x dataset) case measured, with its units in the names."""

    case_id: str
    model: str  # timm "arch.tag"
    device: str  # the --device name: "cpu", "cuda:0", "rtx3050", "tx2"
    dataset: str  # "synthetic", "imagenet", "cifar10", "folder"
    batch_size: int
    image_size: list[int]  # [C, H, W]
    precision: str
    variant: str = "fp32"  # the optimised form measured (pytest_e3p.variants); fp32 is the eager reference
    # a non-eager variant against the fp32 eager model on the same images, before it was measured
    agreement_top1_pct: float | None = None
    max_rel_logit_error: float | None = None
    agreement_bound: str = ""
    prepare_s: float | None = None  # export / compile / quantise / calibrate, never inside the rounds
    variant_detail: str = ""
    weights: str = "random"  # "pretrained", "random" or "checkpoint"
    weights_detail: str = ""
    # stage 1, device-agnostic
    params_m: float | None = None
    gmacs: float | None = None
    top1_ref: float | None = None  # published ImageNet-1k top-1 (%) for these weights
    top1_ref_source: str = ""  # where top1_ref comes from: timm's results table, or a paper
    netscore: float | None = None
    # stage 2, on the device
    energy_kind: str = "unavailable"  # "measured", "estimate" or "unavailable"
    energy_source: str = "unavailable"  # sensor name
    boundary: str = ""  # what the energy covers
    energy_mj_per_image_samples: list[float] = field(default_factory=list)
    latency_ms_per_image_samples: list[float] = field(default_factory=list)
    energy_mj_per_image: float | None = None  # median of the pass values
    latency_ms_per_image: float | None = None  # median of the pass values
    # the gate's samples: one value per pass (the median of its rounds), in the order measured
    passes: int = 1
    energy_mj_per_image_passes: list[float] = field(default_factory=list)
    latency_ms_per_image_passes: list[float] = field(default_factory=list)
    energy_spread: float | None = None  # coefficient of variation of the pass values
    latency_spread: float | None = None
    unstable: bool = False  # the spread is wider than the energy tolerance
    # in a baseline: earlier runs of this case, oldest first
    earlier_runs: list[EarlierRun] = field(default_factory=list)
    threads: int | None = None  # torch intra-op threads
    # the comparison with a baseline in this run ("" when not compared)
    verdict: str = ""
    change_vs_baseline: float | None = None  # relative change of energy per image
    noise_vs_baseline: float | None = None  # the smallest significant change (gate.Noise.threshold)
    power_w: float | None = None  # average over the rounds (edgevit: mean over the inferences, net)
    idle_power_w: float | None = None
    # the edgevit protocol: energy_mj_per_image is net of the background (median of the passes'
    # means over their inferences); the sd are over every inference of every pass
    protocol: str = "e3p"
    energy_mj_per_image_sd: float | None = None
    latency_ms_per_image_sd: float | None = None
    power_w_sd: float | None = None
    energy_raw_mj_per_image: float | None = None  # before the background is subtracted
    background_power_w: float | None = None  # idle power subtracted from every inference
    per_inference: bool | None = None  # False: inferences too short for the sensor (window averages)
    resolution_note: str = ""
    efficiency_pct_per_mj: float | None = None  # top-1 (%) / net energy per inference (mJ)
    total_rail: str | None = None
    rails_mj_per_image: dict[str, float] = field(default_factory=dict)
    temperature_c_start: float | None = None
    temperature_c_end: float | None = None
    # thermal state sampled through every round (pytest_e3p.hardware.thermal)
    temperature_c_max: float | None = None
    clock_ratio_min: float | None = None  # lowest clock / its maximum seen in a round
    throttled_rounds: int = 0
    round_throttled: list[bool] = field(default_factory=list)  # per thermal round: a round (edgevit: a pass), in order
    throttle_reasons: list[str] = field(default_factory=list)
    thermal_note: str = ""  # why temperature or throttling is unavailable
    # memory (MiB) while the case ran, from the device's own accounting (pytest_e3p.measure.memory)
    peak_memory_mb: float | None = None  # the whole process (CPU, Jetson) or the CUDA allocator's peak
    memory_growth_mb: float | None = None  # above what was resident when the case's pass began
    memory_method: str = ""
    memory: MemoryPeak | None = None  # the largest pass's; {} in a file where none was measured
    # --e3p-sustained-s: windows, drift between the first and last minute; {} in a file where none ran
    sustained: SustainedRecord | None = None
    # a variant against its fp32 reference, pass by pass (None: fp32 itself, or no reference measured)
    vs_reference: VsReference | None = None
    # accuracy
    top1: float | None = None  # percent
    top5: float | None = None
    top1_source: Top1Source = Top1Source.UNAVAILABLE
    eval_images: int | None = None
    eval_subset: str | None = None  # set when --e3p-limit evaluated a subset
    eval_energy_mj: float | None = None  # the whole evaluation pass, data loading included
    eval_duration_s: float | None = None
    # ranking
    sam: float | None = None
    sam_alpha: float = 5.0
    sam_note: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # torch, timm, pytest_e3p, python
    status: Status = Status.OK
    reason: str = ""
    # --- fields added within schema version 3 (each also in schema.CASE_FIELDS_ADDED_IN_3) ---
    # energy per million images, as carbon and cost (None: energy unavailable)
    footprint: Footprint | None = None
    # against the baseline: what its recorded conditions say changed since the baseline's runs
    # (versions, CPU, clocks, threads, ...), one line each; [] when not compared or nothing changed
    changes_vs_baseline: list[str] = field(default_factory=list)
    # --e3p-confirm: passes measured after the run's own, to decide an inconclusive verdict
    confirm_passes: int = 0
    # --e3p-attribution: the case's energy per part of the model, by time share and by truncated models
    attribution: Attribution | None = None

    def __post_init__(self) -> None:
        # a record read from a file holds the plain strings: the same values, as members
        self.status, self.top1_source = Status(self.status), Top1Source(self.top1_source)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                **dataclasses.asdict(self),  # the records by their own to_dict, {} for one not there:
                "earlier_runs": [r.to_dict() for r in self.earlier_runs],
                "memory": self.memory.to_dict() if self.memory is not None else {},
                "sustained": self.sustained.to_dict() if self.sustained is not None else {},
                "vs_reference": self.vs_reference.to_dict() if self.vs_reference is not None else None,
                "footprint": self.footprint.to_dict() if self.footprint is not None else None,
                "attribution": self.attribution.to_dict() if self.attribution is not None else None,
            }
        )

    def pass_values(self, metric: str) -> list[float]:
        """This run's pass values of "energy" (mJ/img) or "latency" (ms/img)."""
        return list(self.energy_mj_per_image_passes if metric == "energy" else self.latency_ms_per_image_passes)

    def own_run(self, created: str = "") -> EarlierRun:
        """This run's pass values, as a baseline keeps them once a later run is merged in."""
        return EarlierRun(created, self.pass_values("energy"), self.pass_values("latency"))

    def runs(self, metric: str) -> list[list[float]]:
        """Pass values of every run this record holds (a baseline's earlier runs, then its own)."""
        return [r for r in [*(e.passes(metric) for e in self.earlier_runs), self.pass_values(metric)] if r]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["earlier_runs"] = [EarlierRun.from_dict(r) for r in known.get("earlier_runs") or []]
        known["memory"] = MemoryPeak.from_dict(known["memory"]) if known.get("memory") else None
        known["sustained"] = SustainedRecord.from_dict(known["sustained"]) if known.get("sustained") else None
        known["vs_reference"] = VsReference.from_dict(known["vs_reference"]) if known.get("vs_reference") else None
        known["footprint"] = Footprint.from_dict(known["footprint"]) if known.get("footprint") else None
        known["attribution"] = Attribution.from_dict(known["attribution"]) if known.get("attribution") else None
        return cls(**known)


def json_safe(value: Any) -> Any:
    """JSON-safe and diff-friendly: NaN/inf become null, floats keep 6 significant digits."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class ResultsFile:
    device: dict[str, Any]  # {"name": ..., "kind": ..., "identity": {...}}
    environment: dict[str, Any]  # versions
    protocol: dict[str, Any]
    cases: dict[str, CaseResult]
    screening: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    source: str = ""  # the path it was read from, for messages
    extra: dict[str, Any] = field(default_factory=dict)  # top-level fields added by pytest_e3p_update_json
    written_version: int = SCHEMA_VERSION  # the schema version of the file it was read from

    @property
    def upgrade_note(self) -> str:
        """One line when it was read from a file of an older schema version, for the caller to print ("" otherwise)."""
        return upgrade_note(self.source, self.written_version)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                **self.extra,
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "created": self.created,
                "device": self.device,
                "environment": self.environment,
                "protocol": self.protocol,
                "screening": self.screening,
                "cases": {cid: case.to_dict() for cid, case in sorted(self.cases.items())},
            }
        )


def save(results: ResultsFile, path: str | Path, update: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Write a results file; `update` may add top-level fields to its JSON first (a hook)."""
    data = results.to_dict()
    if update is not None:
        update(data)
    write_atomic(path, encode(data))


def load(path: str | Path) -> ResultsFile:
    """Read a results (or baseline) file, upgraded to the current schema version (its
    `upgrade_note` then says so); ResultsFileError says what is wrong with it."""
    return from_data(read_results(path))


def load_for_command(path: str | Path) -> ResultsFile:
    """load() for the commands (compare, report, export, pr-comment): a file of an older schema
    version is read upgraded, and its note goes to stderr so the command's output stays its own."""
    rf = load(path)
    if rf.upgrade_note:
        print(f"note: {rf.upgrade_note}", file=sys.stderr)
    return rf


def from_data(read: ResultsData) -> ResultsFile:
    """The records of a file read_results has upgraded and checked."""
    data = read.data
    try:
        cases = {cid: CaseResult.from_dict(c) for cid, c in data["cases"].items()}
    except (TypeError, ValueError, AttributeError) as exc:  # a required field missing, or of the wrong kind
        raise ResultsFileError(f"{read.source} is a results file with a malformed entry ({exc!r})") from None
    return ResultsFile(
        device=data["device"],
        environment=data["environment"],
        protocol=data["protocol"],
        cases=cases,
        screening=data["screening"],
        created=data["created"],
        source=read.source,
        extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        written_version=read.written_version,
    )
