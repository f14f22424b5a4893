"""Result records and the results file (JSON with a schema version).

A results file and a baseline file are the same format: a baseline is a results file that somebody
committed. Keys are sorted and cases are keyed by their test id, one entry each, so a refreshed
baseline reads as a small diff in review. Files are written atomically (temporary file, then
rename), so an interrupted run never leaves a truncated file behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..strenum import StrEnum

SCHEMA = "pytest-e3p/results"
KNOWN_KEYS = {"schema", "schema_version", "created", "device", "environment", "protocol", "screening", "cases"}
SCHEMA_VERSION = 2  # 2: passes, pass values and the earlier runs a baseline holds


class Status(StrEnum):
    """How a case ended: measured (ok), measured by a broken setup (invalid), or not measured (failed)."""

    OK = "ok"
    INVALID = "invalid"
    FAILED = "failed"


class Top1Source(StrEnum):
    """Where a case's top-1 comes from: this run's accuracy pass, the published figure, or nowhere."""

    MEASURED = "measured"
    REFERENCE = "reference"
    UNAVAILABLE = "unavailable"


# The names the run layer sets statuses and sources with (many call sites).
OK, INVALID, FAILED = Status.OK, Status.INVALID, Status.FAILED
MEASURED_TOP1, REFERENCE_TOP1, NO_TOP1 = Top1Source.MEASURED, Top1Source.REFERENCE, Top1Source.UNAVAILABLE


class ResultsFileError(Exception):
    """A file that is missing, corrupt, not a results file, or of another schema version."""


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
    # in a baseline: earlier runs of this case, oldest first, each {"created", "<metric>_passes"}
    earlier_runs: list[dict[str, Any]] = field(default_factory=list)
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
    memory: dict[str, Any] = field(default_factory=dict)  # MemoryPeak.to_dict() of the largest pass
    # --e3p-sustained-s: windows, drift between the first and last minute (SustainedRun.to_dict())
    sustained: dict[str, Any] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        # a record read from a file holds the plain strings: the same values, as members
        self.status, self.top1_source = Status(self.status), Top1Source(self.top1_source)

    def to_dict(self) -> dict[str, Any]:
        return _clean(dataclasses.asdict(self))

    def pass_values(self, metric: str) -> list[float]:
        """This run's pass values of "energy" (mJ/img) or "latency" (ms/img)."""
        return list(self.energy_mj_per_image_passes if metric == "energy" else self.latency_ms_per_image_passes)

    def own_run(self, created: str = "") -> dict[str, Any]:
        return {
            "created": created,
            "energy_mj_per_image_passes": self.pass_values("energy"),
            "latency_ms_per_image_passes": self.pass_values("latency"),
        }

    def runs(self, metric: str) -> list[list[float]]:
        """Pass values of every run this record holds (a baseline's earlier runs, then its own)."""
        key = "energy_mj_per_image_passes" if metric == "energy" else "latency_ms_per_image_passes"
        out = [list(r.get(key) or []) for r in self.earlier_runs]
        return [r for r in [*out, self.pass_values(metric)] if r]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _clean(value: Any) -> Any:
    """JSON-safe and diff-friendly: NaN/inf become null, floats keep 6 significant digits."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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

    def to_dict(self) -> dict[str, Any]:
        return _clean(
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


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write to path so that readers see the old file or the new one, never half of one.

    The new file gets the mode of the file it replaces, or what the umask gives a new file (a
    temporary file is created 0600, and a rename would keep that); the folder is synced after the
    rename so the new name survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # a folder that cannot be opened for sync (some network filesystems): the rename stands
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save(results: ResultsFile, path: str | Path, update: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Write a results file; `update` may add top-level fields to its JSON first (a hook)."""
    data = results.to_dict()
    if update is not None:
        update(data)
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> ResultsFile:
    """Read a results (or baseline) file; ResultsFileError says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(
            f"{path} is not UTF-8 text (byte {exc.start}): not a results file, or corrupt; restore it from version control or save a new one"
        ) from None
    except FileNotFoundError:
        raise ResultsFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise ResultsFileError(f"{path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{path} is not valid JSON (corrupt or truncated at line {exc.lineno}): restore it from version control or save a new one"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsFileError(f'{path} is not a pytest-e3p results file (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsFileError(
            f"{path} has schema version {version!r}; this pytest-e3p reads version {SCHEMA_VERSION}: save the baseline again with this version"
        )
    problem = _malformed(data)
    if problem:
        raise ResultsFileError(f"{path} is a results file with a malformed entry: {problem}; restore it from version control or save a new one")
    try:
        cases = {cid: CaseResult.from_dict(c) for cid, c in data["cases"].items()}
        return ResultsFile(
            device=data["device"],
            environment=data.get("environment", {}),
            protocol=data.get("protocol", {}),
            cases=cases,
            screening=data.get("screening", []),
            created=data.get("created", ""),
            source=str(path),
            extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ResultsFileError(f"{path} is a results file with a malformed entry ({exc!r})") from None


def _positive_numbers(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)


def _malformed(data: dict[str, Any]) -> str | None:
    """What is wrong with a results file's structure, or None. Samples must be positive numbers: a
    NaN, zero or string sample would make every comparison pass or crash."""
    if not isinstance(data.get("device"), dict) or not isinstance(data["device"].get("name"), str):
        return '"device" must be an object with a "name"'
    for key in ("environment", "protocol"):
        if key in data and not isinstance(data[key], dict):
            return f'"{key}" must be an object'
    if not isinstance(data.get("cases"), dict):
        return '"cases" must be an object keyed by case id'
    sample_keys = ("energy_mj_per_image_samples", "latency_ms_per_image_samples", "energy_mj_per_image_passes", "latency_ms_per_image_passes")
    for cid, case in data["cases"].items():
        if not isinstance(case, dict):
            return f"case {cid!r} is not an object"
        for key in ("case_id", "model", "device", "dataset", "precision"):
            if not isinstance(case.get(key), str):
                return f"case {cid!r}: {key!r} must be a string"
        for key in sample_keys:
            if key in case and not _positive_numbers(case[key]):
                return f"case {cid!r}: {key!r} must be a list of positive numbers"
        runs = case.get("earlier_runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) and all(_positive_numbers(r.get(k, [])) for k in sample_keys[2:]) for r in runs):
            return f"case {cid!r}: 'earlier_runs' must be a list of runs with positive pass values"
    return None
