"""The results file's format: its versions, the upgrade from each version to the next, and the checks
a file must pass before it is read.

Results, baseline and history files all carry `"schema": SCHEMA` and a `"schema_version"`. A file of
an older version is upgraded as it is read, one version at a time (`UPGRADES[n]` turns a version-n
file into version n + 1), so a committed baseline is never measured again only because the format
moved on; the file on disk is unchanged until it is saved again. A file of a newer version than this
code knows is refused with the fix (upgrade pytest-e3p), never half read.

Fields added to a version after it was first written, such as the variant of a case, get the value a
file without them means in `complete`, which runs on every file after the upgrades: readers index the
upgraded dict instead of guessing a default with `.get`. A new field with such a default needs no new
version; a field whose old value must be computed, or a changed meaning, does (add `_upgrade_3_to_4`,
raise SCHEMA_VERSION, add an example file under tests/data/).

What each version holds, with the commit that first wrote it:
  1  350b7f9  per-round samples and their median per case; 47b609a added `versions` per case
  2  fcfc3c8  pass values (one per pass, the median of its rounds), earlier runs of a baseline,
              threads, the verdict; later, within version 2: top1_ref_source and top-level keys of
              the pytest_e3p_update_json hook (28e43f3), variants, the edgevit protocol, thermal
              state, peak memory, sustained runs (a1d269f)
  3  feb1c46  the status "skipped" (a requested case that did not run, with its reason and no
              figures) and `vs_reference` per case (a variant against its fp32 reference, pass by
              pass); a reader of version 2 would take a skipped case for a failed measurement
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

SCHEMA = "pytest-e3p/results"
SCHEMA_VERSION = 3  # 3: skipped cases, variants against fp32 within each pass
KNOWN_KEYS = {"schema", "schema_version", "created", "device", "environment", "protocol", "screening", "cases"}
SAMPLE_KEYS = ("energy_mj_per_image_samples", "latency_ms_per_image_samples", "energy_mj_per_image_passes", "latency_ms_per_image_passes")
PASS_KEYS = SAMPLE_KEYS[2:]


class ResultsFileError(Exception):
    """A file that is missing, corrupt, not a results file, or of a schema version this code cannot read."""


def _cases(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The case dicts of a file; an upgrade leaves anything else to `malformed` to name."""
    cases = data.get("cases")
    if isinstance(cases, dict):
        yield from (c for c in cases.values() if isinstance(c, dict))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _upgrade_1_to_2(data: dict[str, Any]) -> None:
    """Version 1 measured one pass per case: its median over the rounds is that pass's value (what
    version 2 records per pass), so a version-1 baseline gates as a baseline of one pass. Its thread
    count was not recorded (torch's default then) and stays None: the gate refuses it against a run
    that recorded one, naming the threads, rather than guess."""
    protocol = data.get("protocol")
    if isinstance(protocol, dict):
        protocol.setdefault("passes", 1)
    for case in _cases(data):
        case.setdefault("versions", {})  # before 47b609a
        case.setdefault("passes", 1)
        for metric in ("energy_mj_per_image", "latency_ms_per_image"):
            value = case.get(metric)
            case.setdefault(f"{metric}_passes", [value] if _positive(value) else [])
        for key, default in (
            ("energy_spread", None),  # one pass: no spread
            ("latency_spread", None),
            ("unstable", False),
            ("earlier_runs", []),
            ("threads", None),
            ("verdict", ""),
            ("change_vs_baseline", None),
            ("noise_vs_baseline", None),
        ):
            case.setdefault(key, default)


def _upgrade_2_to_3(data: dict[str, Any]) -> None:
    """Version 2 had no skipped cases (a skipped case was left out of the file) and compared no
    variant with its fp32 reference pass by pass: every case keeps its status, and `vs_reference`
    is None (not compared), never a ratio worked out now from passes that may not have run back to
    back. The version moves on because a reader of version 2 cannot know the status "skipped"."""
    for case in _cases(data):
        case.setdefault("vs_reference", None)


# UPGRADES[n] turns a file of version n into version n + 1, in place.
UPGRADES: dict[int, Callable[[dict[str, Any]], None]] = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}

# Case fields added to version 2 after it was first written, with what a file without them means.
# Frozen here on purpose: a later change of CaseResult's defaults must not change what old files say.
CASE_FIELDS_ADDED_IN_2: dict[str, Any] = {
    # 28e43f3
    "top1_ref_source": "",
    # a1d269f: variants, the edgevit protocol, thermal state, peak memory, sustained runs
    "variant": "fp32",
    "agreement_top1_pct": None,
    "max_rel_logit_error": None,
    "agreement_bound": "",
    "prepare_s": None,
    "variant_detail": "",
    "protocol": "e3p",
    "energy_mj_per_image_sd": None,
    "latency_ms_per_image_sd": None,
    "power_w_sd": None,
    "energy_raw_mj_per_image": None,
    "background_power_w": None,
    "per_inference": None,
    "resolution_note": "",
    "efficiency_pct_per_mj": None,
    "temperature_c_max": None,
    "clock_ratio_min": None,
    "throttled_rounds": 0,
    "round_throttled": [],
    "throttle_reasons": [],
    "thermal_note": "",
    "peak_memory_mb": None,
    "memory_growth_mb": None,
    "memory_method": "",
    "memory": {},
    "sustained": {},
}


# Case fields added to version 3 after it was first written, frozen as above.
CASE_FIELDS_ADDED_IN_3: dict[str, Any] = {
    "footprint": None,  # --e3p-carbon-g-per-kwh / --e3p-price-per-kwh (issue 28)
    "changes_vs_baseline": [],  # the gate's explanation of a verdict (issue 24)
    "confirm_passes": 0,  # --e3p-confirm's extra passes (issue 24)
    "attribution": None,  # --e3p-attribution: energy per part of the model (issue 27)
}


def complete(data: dict[str, Any]) -> None:
    """Fill what a current-version file may lack, in place: the top-level records (hand-written
    files) and the case fields added within versions 2 and 3.

    The protocol record is left as written: it is the run's settings, which the gate reads with
    their defaults (also for runs that were never a file), and its lack of `variants` is how the gate
    recognises a file saved before precisions were variants (case ids without the precision)."""
    for key, default in (("created", ""), ("environment", {}), ("protocol", {}), ("screening", [])):
        data.setdefault(key, default)
    for case in _cases(data):
        for key, default in {**CASE_FIELDS_ADDED_IN_2, **CASE_FIELDS_ADDED_IN_3}.items():
            case.setdefault(key, default.copy() if isinstance(default, (list, dict)) else default)


def upgrade(data: Any, source: str) -> int:
    """Bring a parsed results file to SCHEMA_VERSION in place and check it; return the version it was
    written in. ResultsFileError, naming `source`, when it is not a results file, is of a version this
    code cannot read, or is malformed."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsFileError(f'{source} is not a pytest-e3p results file (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < min(UPGRADES):
        raise ResultsFileError(
            f"{source} has schema version {version!r}, which no pytest-e3p writes: not a results file of this plugin, or edited by hand; "
            "restore it from version control or save a new one"
        )
    if version > SCHEMA_VERSION:
        raise ResultsFileError(
            f"{source} has schema version {version}, newer than this pytest-e3p reads (up to {SCHEMA_VERSION}): "
            "upgrade pytest-e3p (pip install --upgrade pytest-e3p) to read it"
        )
    for step in range(version, SCHEMA_VERSION):
        UPGRADES[step](data)
        data["schema_version"] = step + 1
    complete(data)
    problem = malformed(data)
    if problem:
        raise ResultsFileError(f"{source} is a results file with a malformed entry: {problem}; restore it from version control or save a new one")
    return version


def upgrade_note(source: str, version: int) -> str:
    """The one line to say when a file of an older version was read; "" for a current one."""
    if version == SCHEMA_VERSION:
        return ""
    return f"{source}: schema version {version} read as version {SCHEMA_VERSION} (upgraded in memory; saving it again stores version {SCHEMA_VERSION})"


def _positive_numbers(values: Any) -> bool:
    return isinstance(values, list) and all(_positive(v) for v in values)


def malformed(data: dict[str, Any]) -> str | None:
    """What is wrong with a results file's structure, or None. Samples must be positive numbers: a
    NaN, zero or string sample would make every comparison pass or crash."""
    if not isinstance(data.get("device"), dict) or not isinstance(data["device"].get("name"), str):
        return '"device" must be an object with a "name"'
    for key in ("environment", "protocol"):
        if not isinstance(data[key], dict):
            return f'"{key}" must be an object'
    if not isinstance(data.get("cases"), dict):
        return '"cases" must be an object keyed by case id'
    for cid, case in data["cases"].items():
        if not isinstance(case, dict):
            return f"case {cid!r} is not an object"
        for key in ("case_id", "model", "device", "dataset", "precision"):
            if not isinstance(case.get(key), str):
                return f"case {cid!r}: {key!r} must be a string"
        for key in SAMPLE_KEYS:
            if key in case and not _positive_numbers(case[key]):
                return f"case {cid!r}: {key!r} must be a list of positive numbers"
        runs = case.get("earlier_runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) and all(_positive_numbers(r.get(k, [])) for k in PASS_KEYS) for r in runs):
            return f"case {cid!r}: 'earlier_runs' must be a list of runs with positive pass values"
    return None
