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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "pytest-e3p/results"
SCHEMA_VERSION = 1

OK, INVALID, FAILED = "ok", "invalid", "failed"
MEASURED_TOP1, REFERENCE_TOP1, NO_TOP1 = "measured", "reference", "unavailable"


class ResultsFileError(Exception):
    """A file that is missing, corrupt, not a results file, or of another schema version."""


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
    weights: str = "random"  # "pretrained", "random" or "checkpoint"
    weights_detail: str = ""
    # stage 1, device-agnostic
    params_m: float | None = None
    gmacs: float | None = None
    top1_ref: float | None = None  # timm's ImageNet-1k top-1 (%) for these weights
    netscore: float | None = None
    # stage 2, on the device
    energy_kind: str = "unavailable"  # "measured", "estimate" or "unavailable"
    energy_source: str = "unavailable"  # sensor name
    boundary: str = ""  # what the energy covers
    energy_mj_per_image_samples: list[float] = field(default_factory=list)
    latency_ms_per_image_samples: list[float] = field(default_factory=list)
    energy_mj_per_image: float | None = None  # median of the rounds
    latency_ms_per_image: float | None = None  # median of the rounds
    power_w: float | None = None  # average over the rounds
    idle_power_w: float | None = None
    total_rail: str | None = None
    rails_mj_per_image: dict[str, float] = field(default_factory=dict)
    temperature_c_start: float | None = None
    temperature_c_end: float | None = None
    # accuracy
    top1: float | None = None  # percent
    top5: float | None = None
    top1_source: str = NO_TOP1  # "measured", "reference" or "unavailable"
    eval_images: int | None = None
    eval_subset: str | None = None  # set when --e3p-limit evaluated a subset
    eval_energy_mj: float | None = None  # the whole evaluation pass, data loading included
    eval_duration_s: float | None = None
    # ranking
    sam: float | None = None
    sam_alpha: float = 5.0
    sam_note: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # torch, timm, pytest_e3p, python
    status: str = OK
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _clean(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaseResult":
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

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
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


def write_atomic(path: str | Path, text: str) -> None:
    """Write text to path so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(results: ResultsFile, path: str | Path) -> None:
    write_atomic(path, json.dumps(results.to_dict(), indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> ResultsFile:
    """Read a results (or baseline) file; ResultsFileError says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise ResultsFileError(f"{path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{path} is not valid JSON (corrupt or truncated at line {exc.lineno}): restore it from version control or save a new one") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsFileError(f"{path} is not a pytest-e3p results file (no \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsFileError(
            f"{path} has schema version {version!r}; this pytest-e3p reads version {SCHEMA_VERSION}: "
            "save the baseline again with this version"
        )
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
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ResultsFileError(f"{path} is a results file with a malformed entry ({exc!r})") from None
