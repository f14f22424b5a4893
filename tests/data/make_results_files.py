"""Rebuild the example files in this folder with the code of the commits that wrote each format.

    python tests/data/make_results_files.py   (from a clone with the project's history)

Each file is written by that commit's own `results.ResultsFile.to_dict` and `save` (and, for the
history file, its `history.append_run`), taken with `git show`, with the protocol record its session
wrote and the same figures in every file, so tests/test_storage_upgrades.py can check that every
format loads, upgraded, with the same figures. The modules of those commits import only the standard
library, so no old checkout is needed.

Formats (schema_version, the commit that first wrote it):
  1  350b7f9  the first results file (per-round samples, the median per case)
  1  47b609a  + versions per case
  2  fcfc3c8  + pass values, earlier runs of a baseline, threads, verdict; history files
  2  28e43f3  + top1_ref_source, top-level keys added by pytest_e3p_update_json
  2  e5938bc  + variants, the edgevit protocol, thermal state, peak memory, sustained runs
  3  feb1c46  + the status "skipped" (a fourth case, skipped with its reason), vs_reference per case;
              the modules now live in pytest_e3p/storage/ (a package, with strenum and text beside it)
"""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMMITS = ["350b7f9", "47b609a", "fcfc3c8", "28e43f3", "e5938bc", "feb1c46"]
STORAGE_PACKAGE = {"feb1c46"}  # commits whose results and history modules are pytest_e3p/storage/
VERSIONS = {"torch": "2.1.0", "timm": "0.9.12", "pytest_e3p": "0.1.0", "python": "3.11.6"}
DEIT = "deit_tiny_patch16_224.fb_in1k-cpu-synthetic"
LEVIT = "levit_128s.fb_in1k-cpu-synthetic"
VIT = "vit_small_patch16_224.augreg_in21k_ft_in1k-cpu-synthetic"
SKIPPED = "deit_tiny_patch16_224.fb_in1k-cpu-synthetic-prune-heads-25"


def git_show(commit: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def old_package(commit: str, into: Path) -> object:
    """That commit's results (and history) modules as a package `e3p_<commit>` (its storage
    subpackage, for a commit where they live in pytest_e3p/storage/)."""
    pkg = into / f"e3p_{commit}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    if commit in STORAGE_PACKAGE:  # storage imports only itself, strenum and text
        (pkg / "storage").mkdir()
        (pkg / "storage" / "__init__.py").write_text("")
        for name in ("results", "history", "files", "records", "schema"):
            (pkg / "storage" / f"{name}.py").write_text(git_show(commit, f"pytest_e3p/storage/{name}.py"))
        for name in ("strenum", "text"):
            (pkg / f"{name}.py").write_text(git_show(commit, f"pytest_e3p/{name}.py"))
        importlib.import_module(pkg.name)
        return importlib.import_module(f"{pkg.name}.storage")
    for name in ("results", "history"):
        try:
            text = git_show(commit, f"pytest_e3p/{name}.py")
        except subprocess.CalledProcessError:
            continue  # history.py came with fcfc3c8
        (pkg / f"{name}.py").write_text(text)
    return importlib.import_module(pkg.name)


def protocol(commit: str) -> dict:
    """The protocol record that commit's session wrote (E3PSession.protocol_record)."""
    p: dict = {"batch_size": 16, "rounds": 3, "min_round_s": 1.0, "warmup_s": 2.0, "idle_s": 1.0}
    if commit in ("350b7f9", "47b609a"):
        p.update(precision="fp32", energy_kind="measured", energy_source="RAPL package-0", boundary="CPU package", sensor_note="", limit=None)
        return p
    p.update(passes=3, threads=4, allocator="system", slowdown=None, tolerances={"energy": 0.05, "latency": None, "top1": None})
    if commit in ("fcfc3c8", "28e43f3"):
        p.update(precision="fp32")
    else:
        p.update(protocol="e3p", model_set=None, inferences=None, energy_subtracts_background=False, image_size=None, variants=["fp32"])
    if commit in STORAGE_PACKAGE:
        p.update(variants=["fp32", "prune-heads-25"])
    p.update(energy_kind="measured", energy_source="RAPL package-0", boundary="CPU package", sensor_note="", limit=None)
    return p


def cases(results, commit: str) -> dict:
    """The same three cases in every format: two measured (one with a top-1), one failed."""
    v2 = commit not in ("350b7f9", "47b609a")
    common = dict(device="cpu", dataset="synthetic", batch_size=16, image_size=[3, 224, 224], precision="fp32", weights="pretrained")
    measured = dict(energy_kind="measured", energy_source="RAPL package-0", boundary="CPU package", idle_power_w=4.5)
    extra: dict = {}
    if commit != "350b7f9":
        extra["versions"] = VERSIONS
    if commit not in ("350b7f9", "47b609a", "fcfc3c8"):
        extra["top1_ref_source"] = "timm results-imagenet.csv"
    deit = dict(
        case_id=DEIT,
        model="deit_tiny_patch16_224.fb_in1k",
        params_m=5.717,
        gmacs=1.258,
        top1_ref=72.2,
        netscore=62.49,
        energy_mj_per_image=41.5,
        latency_ms_per_image=12.25,
        power_w=3.388,
        top1=72.1,
        top5=91.1,
        top1_source="measured",
        eval_images=1000,
        temperature_c_start=45.0,
        temperature_c_end=48.0,
        sam=0.512,
    )
    levit = dict(
        case_id=LEVIT, model="levit_128s.fb_in1k", params_m=7.8, gmacs=0.305, top1_ref=78.5, energy_mj_per_image=20.0, latency_ms_per_image=6.5, power_w=3.077
    )
    if v2:
        deit.update(passes=3, energy_mj_per_image_passes=[41.0, 41.5, 42.0], latency_ms_per_image_passes=[12.0, 12.25, 12.5], threads=4, energy_spread=0.012)
        deit.update(
            energy_mj_per_image_samples=[41.0, 40.9, 41.1, 41.5, 41.4, 41.6, 42.0, 41.9, 42.1],
            latency_ms_per_image_samples=[12.0] * 3 + [12.25] * 3 + [12.5] * 3,
        )
        deit.update(
            earlier_runs=[
                {"created": "2025-11-01T10:00:00+00:00", "energy_mj_per_image_passes": [40.5, 41.0, 41.2], "latency_ms_per_image_passes": [12.1, 12.2, 12.3]}
            ]
        )
        levit.update(passes=3, energy_mj_per_image_passes=[19.8, 20.0, 20.1], latency_ms_per_image_passes=[6.4, 6.5, 6.6], threads=4)
        levit.update(energy_mj_per_image_samples=[19.8, 20.0, 20.1], latency_ms_per_image_samples=[6.4, 6.5, 6.6])
    else:  # version 1: the samples are the rounds; the case's figure is their median
        deit.update(energy_mj_per_image_samples=[41.0, 41.5, 42.0], latency_ms_per_image_samples=[12.0, 12.25, 12.5])
        levit.update(energy_mj_per_image_samples=[19.8, 20.0, 20.1], latency_ms_per_image_samples=[6.4, 6.5, 6.6])
    failed = dict(
        case_id=VIT, model="vit_small_patch16_224.augreg_in21k_ft_in1k", status=results.FAILED, reason="RuntimeError: out of memory", energy_kind="unavailable"
    )
    out = {}
    for spec in (deit, levit, failed):
        kw = {**common, **({} if spec is failed else measured), **extra, **spec}
        if commit in STORAGE_PACKAGE and "earlier_runs" in kw:  # typed records since storage/records.py
            kw["earlier_runs"] = [results.EarlierRun.from_dict(r) for r in kw["earlier_runs"]]
        out[spec["case_id"]] = results.CaseResult(**kw)
    if commit in STORAGE_PACKAGE:  # version 3: a requested case that did not run, with no figures
        reason = "prune-heads-25 removes no head of 3 per block of deit_tiny_patch16_224.fb_in1k; it needs P >= 34"
        out[SKIPPED] = results.CaseResult(
            case_id=SKIPPED,
            model="deit_tiny_patch16_224.fb_in1k",
            device="cpu",
            dataset="synthetic",
            batch_size=16,
            image_size=[3, 224, 224],
            precision="fp32",
            variant="prune-heads-25",
            weights="",
            passes=0,
            status=results.SKIPPED,
            reason=reason,
        )
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        for commit in COMMITS:
            pkg = old_package(commit, Path(tmp))
            results = importlib.import_module(f"{pkg.__name__}.results")
            version = results.SCHEMA_VERSION
            rf = results.ResultsFile(
                device={"name": "cpu", "kind": "cpu", "identity": {"name": "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"}},
                environment=VERSIONS,
                protocol=protocol(commit),
                cases=cases(results, commit),
                created="2025-11-02T10:00:00+00:00",
            )
            path = HERE / f"results-v{version}-{commit}.json"
            if commit == "28e43f3":  # the pytest_e3p_update_json hook's top-level keys, kept on reading
                results.save(rf, path, lambda data: data.update(ci={"job": "bench-cpu", "url": "https://ci.example/jobs/1"}))
            else:
                results.save(rf, path)
            print(path.name)
            if commit in ("fcfc3c8", "e5938bc", "feb1c46"):
                history = importlib.import_module(f"{pkg.__name__}.history")
                commit_info = history.CommitInfo(sha="1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", branch="main", dirty=False, source="git")
                when = dt.datetime(2025, 11, 2, 10, 5, tzinfo=dt.timezone.utc)
                folder = Path(tmp) / f"history-{commit}"
                written = history.append_run(rf, folder, {"hostname": "runner-1", "os": "Linux", "cpus": 12}, commit=commit_info, when=when)
                target = HERE / f"history-v{version}-{commit}.json"
                target.write_text(written.read_text())
                print(target.name)


if __name__ == "__main__":
    main()
